"""The extensions' tables, versioned (issue #15): made, migrated or remade when a store opens,
the same way on both engines (sync.store.Store, sync.pg.PgStore).

Each extension (sync._projecting.Extension) has a `name` of its own and the `version` of its
tables (1 up); meta `tables.<name>` holds `<version>:<digest>`, the version its tables were
made at and a digest of the DDL that made them. `make(store, extensions)`, at every open:

- every record equal to what the code declares: nothing runs, not even the DDL (on
  PostgreSQL, CREATE INDEX IF NOT EXISTS takes a share lock on its table before it finds the
  index, and so waited for every front writing it);
- a record newer than the code: the store is refused (`store.tables_newer`), unchanged;
- otherwise, in one transaction that keeps every other writer out, per extension in order:
  - no record and none of its tables: made by its DDL — and a lazy one is remade from the
    log at once when the projections' cursor has moved (it would miss what came before);
  - no record but its tables there (a store made before versions): version 1;
  - an older version: the `steps` it declares for each version above the recorded one
    run in order (a step is SQLite DDL run as a script, or a function of the store), on
    its tables as the previous version left them; a lazy extension lacking a step for
    some version is remade from the log instead (`Projecting.rebuild`: its tables
    dropped and made anew, every entry up to the cursor shown to it alone, one it raises
    on quarantined, the others projected), and so is every lazy one after it;
  - then its DDL (CREATE … IF NOT EXISTS: whatever is new), then its record.
  A step that fails rolls the whole transaction back (`store.tables_step`): the store is as
  it was, and the open fails saying which extension and version.
- a standby (`check_only`) only refuses a newer record: nothing can be written there.

So a change to an extension's tables is: bump `version`, edit the DDL to the new shape (what
a new store is made with), and declare the step from the previous version — or, for a lazy
projection, none: it is remade from the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import apsw

from sync.protocol import i18n
from sync.protocol.errors import StoreError, ZhibaoError, describe

if TYPE_CHECKING:
    from sync._projecting import Extension
    from sync.logstore import LogStore
    from sync.protocol.entry import SignedEntry

KEY = "tables."  # meta keys `tables.<extension name>`: "<version>:<digest of its DDL>"
_KEYS_END = "tables/"  # the first key past them ('/' follows '.')

Step = str | Callable[["LogStore"], None]  # SQLite DDL (a script), or a function


class StateTables:
    """Tables of node-local state (the desk's people, who opened what), versioned the same
    way: an extension that wants no entry. Subclasses set `name`, `version`, `ddl` and
    `steps`; `make(store, [them])` where they are used (they need not be opened with the
    store)."""

    name: str
    version: int
    ddl: str
    steps: Mapping[int, Step] = MappingProxyType({})
    types: frozenset[str] | None = frozenset()
    lazy = False

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        """Never called: wants no entry."""

    def flush(self, store: LogStore) -> None:
        """Nothing noted."""

    def discard(self) -> None:
        """Nothing noted."""


def digest(ddl: str) -> str:
    return hashlib.sha256(ddl.encode()).hexdigest()[:16]


def record(ext: Extension) -> str:
    """What meta `tables.<name>` says once `ext`'s tables are made by this code."""
    return f"{ext.version}:{digest(ext.ddl)}"


@cache
def tables_of(ddl: str) -> tuple[str, ...]:
    """The tables `ddl` creates (found by running it in a scratch SQLite database after the
    log's tables, which an extension may index: sync.forks)."""
    from sync.store import LOG_DDL

    listed = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid"
    scratch = apsw.Connection(":memory:")
    try:
        scratch.execute(LOG_DDL)
        log = {name for (name,) in scratch.execute(listed)}
        scratch.execute(ddl)
        return tuple(name for (name,) in scratch.execute(listed)
                     if name not in log and not name.startswith("sqlite_"))  # fmt: skip
    finally:
        scratch.close()


def recorded(store: LogStore) -> dict[str, str]:
    """Extension name -> its record (`tables.<name>` in meta)."""
    rows = store.query("SELECT key, value FROM meta WHERE key >= ? AND key < ?", (KEY, _KEYS_END))
    return {key[len(KEY):]: value for key, value in rows}


def version_of(value: str) -> int:
    head = value.partition(":")[0]
    return int(head) if head.isdigit() else 0


def make(store: LogStore, extensions: Sequence[Extension], *, check_only: bool = False) -> None:
    """Bring `extensions`' tables in `store` to the versions they declare (see module doc)."""
    if not extensions:
        return
    names = [ext.name for ext in extensions]
    if len(set(names)) != len(names):
        raise ValueError(f"two extensions share a name: {sorted(names)}")
    held = recorded(store)
    _refuse_newer(held, extensions)
    if check_only or all(held.get(ext.name) == record(ext) for ext in extensions):
        return
    with store.exclusive():
        held = recorded(store)  # another process may have made them meanwhile
        _refuse_newer(held, extensions)
        if any(held.get(ext.name) != record(ext) for ext in extensions):
            _migrate(store, extensions, held)


def _refuse_newer(held: Mapping[str, str], extensions: Sequence[Extension]) -> None:
    for ext in extensions:
        found = version_of(held.get(ext.name, "0"))
        if found > ext.version:
            raise StoreError("store.tables_newer", name=ext.name, version=found, known=ext.version)


def _migrate(store: LogStore, extensions: Sequence[Extension], held: Mapping[str, str]) -> None:
    """Inside the transaction: steps, remade projections, DDL and records (module doc)."""
    there = {name for (name,) in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    cursor = int(store.get_meta("projected") or 0)
    remade: list[Extension] = []
    changed: list[Extension] = []
    for ext in extensions:
        lazy = ext.lazy and ext in store.extensions  # (remade: only what the store projects)
        if held.get(ext.name) == record(ext) and not (lazy and remade):
            continue
        changed.append(ext)
        if ext.name in held:
            have = version_of(held[ext.name])
        elif any(table in there for table in tables_of(ext.ddl)):
            have = 1  # made before versions were recorded
        else:  # new here: a lazy one that missed entries is remade from the log
            if lazy and cursor > 0:
                remade.append(ext)
            continue
        steps: Mapping[int, Step] = getattr(ext, "steps", {})
        wanted = range(have + 1, ext.version + 1)
        if lazy and (remade or any(version not in steps for version in wanted)):
            remade.append(ext)
            continue
        for version in wanted:
            if version in steps:
                _run_step(store, ext, version, steps[version])
    for ext in changed:
        if ext not in remade:
            store._script(ext.ddl)
    if remade:
        store.rebuild([ext.name for ext in remade])
    for ext in changed:
        store.set_meta(KEY + ext.name, record(ext))
    store.delete_meta("projection_ddl")  # PostgreSQL's digest before versions


def _run_step(store: LogStore, ext: Extension, version: int, step: Step) -> None:
    try:
        if isinstance(step, str):
            store._script(step)
        else:
            step(store)
    except Exception as exc:
        if isinstance(exc, StoreError) and exc.failing:
            raise
        error = str(exc) if isinstance(exc, ZhibaoError) else describe(exc)
        raise StoreError("store.tables_step", name=ext.name, version=version, error=error) from exc


i18n.register(
    {
        "store.tables_newer": (
            "The database's {name} tables were made by a newer zhibao (version {version}; "
            "this one knows up to {known}): upgrade zhibao.",
            "数据库中的 {name} 表由更新版本的 zhibao 建立（版本 {version}，本版本只支持到 "
            "{known}）：请升级 zhibao。",
        ),
        "store.tables_step": (
            "Could not bring the {name} tables to version {version} ({error}); nothing was "
            "changed.",
            "无法将 {name} 表升级到版本 {version}（{error}）；未做任何修改。",
        ),
    }
)
