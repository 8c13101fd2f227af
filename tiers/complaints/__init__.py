"""Complaints (投诉, issue #12 part 4): records of their own, beside the cases they may be about.

- `entries`: the entry types (`complaint.filed|replied|closed`), their bodies and who may
  write them (sync.authority);
- `projection`: the pure fold of one complaint and the store extension keeping them;
- `service`: `zhibao complaint file|reply|close|list|show`, deadlines and warnings;
- `figures`: the complaint counts of `stats` and the monthly report.
"""
