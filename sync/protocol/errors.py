"""The one error tree of zhibao. Every error a person may see is one of these.

    ZhibaoError                      base; `key` + `params` render through i18n
    ├── HomeError                    a node's home: missing, exists, unreadable, bad settings
    ├── KeyFileError                 a key file that is missing, malformed or not this node's
    ├── NodeIdError                  an id that does not fit its tier or its parent
    ├── EnrolmentError               refused enrolment (prefix, small-order key, not the parent)
    ├── EntryError                   an entry refused by verification (origin, seq, reason)
    │   └── ForkError                two signed histories for one (origin, seq)
    ├── StoreError                   the database failed (translated from apsw)
    │   └── DiskFullError            the disk is full; nothing was written
    ├── CatalogueError               a malformed catalogue (line, column)
    ├── CaseError                    case work refused
    │   ├── CaseNotFoundError
    │   ├── IllegalTransitionError   the action is not allowed in the case's status
    │   └── CustodyError             this node does not hold the case
    ├── SyncError                    a round could not complete
    │   ├── LinkDownError            the peer could not be reached or the link broke
    │   └── RefusedError             the peer (or we) refused a request, with its reason
    ├── BundleError                  a bundle or receipt file that cannot be used
    ├── BlobError                    a material's bytes: too big, not whole, not as named
    └── ReportError                  statistics, reports and reconciliation

The CLI turns any of these into one line on stderr and exit status 1 (cli/main.py).
"""

from __future__ import annotations

from pathlib import PurePath as Path
from typing import Any

from sync.protocol import i18n


def describe(exc: BaseException) -> str:
    """An exception's type and where it was raised (file:line), never its message, which
    may quote personal data: what a log line or a quarantine record may say of a fault."""
    import traceback  # here, not at the top: every command imports this module (#13)

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return type(exc).__name__ + where


class ZhibaoError(Exception):
    """Base of the tree. `key` names a registered message; `params` fill it and are data."""

    default_key = "error.generic"

    def __init__(self, key: str | None = None, /, **params: Any) -> None:
        self.key = key or self.default_key
        self.params = params
        super().__init__(self.key)

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        return i18n.t(self.key, **self.params)


class HomeError(ZhibaoError):
    pass


class KeyFileError(ZhibaoError):
    pass


class NodeIdError(ZhibaoError):
    pass


class EnrolmentError(ZhibaoError):
    pass


class EntryError(ZhibaoError):
    """Verification refused an entry; params always include origin, seq and reason."""


class ForkError(EntryError):
    pass


class StoreError(ZhibaoError):
    # keys that say the database is failing (full, busy, unreachable, read only, refusing
    # this role, lacking a table or column) — never what it was given: no entry or step is
    # blamed for one
    FAILING = frozenset({
        "store.full", "store.busy", "store.io", "store.pg_unreachable", "store.pg_read_only",
        "store.pg_denied", "store.schema",
    })  # fmt: skip

    @property
    def failing(self) -> bool:
        return self.key in self.FAILING


class DiskFullError(StoreError):
    pass


class CatalogueError(ZhibaoError):
    pass


class CaseError(ZhibaoError):
    pass


class CaseNotFoundError(CaseError):
    pass


class IllegalTransitionError(CaseError):
    pass


class CustodyError(CaseError):
    pass


class SyncError(ZhibaoError):
    pass


class LinkDownError(SyncError):
    pass


class RefusedError(SyncError):
    pass


class BundleError(ZhibaoError):
    pass


class BlobError(ZhibaoError):
    pass


class ReportError(ZhibaoError):
    pass


i18n.register(
    {
        "error.generic": ("Something went wrong.", "出错了。"),
        "entry.rejected": (
            "Entry {origin}#{seq} refused: {reason}",
            "条目 {origin}#{seq} 被拒绝：{reason}",
        ),
    }
)
