"""Hostile members (issue #9): an enrolled village, a sibling town and a relay that run
modified software and sign whatever they like with their real keys, against real
`zhibao serve` processes, real `zhibao` commands and real bundles."""
