"""The village service room's work (代办 intake, forward, delivery, rating).

Nothing here yet on purpose: a village records the same case events as every tier, through
`tiers.cases.service`, and what a village may do is decided by the catalogue (an item's
`accept_tiers` and `decide_tier`) in the one state machine, `tiers.cases.machine`.
"""
