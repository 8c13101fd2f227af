"""Forks resolved (DESIGN §2): a signed decision which of two entries for one (origin, seq)
stands, and what every node that gets it does.

- A `fork.resolved` entry, appended by an admin (`zhibao fork resolve`) to the resolver's
  own log, names the forked origin and seq, the hash it keeps, the other hash and a reason.
- Authority (sync.authority): a decision counts only when its author is a strict ancestor of
  the forked origin — in the three tiers, the origin's parent or the city. Any other author
  (a village, a sibling town, the forked node itself), real key or not, is quarantined.
- Flow: `fork.` entries flow down from every ancestor like enrolments (sync.relevance), so
  every node that can hold the origin's log, whole or in part, gets them; the resolver's log
  replicates up whole anyway.
- Applying (`ForkDecisions`, an eager extension, so ingest sees it in the same transaction):
  the decision is remembered (`fork_decisions`); where this node holds the kept entry, the
  forks at (origin, seq) are marked resolved and the origin unfreezes; the evidence stays.
  A node that has not seen the fork just remembers the decision.
- Afterwards (`screen`, `off_kept`, called by ingest): an entry at (origin, seq) whose hash
  is not the kept one, or an entry that does not continue the kept history above it, is
  refused with a reason, never recorded as a new fork: the losing copy cannot re-freeze.

Several decisions for one (origin, seq): the highest author's counts (the city's over a
town's), of those its latest (Store.fork_decision), so every node reaches the same verdict
whatever order they arrived in. Where the decision in force keeps the entry this node does
not hold (`switch_needed`), the held branch gives way (sync.fork_switch): ingest switches
it in the transaction that brings the decision, `resolve --keep other` in the one that
writes it; at the origin itself, or over key records, the fork stays `switch_needed`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sync import authority, fork_evidence, fork_switch
from sync.authority import Refusal
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, entry_hash, register_body_check
from sync.protocol.errors import ForkError
from sync.protocol.ids import is_node_id, is_within, parent_of, tier_of

if TYPE_CHECKING:
    from sync.node import Node

RESOLVED = "fork.resolved"
MAX_REASON = 2000
_HEX64 = re.compile(r"[0-9a-f]{64}")

_DDL = (
    "CREATE INDEX IF NOT EXISTS fork_decisions_author ON fork_decisions (author, author_seq);"
    + fork_evidence.DDL
    + fork_switch.DDL
)
REPORTED = fork_evidence.REPORTED
switch_decided = fork_switch.switch_decided  # what ingest asks (see sync.fork_switch)
report = fork_evidence.report  # what every way in does after ingest (see sync.fork_evidence)


def _check_body(body: dict[str, Any]) -> None:
    if not is_node_id(body.get("origin")):
        raise ValueError("origin is not a node id")
    seq = body.get("seq")
    if type(seq) is not int or seq < 1:
        raise ValueError("seq must be a positive integer")
    for name in ("kept_hash", "other_hash"):
        value = body.get(name)
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise ValueError(f"{name} must be 64 lowercase hex digits")
    if body["kept_hash"] == body["other_hash"]:
        raise ValueError("kept_hash and other_hash are the same")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise ValueError(f"reason must be 1 to {MAX_REASON} characters")


register_body_check(RESOLVED, _check_body)


def may_resolve(author: str, origin: str) -> bool:
    """Whether `author` may decide a fork of `origin`: a strict ancestor of it (its parent,
    or the city above a village)."""
    return author != origin and is_within(origin, author)


def _authority(
    store: LogStore, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    origin = fields["body"]["origin"]
    if may_resolve(entry.origin, origin):
        return None
    return "fork.not_authority", {"fork_origin": origin}


authority.register(RESOLVED, _authority)


class ForkDecisions:
    """Remembers every admitted decision and settles the forks it is about; records the
    forks that reports from below prove (sync.fork_evidence)."""

    name = "fork_decisions"
    version = 1
    ddl = _DDL
    types: frozenset[str] | None = frozenset({RESOLVED, REPORTED})
    lazy = False  # ingest must see an origin unfreeze (or freeze) within the batch

    def apply(self, store: LogStore, entry: SignedEntry, fields: dict[str, Any]) -> None:
        if entry.type == REPORTED:
            fork_evidence.apply(store, entry, fields)
            return
        body = fields["body"]
        store.execute(
            "INSERT OR IGNORE INTO fork_decisions (origin, seq, author, author_seq, kept_hash, "
            "other_hash, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                body["origin"],
                body["seq"],
                entry.origin,
                entry.seq,
                bytes.fromhex(body["kept_hash"]),
                bytes.fromhex(body["other_hash"]),
                body["reason"],
                fields["at"],
            ),
        )
        store.settle_fork(body["origin"], body["seq"])

    def flush(self, store: LogStore) -> None:
        pass

    def discard(self) -> None:
        pass


# --- what ingest asks -----------------------------------------------------------------------


def screen(
    store: LogStore, origin: str, first: int, items: Sequence[tuple[bytes, bytes]]
) -> tuple[int, dict[str, Any]] | None:
    """The offset of the first of `items` (seqs from `first`) that a decision drops — its
    seq is decided and its hash is not the kept one — with the refusal's params; None if
    none is. One indexed query per run."""
    rows = store.query(
        "SELECT DISTINCT seq FROM fork_decisions WHERE origin = ? AND seq >= ? AND seq < ? "
        "ORDER BY seq",
        (origin, first, first + len(items)),
    )
    for (seq,) in rows:
        decision = store.fork_decision(origin, seq)
        assert decision is not None
        if entry_hash(items[seq - first][0]).hex() != decision["kept_hash"]:
            return seq - first, {"by": decision["by"], "decided": seq}
    return None


def off_kept(store: LogStore, origin: str, seq: int, prev: object) -> dict[str, Any] | None:
    """Why an entry at `seq` that differs from the one held here is no new fork: a decision
    below it keeps the history held here, and the entry does not continue that history (its
    `prev` is not the hash held at seq - 1): it comes from the branch the decision dropped.
    The refusal's params, or None (then it is a fork)."""
    held_prev = store.hash_at(origin, seq - 1)
    if held_prev is None or prev == held_prev.hex():
        return None
    rows = store.query(
        "SELECT DISTINCT seq FROM fork_decisions WHERE origin = ? AND seq < ? ORDER BY seq DESC",
        (origin, seq),
    )
    for (decided,) in rows:
        decision = store.fork_decision(origin, decided)
        held = store.hash_at(origin, decided)
        if decision is not None and held is not None and held.hex() == decision["kept_hash"]:
            return {"by": decision["by"], "decided": decided}
    return None


# --- what the command line does -------------------------------------------------------------


def decisions(store: LogStore) -> list[dict[str, Any]]:
    """Every decision held here (in force or not), by origin, seq and author."""
    rows = store.query(
        "SELECT origin, seq, author, author_seq, kept_hash, other_hash, reason, at "
        "FROM fork_decisions ORDER BY origin, seq, length(author), author_seq"
    )
    out = []
    for origin, seq, by, by_seq, kept, other, reason, at in rows:
        force = store.fork_decision(origin, seq)
        out.append(
            {
                "origin": origin, "seq": seq, "by": by, "entry_seq": by_seq,
                "kept_hash": kept.hex(), "other_hash": other.hex(), "reason": reason,
                "at": at, "in_force": force is not None and force["entry_seq"] == by_seq
                and force["by"] == by,
            }
        )  # fmt: skip
    return out


def resolve(
    node: Node, origin: str, keep: str, reason: str, *, seq: int | None = None,
    at: str | None = None,
) -> SignedEntry:  # fmt: skip
    """Append this node's decision on the fork of `origin` (the lowest unresolved seq, or
    `seq`): keep the entry held here (`held`) or the other one (`other`). Refused — nothing
    written — unless this node is the city or the origin's parent, and there is an
    unresolved fork of `origin` here."""
    tier_of(origin)  # a malformed id is refused in its own words
    me = node.node_id
    if not may_resolve(me, origin):
        raise ForkError("fork.not_resolver", origin=origin, node_id=me, parent=parent_of(origin))
    if not reason.strip():
        raise ForkError("fork.reason_required")
    if len(reason) > MAX_REASON:
        raise ForkError("fork.reason_too_long", limit=MAX_REASON)
    with node.store.transaction():
        open_forks = [
            f for f in node.store.forks()
            if f["origin"] == origin and not f["resolved"] and (seq is None or f["seq"] == seq)
        ]  # fmt: skip
        if not open_forks:
            raise ForkError("fork.none", origin=origin)
        fork = min(open_forks, key=lambda f: (f["seq"], f["other_hash"]))
        if fork["state"] == "switch_needed":
            raise ForkError("fork.switch_needed", origin=origin, seq=fork["seq"],
                            by=fork["decision"]["by"])  # fmt: skip
        kept, other = fork["held_hash"], fork["other_hash"]
        if keep == "other":
            kept, other = other, kept
            why = fork_switch.blocked(node.store, origin, fork["seq"])
            if why is not None:
                raise ForkError(why, origin=origin, seq=fork["seq"])
        body = {
            "origin": origin,
            "seq": fork["seq"],
            "kept_hash": kept,
            "other_hash": other,
            "reason": reason.strip(),
        }
        entry = node.append(RESOLVED, body, at=at)
        if keep == "other":  # in the same transaction: decided and switched, or neither
            fork_switch.switch(node.store, origin, fork["seq"], node.clock.stamp())
        return entry


i18n.register(
    {
        "fork.not_authority": (
            "{origin} may not resolve a fork of {fork_origin}: only the city or its parent can",
            "{origin} 无权处理 {fork_origin} 的分叉：只有市级或其直接上级可以",
        ),
        "fork.decided_away": (
            "{by} decided the fork at #{decided} for another entry: this one is refused",
            "{by} 已就第 {decided} 号分叉裁定保留另一条目：此条目拒收",
        ),
        "fork.off_kept": (
            "it does not continue the history {by} kept at the fork at #{decided}: refused",
            "它不接续 {by} 在第 {decided} 号分叉裁定保留的日志：拒收",
        ),
        "fork.not_resolver": (
            "Only the city or {origin}'s parent ({parent}) can resolve its fork, not {node_id}.",
            "只有市级或 {origin} 的直接上级（{parent}）可以处理其分叉，{node_id} 不能。",
        ),
        "fork.none": (
            "No unresolved fork of {origin} is held here.",
            "本处没有 {origin} 未处理的分叉。",
        ),
        "fork.reason_required": ("A fork resolution needs a --reason.", "处理分叉需要 --reason。"),
        "fork.reason_too_long": (
            "The --reason is too long (at most {limit} characters).",
            "--reason 过长（最多 {limit} 个字符）。",
        ),
        "fork.switch_needed": (
            "{by} already decided the fork of {origin} at #{seq} for the entry this node does"
            " not hold.",
            "{by} 已就 {origin} 第 {seq} 号分叉作出裁定，保留的是本节点未持有的条目。",
        ),
    }
)
