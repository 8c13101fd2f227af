"""The township centre's work (window work, relay of village logs, monthly reports).

Nothing here yet on purpose: window work is `tiers.cases.service` (shared by every tier),
relaying village logs is the sync layer's (a town holds its subtree's logs whole and pushes
them up), and the monthly report is `tiers.reports`, which villages file too.
"""
