"""Cases (办件, DESIGN §3): entry types, the state machine, the projection and the service.

entries.py     entry types and their body checks
machine.py     pure: causal order, fold, and the one transition check
projection.py  the `cases` / `case_events` store extension
service.py     one function per `zhibao case` command
views.py       `case show` / `case list` as JSON-ready dicts, with warnings
"""
