"""How a store shows its entries to the projections kept above it (see sync.store).

The mixin `Projecting` is the part of `Store` that decides what an extension sees: the
authority rules first (sync.authority), then each extension in turn, and what happens when
one of them raises — the entry alone is quarantined, every other goes on — or, for this
node's own appends (`strict`), the append is refused.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from sync import authority
from sync._chunk_end import PROJECT_CHUNK, chunk_end
from sync._tables import tables_of
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, entry_fields
from sync.protocol.errors import StoreError, ZhibaoError, describe

if TYPE_CHECKING:
    from sync.logstore import LogStore

PROJECTED = "projected"  # meta key: entries.id up to which the lazy extensions have seen
ISOLATED = 32  # entries a failed attempt is split down to, then shown one at a time
UNPROJECTED_SQL = (  # entries stored but not yet seen by the lazy extensions
    "SELECT coalesce(max(id), 0) - coalesce((SELECT CAST(value AS INTEGER) FROM meta "
    f"WHERE key = '{PROJECTED}'), 0) FROM entries"
)
REBUILT = "projections_rebuilt"  # meta key: times every lazy projection was made anew
UNUSABLE = "projection.failed"  # the reason of an entry an extension raised on


class Extension(Protocol):
    """A projection kept by a layer above (see the module doc for eager and lazy).

    `name` (unique among a store's extensions) and `version` (of its tables, 1 up) are
    recorded in meta when its tables are made; an extension may declare `steps` (version ->
    sync._tables.Step: how its tables go from the version before to that one), see
    sync._tables for when they run and when a lazy one is remade from the log instead."""

    name: str
    version: int
    ddl: str  # SQLite's; CREATE … IF NOT EXISTS: what a new store is made with
    types: frozenset[str] | None  # entry types it wants; None for all
    lazy: bool  # may see entries after the transaction that stored them

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None: ...

    def flush(self, store: LogStore) -> None: ...

    def discard(self) -> None:
        """Forget what `apply` noted since the last `flush` (its writes were rolled back)."""


def about_the_store(exc: BaseException) -> bool:
    """Whether `exc` is the database failing (StoreError.FAILING: full, busy, I/O,
    unreachable, refusing this role …), not an entry it was given: never a reason to
    quarantine the entry."""
    return isinstance(exc, StoreError) and exc.failing


def why(exc: BaseException) -> dict[str, Any]:
    """The params of a `projection.failed` quarantine: what was raised and where, never its
    message (it may quote personal data, and status and reconcile show it)."""
    return {"error": describe(exc)}


def params_text(params: dict[str, Any]) -> str:
    return json.dumps({k: str(v) for k, v in params.items()}, ensure_ascii=False, sort_keys=True)


class Projecting:
    """The projection half of `Store` (a mixin: it uses the store's connection and state)."""

    owner: str | None
    written_by: str
    _eager: list[Extension]
    _lazy: list[Extension]
    _named: frozenset[str]
    _projected: int | None
    _moved: bool
    _pending: bool

    if TYPE_CHECKING:

        def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...
        def entry_rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...
        def execute(self, sql: str, params: Any = ()) -> None: ...
        def set_meta(self, key: str, value: str) -> None: ...
        def get_meta(self, key: str, default: str | None = None) -> str | None: ...
        def _write(self, *, catch_up: bool) -> Any: ...
        def _savepoint(self) -> Any: ...
        def batched(self) -> Any: ...
        def _last_id(self) -> int: ...
        def _script(self, ddl: str) -> None: ...

    def _hold_projections(self) -> None:
        """Keep every other writer's projection out until this transaction ends: already
        so where writers exclude each other (SQLite); on PostgreSQL fronts project beside
        each other's appends (sync.pg.beside)."""

    def _between_chunks(self) -> None:
        """After each chunk of a catch-up, outside any transaction: what the engine wants
        done as its tables grow (PostgreSQL: their statistics, sync.pg.statistics)."""

    def unprojected(self) -> int:
        """How many stored entries the lazy extensions have not seen yet."""
        if not self._lazy:
            return 0
        rows = self.query(UNPROJECTED_SQL)
        return max(0, int(rows[0][0]))  # ids are never reused: entries are never deleted

    def catch_up(self, limit: int | None = None) -> int:
        """Project about `limit` (else all) entries not projected yet — a chunk ends where a
        push ended, which may be past `limit` (`chunk_end`); returns how many remain.

        One transaction per chunk of at most PROJECT_CHUNK entries, each moving the cursor with the
        projection, so a long catch-up never holds the write lock for long and a crash
        keeps every chunk it finished."""
        return self.project_some(limit)[1]

    def project_some(self, limit: int | None = None) -> tuple[int, int]:
        """`catch_up`, saying also how many entries it projected: (projected, remaining)."""
        left = limit if limit is not None else 2**62
        remaining, total = self.unprojected(), 0
        while remaining and left > 0:
            with self._write(catch_up=False):
                done, _ = self._project(min(left, PROJECT_CHUNK))
            self._between_chunks()
            left, total = left - done, total + done
            remaining = self.unprojected() if done else 0
        return total, remaining

    def _project(self, limit: int | None = None, through: int = 2**62) -> tuple[int, int]:
        """Inside a transaction: let the lazy extensions see entries past the cursor up to
        id `through`, moving it with them — all of them, or with a `limit` one chunk of
        about that many; returns (entries gone through, the cursor now)."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (PROJECTED,))
        cursor = int(rows[0][0]) if rows else 0
        done, size = 0, PROJECT_CHUNK if limit is None else min(limit, PROJECT_CHUNK)
        while size > 0:
            chunk = self._chunk(cursor, through, size)
            if chunk is None:
                break
            last, entries, received, set_aside = chunk
            self._project_isolated(entries, received, set_aside)
            cursor = last
            done += len(entries)
            self.set_meta(PROJECTED, str(cursor))
            if limit is not None:
                break
        return done, cursor

    def _chunk(
        self, after: int, through: int, limit: int
    ) -> tuple[int, list[SignedEntry], list[str], set[int]] | None:
        """The entries with `after` < id <= `through`, about `limit` of them, at most
        PROJECT_CHUNK and PROJECT_BYTES (but one): (the last id, the entries, when each was
        received, the positions of those quarantined); None if none.

        A chunk cut short ends where a push ended (`chunk_end`), before `limit` if one did,
        else past it: a push's entries then meet the projection together, so an event
        that arrived before the one it follows (a receiver takes a town's runs of a batch
        before its villages') is still folded on, not refolded whole in the next chunk.
        On SQLite what lies past `limit` is read only when no push ended within it; where
        transactions interleave (`written_by`) a push's end is told only among the rows
        read, so as many as a chunk may take are read at once (one transaction's rows may
        go on past a shorter read: that spot is no end)."""
        first = (limit + 1,) if self.written_by == "NULL" else ()
        for reach in (*first, PROJECT_CHUNK + 1):
            sizes = self.query(
                f"SELECT id, length(raw), received_at, origin, {self.written_by} FROM entries "
                "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", (after, through, reach)
            )  # fmt: skip
            if not sizes:
                return None
            # read to the log's end: its last row ends a push (not so at a horizon)
            end = chunk_end(sizes, limit, whole=len(sizes) < reach and through >= 2**62)
            if end:
                break
        rows = self.entry_rows(
            "SELECT id, origin, seq, hash, sig, raw, type, received_at FROM entries "
            "WHERE id > ? AND id <= ? ORDER BY id",
            (after, sizes[end - 1][0]),
        )
        entries = [SignedEntry(raw, sig, h, o, s, t) for _, o, s, h, sig, raw, t, _ in rows]
        quarantined = {
            row[0]
            for row in self.query(
                "SELECT e.id FROM quarantine q JOIN entries e ON e.origin = q.origin "
                "AND e.seq = q.seq WHERE e.id > ? AND e.id <= ?",
                (after, rows[-1][0]),
            )
        }
        set_aside = {i for i, row in enumerate(rows) if row[0] in quarantined}
        return rows[-1][0], entries, [row[7] for row in rows], set_aside

    def _project_isolated(
        self,
        entries: Sequence[SignedEntry],
        received: Sequence[str],
        set_aside: set[int],
        exts: Sequence[Extension] | None = None,
    ) -> None:
        """Show `entries` (but those `set_aside`: quarantined already) to the lazy extensions
        (`exts`: to those alone, remaking them, and without judging the entries again: the
        others saw every entry not quarantined) and flush them. Usually in one go; should
        an extension raise, the attempt is rolled back and each half is shown on its own,
        in order, down to ISOLATED entries shown one at a time: the one it raises on is
        quarantined alone and the others go on, at the cost of a few attempts (not one an
        entry of the chunk)."""
        parsed: dict[int, Any] = {}
        shown = self._lazy if exts is None else exts
        admitted = (
            self._admit(entries, parsed, received) if exts is None else set(range(len(entries)))
        ) - set_aside
        self._isolate(shown, entries, sorted(admitted), parsed, received)

    def _isolate(
        self,
        shown: Sequence[Extension],
        entries: Sequence[SignedEntry],
        indexes: list[int],
        parsed: dict[int, Any],
        received: Sequence[str],
    ) -> None:
        try:
            with self._savepoint(), self.batched():  # writes sent in runs (PostgreSQL)
                self._show(shown, entries, indexes, parsed, flush=True)
            return
        except Exception as exc:
            self._discard(shown)
            if about_the_store(exc):
                raise
            if len(indexes) == 1:
                index = indexes[0]
                self.quarantine(entries[index], UNUSABLE, why(exc), received[index])
                return
        parts = (
            [[index] for index in indexes]
            if len(indexes) <= ISOLATED
            else [indexes[: len(indexes) // 2], indexes[len(indexes) // 2 :]]
        )
        for part in parts:
            self._isolate(shown, entries, part, parsed, received)

    def _admit(
        self,
        entries: Sequence[SignedEntry],
        parsed: dict[int, Any],
        received: Sequence[str],
        types: frozenset[str] | None = None,
        only: int | None = None,
    ) -> set[int]:
        """Positions of the entries (of `types`, if given; the one at `only`, if given) the
        authority rules admit; the others are quarantined. Only types some extension here
        names are judged: a store that keeps no projection of a type has nothing a rule
        about it could protect."""
        admitted = set()
        for index in range(len(entries)) if only is None else (only,):
            entry = entries[index]
            if types is not None and entry.type not in types:
                continue
            if entry.type in self._named and authority.governs(entry.type):
                fields = parsed.get(index)
                if fields is None:
                    fields = parsed[index] = entry_fields(entry.raw)
                refused = authority.verdict(self, self.owner, entry, fields)
                if refused is not None:
                    self.quarantine(entry, refused[0], refused[1], received[index])
                    continue
            admitted.add(index)
        return admitted

    def _show(
        self,
        exts: Sequence[Extension],
        entries: Sequence[SignedEntry],
        admitted: Collection[int],
        parsed: dict[int, Any],
        *,
        flush: bool,
    ) -> None:
        """Show each extension the admitted entries it wants (`parsed` caches their fields
        by position), in order; then flush it if asked. Goes through the admitted alone: a
        few of a large chunk (isolating one an extension raises on) cost a few."""
        store = cast("LogStore", self)
        order = sorted(admitted)
        for ext in exts:
            wanted = ext.types
            for index in order:
                entry = entries[index]
                if wanted is None or entry.type in wanted:
                    fields = parsed.get(index)
                    if fields is None:
                        fields = parsed[index] = entry_fields(entry.raw)
                    ext.apply(store, entry, fields)
            if flush:
                ext.flush(store)

    @staticmethod
    def _discard(exts: Sequence[Extension]) -> None:
        for ext in exts:
            discard = getattr(ext, "discard", None)
            if discard is not None:
                discard()

    def rebuild(self, names: Collection[str] | None = None) -> None:
        """Inside a transaction: make lazy projections again from the log.

        All of them (`names` None: after entries left the log, sync.fork_switch): their
        tables are emptied and the cursor goes back to 0; the transaction then projects the
        whole log at its end, or, on a connection that defers projections, `catch_up` does.

        Those `names` (a new version of their tables, sync._tables; in a transaction that
        does not project inline: `exclusive()`), and every lazy one
        after the first of them (it may read their tables as it projects): their tables are
        dropped and made anew from their DDL, and every entry up to the cursor that is not
        quarantined (what the others have seen) is shown to them alone, now; one they raise
        on is quarantined, the others go on."""
        if names is None:
            self._hold_projections()
            self.set_meta(REBUILT, str(int(self.get_meta(REBUILT) or 0) + 1))
            self._discard(self._lazy)
            for ext in self._lazy:
                for table in tables_of(ext.ddl):
                    self.execute(f'DELETE FROM "{table}"')
            self.set_meta(PROJECTED, "0")
            if self._projected is not None:  # projecting inline: all of it, at the end
                self._projected, self._moved, self._pending = 0, False, True
            return
        first = min((i for i, ext in enumerate(self._lazy) if ext.name in names), default=None)
        if first is None:
            return
        remade = self._lazy[first:]
        self._discard(remade)
        for ext in remade:
            for table in tables_of(ext.ddl):
                self.execute(f'DROP TABLE IF EXISTS "{table}"')
            self._script(ext.ddl)
        assert self._projected is None, "remade in a transaction that does not project inline"
        rows = self.query("SELECT value FROM meta WHERE key = ?", (PROJECTED,))
        through = int(rows[0][0]) if rows else 0
        after = 0
        while (chunk := self._chunk(after, through, PROJECT_CHUNK)) is not None:
            after, entries, received, set_aside = chunk
            self._project_isolated(entries, received, set_aside, remade)

    # --- quarantine --------------------------------------------------------------------

    def quarantine(
        self, entry: SignedEntry, reason: str, params: dict[str, Any], received_at: str
    ) -> None:
        """Set `entry` aside: kept in the log, never projected, reported with its reason."""
        self.execute(
            "INSERT OR IGNORE INTO quarantine (origin, seq, type, reason, params, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (entry.origin, entry.seq, entry.type, reason, params_text(params), received_at),
        )

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest `limit` quarantined entries (a hostile node may have sent a million),
        by origin and seq, with the reason in the reader's words."""
        rows = self.query(
            "SELECT * FROM (SELECT origin, seq, type, reason, params, received_at FROM quarantine "
            "ORDER BY received_at DESC, origin, seq DESC LIMIT ?) AS latest ORDER BY origin, seq",
            (limit,),
        )
        out = []
        for origin, seq, kind, reason, params, received in rows:
            values = json.loads(params)
            out.append(
                {
                    "origin": origin,
                    "seq": seq,
                    "type": kind,
                    "reason": reason,
                    "detail": i18n.t(reason, **{"origin": origin, "seq": seq, **values}),
                    "at": received,
                }
            )
        return out

    def quarantine_counts(self) -> list[dict[str, Any]]:
        """Per origin and reason: how many entries are set aside, their first and last seq
        and the last one's detail (what status and reconcile summarise, at any number)."""
        rows = self.query(
            "SELECT origin, reason, count(*), min(seq), max(seq), max(received_at) "
            "FROM quarantine GROUP BY origin, reason ORDER BY origin, reason"
        )
        out = []
        for origin, reason, count, first, last, received in rows:
            [(kind, params)] = self.query(
                "SELECT type, params FROM quarantine WHERE origin = ? AND seq = ?", (origin, last)
            )
            values = {"origin": origin, "seq": last, **json.loads(params)}
            out.append(
                {
                    "origin": origin, "reason": reason, "count": count, "first_seq": first,
                    "last_seq": last, "type": kind, "detail": i18n.t(reason, **values),
                    "last_at": received,
                }
            )  # fmt: skip
        return out

    # --- signatures checked here -------------------------------------------------------

    def mark_signed(self, origin: str, seq: int) -> None:
        """Record that (origin, seq)'s own signature was checked here (see module doc)."""
        self.execute("INSERT OR IGNORE INTO signed_tips (origin, seq) VALUES (?, ?)", (origin, seq))

    def signed_seqs(self, origin: str, after: int, through: int) -> list[int]:
        """The seqs of `origin` in (after, through] whose signature was checked here."""
        rows = self.query(
            "SELECT seq FROM signed_tips WHERE origin = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (origin, after, through),
        )
        return [r[0] for r in rows]

    def last_signed(self, origin: str) -> int:
        rows = self.query("SELECT max(seq) FROM signed_tips WHERE origin = ?", (origin,))
        return rows[0][0] or 0

    def _insert_strict(self, entries: Sequence[SignedEntry], parsed: dict[int, Any]) -> None:
        """This node's own entries: every extension sees them now, and a refusal raises."""
        for index, entry in enumerate(entries):
            fields = parsed[index] = entry_fields(entry.raw)
            refused = authority.verdict(self, self.owner, entry, fields)
            if refused is not None:
                reason, params = refused
                raise StoreError(
                    "store.refused_own",
                    reason=i18n.t(reason, **{"origin": entry.origin, "seq": entry.seq, **params}),
                )
        everyone = set(range(len(entries)))
        try:
            self._show(self._eager, entries, everyone, parsed, flush=False)
            if self._projected is not None:  # this transaction projects inline
                self._show(self._lazy, entries, everyone, parsed, flush=False)
                self._projected = self._last_id()
                self._moved = True
        except ZhibaoError:
            raise
        except Exception as exc:
            raise StoreError("store.refused_own", reason=why(exc)["error"]) from exc

    def _flush_inline(self) -> None:
        """Flush what this node's own appends showed the lazy extensions: whatever fails
        here refuses the appends (the transaction rolls back)."""
        try:
            for ext in self._lazy:
                ext.flush(cast("LogStore", self))
        except ZhibaoError:
            raise
        except Exception as exc:
            raise StoreError("store.refused_own", reason=why(exc)["error"]) from exc

    def _catch_up_inline(self) -> None:
        """Flush what was projected inline, then project what ingest left pending."""
        if self._moved and self._projected is not None:
            self._flush_inline()
            self.set_meta(PROJECTED, str(self._projected))
        self._pending = False
        _, self._projected = self._project()
        self._moved = False


i18n.register(
    {
        "store.refused_own": (
            "Not recorded: this node could not use the entry ({reason}); nothing was written.",
            "未记录：本节点无法使用该条目（{reason}）；未写入任何内容。",
        ),
        UNUSABLE: (
            "a projection could not use it ({error})",
            "无法纳入统计与办件视图（{error}）",
        ),
    }
)
