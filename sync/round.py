"""One sync round against a peer (DESIGN §4): time, hello, push, pull, receipts, then
materials.

A round pushes, in bounded compressed batches, what the peer lacks of this node's
subtree, then pulls what concerns this node. Each batch is one transaction on each side;
a cut link loses at most the batch in flight, and the next round resumes from the heads
the peer reports, so nothing is sent twice on purpose and nothing applied twice. With the
parent, the entries done, the round moves materials for a bounded time
(sync.blob_transfer): never before the entries, so a material never holds them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from sync import blob_transfer, forks, link, liveness, proofs, receipts, revocation, trust
from sync.client import PeerClient, TimeAnswer
from sync.ingest import ingest
from sync.node import RESTORING, Node
from sync.protocol import i18n
from sync.protocol.batch import decode_batch, encode_batch
from sync.protocol.entry import SignedEntry
from sync.protocol.errors import RefusedError, SyncError
from sync.protocol.ids import is_within

FIRST_BATCH_ENTRIES = 500
SKEW_WARN = timedelta(minutes=5)  # a clock off by more is corrected, with a warning
SKEW_FAR = timedelta(days=1)  # ... with a louder one
SKEW_MAX = timedelta(days=400)  # a clock off by more is refused: the operator must set it

Progress = Callable[[str, int, int], None]


@dataclass
class RoundSummary:
    peer: str = ""
    pushed: int = 0
    pushed_bytes: int = 0
    pulled: int = 0
    pulled_bytes: int = 0
    batches: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    forks: list[dict[str, Any]] = field(default_factory=list)
    clock_offset_seconds: int = 0
    warnings: list[str] = field(default_factory=list)
    materials_sent: int = 0  # receipted whole by the peer in this round
    materials_sent_bytes: int = 0  # of chunks the peer holds checked now, not before
    materials_received: int = 0  # arrived whole and checked in this round
    materials_received_bytes: int = 0
    materials_left: int = 0  # still to move when the round's time for them ran out
    materials_refused: list[dict[str, str]] = field(default_factory=list)  # sha256, reason
    materials_dropped: int = 0  # copies let go once the parent receipted them

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def again(self) -> bool:
        """Whether the next round should start at once: materials are left and this one
        moved some (a link that moves nothing waits like any other failure)."""
        moved = self.materials_sent_bytes + self.materials_received_bytes
        return self.materials_left > 0 and (moved > 0 or self.materials_sent > 0)


def _batches(node: Node, plan: list[tuple[str, int, int]]) -> Iterator[list[SignedEntry]]:
    """The entries of `plan` in batches, each run ending where a signature proves it; the
    first is small so the peer starts at once while the next, full-sized one is prepared."""
    return proofs.batches(node.store, plan, first=FIRST_BATCH_ENTRIES)


def correct_clock(node: Node, client: PeerClient, summary: RoundSummary) -> str:
    """Learn who the peer is and its time; returns its id.

    Its offset is adopted (kept by this node) only when its answer is signed, over the
    challenge we chose, by the key enrolled here for that peer. While the peer's key is not
    known yet (a new node's first round), its time only stamps this round's requests, and
    `confirm_clock` checks it once the pull has brought the enrolments. An answer signed
    by a key not known here that agrees with our clock is passed over (the peer's new key,
    after a rotation this node has not pulled yet).
    """
    answer = client.server_time()
    if trust.public_key(node.store, answer.node_id) is None or (
        _unproved(node, answer) and _close(node, answer)
    ):  # an unknown peer; or one whose key rotated unseen here, and our clocks agree
        offset = _bounded(answer.time - node.clock.base_now(), client.url)
        if abs(offset - node.clock.offset) > SKEW_WARN:
            client.stamp_offset = offset - node.clock.offset
        return answer.node_id
    _adopt(node, client, answer, summary)
    return answer.node_id


def _unproved(node: Node, answer: TimeAnswer) -> bool:
    return trust.verify_wire(node.store, answer.node_id, answer.signed_by) is None


def _close(node: Node, answer: TimeAnswer) -> bool:
    """Whether the peer's time is within a few minutes of ours (nothing to adopt)."""
    return abs(answer.time - node.clock.now()) <= SKEW_WARN


def confirm_clock(node: Node, client: PeerClient, summary: RoundSummary) -> None:
    """After the pull: adopt the peer's time that `correct_clock` could not check, now that
    its key may be known, or say that this node's clock stays uncorrected."""
    if not client.stamp_offset:
        return
    answer = client.server_time()
    if trust.public_key(node.store, answer.node_id) is None:
        seconds = int((answer.time - node.clock.now()).total_seconds())
        summary.warnings.append(i18n.t("sync.clock_unchecked", url=client.url, seconds=seconds))
        return
    _adopt(node, client, answer, summary)


def _adopt(node: Node, client: PeerClient, answer: TimeAnswer, summary: RoundSummary) -> None:
    """Take the offset of a time answer signed by the peer's key, when ours is off by more than a
    few minutes (and back to none when it is right again), warning the operator."""
    if answer.sig is None:  # an older server, or one that cannot sign for that id
        raise RefusedError("sync.time_unsigned", url=client.url, peer=answer.node_id)
    if _unproved(node, answer):
        raise RefusedError("sync.time_forged", url=client.url, peer=answer.node_id)
    offset = _bounded(answer.time - node.clock.base_now(), client.url)
    if abs(offset - node.clock.offset) > SKEW_WARN:
        node.set_clock_offset(offset)
        seconds = int(offset.total_seconds())
        far = abs(offset) > SKEW_FAR
        summary.warnings.append(
            i18n.t("sync.clock_far" if far else "sync.clock_off", seconds=seconds,
                   days=round(seconds / 86400, 1))
        )  # fmt: skip
    elif abs(offset) < SKEW_WARN and node.clock.offset:
        node.set_clock_offset(timedelta())
    client.stamp_offset = timedelta()
    summary.clock_offset_seconds = int(node.clock.offset.total_seconds())


def _bounded(offset: timedelta, url: str) -> timedelta:
    """`offset` in whole seconds; SyncError when it is too far to be a wrong clock that a
    correction should paper over (a dead clock battery: the operator must set it)."""
    if abs(offset) > SKEW_MAX:
        raise SyncError("sync.clock_absurd", url=url, days=int(offset.total_seconds() // 86400))
    return timedelta(seconds=round(offset.total_seconds()))


def _is_parent_url(node: Node, url: str) -> bool:
    parent_url = node.config.parent_url
    return parent_url is not None and parent_url.rstrip("/") == url.rstrip("/")


def sync_round(
    node: Node,
    url: str,
    *,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    pull: bool = True,
    push: bool = True,
    timeout: float = 30.0,
    plain: bool = False,
) -> RoundSummary:
    """Run one round with the peer at `url`; raises LinkDownError/RefusedError on failure.

    Requests are signed for the parent's id when `url` is the parent's URL, otherwise for
    the id the peer gives in its time answer. Bodies are sealed both ways (sync.client)
    unless `plain`, which sends them in the clear and says so in the warnings.

    The attempt, its success and any failure are recorded in the node's database
    (sync.link), where `status` and the health check read them."""
    link.record_attempt(node, url)
    try:
        return _round(
            node, url, transport=transport, progress=progress, pull=pull, push=push,
            timeout=timeout, plain=plain,
        )  # fmt: skip
    except Exception as exc:
        link.record_failure(node, url, exc)
        raise


def _round(
    node: Node,
    url: str,
    *,
    transport: httpx.BaseTransport | None,
    progress: Progress | None,
    pull: bool,
    push: bool,
    timeout: float,
    plain: bool,
) -> RoundSummary:
    summary = RoundSummary(peer=url)
    if plain:
        summary.warnings.append(i18n.t("wire.plain_warning", url=url))
    server_id = node.config.parent_id if _is_parent_url(node, url) else None
    with PeerClient(
        node, url, transport=transport, timeout=timeout, server_id=server_id, plain=plain
    ) as client:
        peer_id = correct_clock(node, client, summary)
        hello = client.hello()
        if pull:  # first: it brings down the enrolments that vouch for the peer's key
            _pull_all(node, client, peer_id, summary, progress, mode="concerns")
        confirm_clock(node, client, summary)
        held_there = receipts.accept(
            node.store,
            hello["receipt"]["raw"].encode(),
            bytes.fromhex(hello["receipt"]["sig"]),
            expected_issuer=peer_id,
        )
        _stop_if_behind(node, held_there.heads, url)
        have = {str(o): int(s) for o, s in hello.get("have", {}).items()}
        _push_from_divergence(node, held_there.heads, have)
        forks.report(node)  # forks found here go up with this push (sync.fork_evidence)
        if push:
            liveness.beat(node)  # not behind our own log (checked above): cannot fork it
            revocation.report(node)  # what revoked keys tried here goes up with this push
            plan = proofs.plan(node.store, node.node_id, have)
            _push_all(node, client, peer_id, plan, summary, progress)
        link.record_success(node, url)
        if peer_id == node.config.parent_id and (push or pull):
            blob_transfer.move_materials(
                node, client, peer_id, summary, up=push, down=pull,
                between=(lambda: _push_new(node, client, peer_id, summary, progress))
                if push else (lambda: None),
            )  # fmt: skip
    return summary


def _push_new(
    node: Node, client: PeerClient, peer_id: str, summary: RoundSummary,
    progress: Progress | None,
) -> None:  # fmt: skip
    """Between two pieces of a material: push what was recorded since the peer's last
    receipt (a clerk's event while a scan moves reaches the parent in the same round)."""
    plan = proofs.plan(node.store, node.node_id, receipts.acknowledged(node.store, peer_id))
    if plan:
        _push_all(node, client, peer_id, plan, summary, progress)


def _push_all(
    node: Node,
    client: PeerClient,
    peer_id: str,
    plan: list[tuple[str, int, int]],
    summary: RoundSummary,
    progress: Progress | None,
) -> None:
    """Push the plan batch by batch, reading and compressing batch n+1 while batch n is
    on the wire and being applied (one push in flight: the peer applies them in order)."""
    total = sum(through - after for _, after, through in plan)
    with ThreadPoolExecutor(1, thread_name_prefix="zhibao-push") as wire:
        in_flight: tuple[Future[dict[str, Any]], int] | None = None
        for batch in _batches(node, plan):
            data = encode_batch(batch)
            answered = _answer(*in_flight) if in_flight is not None else None
            if answered is not None and answered[0]["result"]["rejected"]:
                _pushed(node, peer_id, *answered, summary, progress, total)
                return  # the peer refused something: say so rather than push on
            in_flight = (wire.submit(client.push_later(data)), len(data))  # the peer is busy again
            if answered is not None:  # while this side files the receipt
                _pushed(node, peer_id, *answered, summary, progress, total)
        if in_flight is not None:
            _pushed(node, peer_id, *_answer(*in_flight), summary, progress, total)


def _answer(future: Future[dict[str, Any]], size: int) -> tuple[dict[str, Any], int]:
    return future.result(), size  # LinkDownError, RefusedError: the round ends here


def _pushed(
    node: Node,
    peer_id: str,
    answer: dict[str, Any],
    size: int,
    summary: RoundSummary,
    progress: Progress | None,
    total: int,
) -> None:
    """File the answer to one push: keep its receipt, count what was applied or refused."""
    receipt = answer["receipt"]
    receipts.accept(
        node.store, receipt["raw"].encode(), bytes.fromhex(receipt["sig"]), expected_issuer=peer_id
    )
    result = answer["result"]
    summary.pushed += sum(int(v) for v in result["applied"].values())
    summary.pushed_bytes += size
    summary.batches += 1
    summary.rejected.extend(result["rejected"])
    summary.forks.extend(result["forks"])
    if progress:
        progress("push", summary.pushed, total)


def _push_from_divergence(
    node: Node, peer_heads: dict[str, tuple[int, str]], have: dict[str, int]
) -> None:
    """Where the peer's signed head is not our entry at that seq (a copied node), push from
    that seq: the peer then holds two signed entries for it, keeps ours as fork evidence
    and freezes the origin. Pushing only above it would look like a mere broken chain."""
    for origin, (seq, digest) in peer_heads.items():
        held = node.store.hash_at(origin, seq)
        if is_within(origin, node.node_id) and held is not None and held.hex() != digest:
            have[origin] = min(have.get(origin, seq), seq - 1)


def _stop_if_behind(node: Node, peer_heads: dict[str, tuple[int, str]], url: str) -> None:
    """Stop the round when the peer (by its signed receipt) holds more of this node's own
    log than this node does — a restore from an old backup, or a copied node. Appending
    then would write a second history for seqs the peer holds: a fork of ourselves. So
    mark the node restoring (appends refused) until `zhibao restore` has caught up."""
    theirs = peer_heads.get(node.node_id, (0, ""))[0]
    ours, _ = node.store.head(node.node_id)
    if theirs > ours:
        with node.store.transaction():
            node.store.set_meta(RESTORING, node.clock.stamp())
        raise SyncError("sync.restore_needed", url=url, seq=ours, have=theirs)


def _pull_all(
    node: Node,
    client: PeerClient,
    peer_id: str,
    summary: RoundSummary,
    progress: Progress | None,
    *,
    mode: str,
) -> None:
    while True:
        cursors = (
            node.store.max_seqs()
            if mode == "concerns"
            else {o: s for o, (s, _) in node.store.heads().items()}
        )
        data, more = client.pull(cursors, mode=mode)
        runs = decode_batch(data)
        result = ingest(
            node.store, runs, me=node.node_id, sender=peer_id, received_at=node.clock.stamp()
        )
        summary.pulled += result.applied_total
        summary.pulled_bytes += len(data)
        summary.rejected.extend(result.rejected)
        summary.forks.extend(result.forks)
        if progress:
            progress("pull", summary.pulled, 0)
        if not more or not result.applied_total:
            if more and not result.applied_total:
                raise SyncError("sync.stuck", url=client.url)
            return


i18n.register(
    {
        "wire.plain_warning": (
            "--plain: this round with {url} sends names, ID numbers and phone numbers in the "
            "clear, readable by anyone on the line",
            "--plain：本次与 {url} 的同步以明文发送姓名、身份证号和电话，线路上任何人都可读取",
        ),
        "sync.clock_off": (
            "this computer's clock is {seconds} s off the parent's; zhibao uses the parent's "
            "time — please set the clock right",
            "本机时钟与上级相差 {seconds} 秒；zhibao 已改用上级时间，请校正本机时钟",
        ),
        "sync.clock_far": (
            "this computer's clock is {days} days ({seconds} s) off the parent's; zhibao "
            "now uses the parent's time (checked against its key) — please set the clock right",
            "本机时钟与上级相差 {days} 天（{seconds} 秒）；zhibao 已改用上级时间"
            "（已用其密钥核验），请校正本机时钟",
        ),
        "sync.clock_absurd": (
            "this computer's clock is {days} days off {url}'s: too far to correct "
            "automatically; set this computer's date and time right, then sync again",
            "本机时钟与 {url} 相差 {days} 天，相差过大，无法自动校正；"
            "请先校正本机日期和时间，再同步",
        ),
        "sync.clock_unchecked": (
            "{url} says this computer's clock is {seconds} s off, but its key is not known "
            "here, so the clock is not corrected; please check the clock",
            "{url} 表示本机时钟相差 {seconds} 秒，但本机尚不知其密钥，未校正时钟；请检查本机时钟",
        ),
        "sync.time_forged": (
            "the time answer of {url} is not signed by node {peer}'s key: is that URL "
            "really {peer}? The clock was not changed",
            "{url} 的时间应答未经节点 {peer} 的密钥签名：该地址确实是 {peer} 吗？时钟未作更改",
        ),
        "sync.time_unsigned": (
            "{url} (node {peer}) did not sign its time answer: is it an older zhibao, or not "
            "{peer}? The clock was not changed",
            "{url}（节点 {peer}）的时间应答未签名：是旧版 zhibao，还是并非 {peer}？时钟未作更改",
        ),
        "sync.restore_needed": (
            "{url} holds this node's own log up to #{have} but this database only up to "
            "#{seq} (restored from an old backup?); recording is stopped so the log cannot "
            "fork: run `zhibao restore`",
            "{url} 持有本节点日志至 #{have}，本机数据库只到 #{seq}（是否从旧备份恢复？）；"
            "为免日志分叉已停止记录：请运行 `zhibao restore`",
        ),
        "sync.stuck": (
            "{url} keeps offering entries this node cannot apply",
            "{url} 提供的条目本节点无法应用",
        ),
    }
)
