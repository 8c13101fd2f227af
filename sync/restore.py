"""`zhibao restore`: rebuild a node whose database died from its parent's copy (DESIGN §4).

The keys and node.toml survive; node.db is new (or an old backup). The node marks itself
"restoring" — `Node.append` refuses while that is set — pins the city's key again, pulls
what concerns it (the enrolment records that vouch for its own key and its parent's),
then its own subtree whole, and clears the mark only when it holds at least what the
parent's signed receipt says the parent holds of every log of its subtree.

Invariant: a node never appends below the head its parent already holds of its own log,
so it can never fork itself. An interrupted restore leaves the mark set; run it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from sync import receipts, trust
from sync.client import PeerClient
from sync.ingest import ingest
from sync.node import RESTORING, Node
from sync.protocol import i18n
from sync.protocol.batch import decode_batch
from sync.protocol.errors import HomeError, SyncError
from sync.protocol.ids import city_of, is_within
from sync.round import RoundSummary, confirm_clock, correct_clock


@dataclass
class RestoreSummary:
    peer: str
    pulled: int = 0
    heads: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def begin_restore(node: Node, *, force: bool = False) -> None:
    """Mark the node restoring. Refuses over a database that still holds entries unless a
    restore is already under way (an interrupted one, or one a sync round asked for after
    finding the parent ahead of this node's own log) or `force` (an old backup put back)."""
    if node.config.parent_id is None:
        raise HomeError("restore.city")
    (held,) = node.store.query("SELECT COUNT(*) FROM entries")[0]
    if held and not node.store.get_meta(RESTORING) and not force:
        raise HomeError("restore.not_empty", count=held)
    with node.store.transaction():
        trust.pin_root(node.store, city_of(node.node_id), bytes.fromhex(node.config.root_key))
        node.store.set_meta(RESTORING, node.clock.stamp())


def _pull(node: Node, client: PeerClient, peer_id: str, mode: str, summary: RestoreSummary) -> None:
    """Pull in `mode` until the peer has nothing more. A refused entry of this node's own
    subtree stops the restore; one of a log held in part (what concerns it from above, each
    entry proved by its own signature) costs that entry alone, and is listed."""
    while True:
        if mode == "subtree":
            cursors = {o: s for o, (s, _) in node.store.heads().items()}
        else:
            cursors = node.store.max_seqs()
        data, more = client.pull(cursors, mode=mode)
        result = ingest(
            node.store,
            decode_batch(data),
            me=node.node_id,
            sender=peer_id,
            received_at=node.clock.stamp(),
        )
        summary.pulled += result.applied_total
        summary.rejected.extend(result.rejected)
        mine = [r for r in result.rejected if is_within(str(r["origin"]), node.node_id)]
        if mine or (result.rejected and mode == "subtree"):
            first = (mine or result.rejected)[0]
            raise SyncError("restore.refused", url=client.url, **first)
        if not more:
            return
        if not result.applied_total:
            raise SyncError("sync.stuck", url=client.url)


def restore_node(
    node: Node,
    url: str | None = None,
    *,
    force: bool = False,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 30.0,
    plain: bool = False,
) -> RestoreSummary:
    """Catch this node up from its parent (or `url`) and only then allow appends again.
    The pulls' answers come sealed to this node's seal key (sync.client) unless `plain`."""
    if node.config.parent_id is None:
        raise HomeError("restore.city")
    url = url or node.config.parent_url
    if not url:
        raise HomeError("restore.no_url")
    begin_restore(node, force=force)
    summary = RestoreSummary(peer=url)
    with PeerClient(node, url, transport=transport, timeout=timeout, plain=plain) as client:
        clock = RoundSummary(peer=url)
        peer_id = correct_clock(node, client, clock)
        if peer_id == node.node_id or not is_within(node.node_id, peer_id):
            raise SyncError("restore.not_ancestor", url=url, peer=peer_id)
        hello = client.hello()
        _pull(node, client, peer_id, "concerns", summary)  # brings the keys first
        confirm_clock(node, client, clock)  # the peer's time, checked with its key now
        summary.warnings.extend(clock.warnings)
        _pull(node, client, peer_id, "subtree", summary)
        there = receipts.accept(
            node.store,
            hello["receipt"]["raw"].encode(),
            bytes.fromhex(hello["receipt"]["sig"]),
            expected_issuer=peer_id,
        )
    for origin, (seq, _) in sorted(there.heads.items()):
        held, _ = node.store.head(origin)
        if held < seq:
            raise SyncError("restore.incomplete", url=url, origin=origin, seq=held, have=seq)
    with node.store.transaction():
        node.store.delete_meta(RESTORING)
        node.store.set_meta("last_sync", node.clock.stamp())
        node.store.set_meta("last_sync_peer", url)
    summary.heads = {o: s for o, (s, _) in sorted(node.store.heads().items())}
    return summary


i18n.register(
    {
        "restore.city": (
            "A city has no parent to restore from; restore its database from a backup.",
            "市级节点没有上级可供恢复；请从备份恢复其数据库。",
        ),
        "restore.no_url": (
            "No parent URL: give --from URL or set parent_url in node.toml.",
            "没有上级地址：请用 --from 指定，或在 node.toml 中设置 parent_url。",
        ),
        "restore.not_empty": (
            "This database still holds {count} entries; restore is for a lost database. "
            "Use --force to catch it up from the parent anyway (an old backup).",
            "本数据库仍有 {count} 条条目；恢复用于丢失的数据库。"
            "如确需从上级追平（如旧备份），请加 --force。",
        ),
        "restore.not_ancestor": (
            "{url} is node {peer}, which does not hold this node's log whole: restore from "
            "the parent (or the city)",
            "{url} 是节点 {peer}，不完整持有本节点日志：请从上级（或市级）节点恢复",
        ),
        "restore.refused": (
            "restore stopped: {url} sent {origin}#{seq}, refused ({reason}); "
            "the node stays in restore mode",
            "恢复中止：{url} 发来的 {origin}#{seq} 被拒绝（{reason}）；节点仍处于恢复状态",
        ),
        "restore.incomplete": (
            "restore incomplete: {origin} is held up to #{seq} here but #{have} at {url}; "
            "run `zhibao restore` again",
            "恢复未完成：{origin} 本机只到 #{seq}，{url} 已到 #{have}；请再次运行 `zhibao restore`",
        ),
    }
)
