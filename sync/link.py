"""The link to the parent as an operator sees it: each round's attempt, success and failure.

A round (sync.round.sync_round, run by `sync`, `sync --watch` and serve's background sync)
records in the node's own database when it began, when it last got through and, when it
fails, what went wrong and when (`meta` rows). So `zhibao status` in another process, and
`GET /v1/health`, read the link as it is, not only the last good sync.

An error is kept as its i18n key and params (rendered in the reader's language when shown),
or, for an exception outside the error tree, its type and place (sync.protocol.errors.
describe): never a library's message, which may quote personal data.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from sync import receipts
from sync.node import Node
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError, describe
from sync.protocol.ids import is_within

LAST_ATTEMPT = "link.last_attempt"
LAST_ATTEMPT_PEER = "link.last_attempt_peer"
LAST_ERROR = "link.last_error"  # JSON: {"key", "params"}
LAST_ERROR_AT = "link.last_error_at"
LAST_ERROR_PEER = "link.last_error_peer"
FAILURES = "link.failures"  # rounds failed since the last one that got through
FAILING_SINCE = "link.failing_since"
LAST_SYNC, LAST_SYNC_PEER = "last_sync", "last_sync_peer"  # DESIGN §7: status `last_sync`


def record_attempt(node: Node, url: str) -> None:
    """A round with `url` begins (one small transaction)."""
    with node.store.transaction():
        node.store.set_meta(LAST_ATTEMPT, node.clock.stamp())
        node.store.set_meta(LAST_ATTEMPT_PEER, url)


def record_success(node: Node, url: str) -> None:
    """The round's entries went both ways: the link works (its `last_sync`)."""
    with node.store.transaction():
        node.store.set_meta(LAST_SYNC, node.clock.stamp())
        node.store.set_meta(LAST_SYNC_PEER, url)
        node.store.set_meta(FAILURES, "0")
        node.store.delete_meta(FAILING_SINCE)


def record_failure(node: Node, url: str, exc: BaseException) -> None:
    """The round with `url` failed with `exc`. Best effort: a database that cannot take
    the record (busy, full) must not hide the round's own error, which the caller raises."""
    if isinstance(exc, ZhibaoError):
        error = {"key": exc.key, "params": _plain(exc.params)}
    else:  # a bug: its type and place, not its message
        error = {"key": "link.internal", "params": {"error": describe(exc)}}
    try:
        with node.store.transaction():
            now = node.clock.stamp()
            failures = _int(node.store.get_meta(FAILURES)) + 1
            node.store.set_meta(LAST_ERROR, json.dumps(error, ensure_ascii=False))
            node.store.set_meta(LAST_ERROR_AT, now)
            node.store.set_meta(LAST_ERROR_PEER, url)
            node.store.set_meta(FAILURES, str(failures))
            if failures == 1 or node.store.get_meta(FAILING_SINCE) is None:
                node.store.set_meta(FAILING_SINCE, now)
    except ZhibaoError:
        pass


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Params as JSON keeps them (anything else as its text)."""
    return {
        str(k): v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
        for k, v in params.items()
    }


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def link_state(node: Node) -> dict[str, Any]:
    """What `status` says of the link: `state` is `never` (no round yet), `ok` or `failing`
    (the last round failed); `last_error` stays after a success (with its time) as history."""
    meta = node.store.get_meta
    failures = _int(meta(FAILURES))
    last_success, last_attempt = meta(LAST_SYNC), meta(LAST_ATTEMPT)
    error = _error(meta(LAST_ERROR), meta(LAST_ERROR_AT), meta(LAST_ERROR_PEER))
    if failures:
        state = "failing"
    elif last_success:
        state = "ok"
    else:
        state = "never"
    return {
        "state": state,
        "parent_id": node.config.parent_id,
        "parent_url": node.config.parent_url,
        "last_attempt": last_attempt,
        "last_attempt_peer": meta(LAST_ATTEMPT_PEER),
        "last_success": last_success,
        "last_success_peer": meta(LAST_SYNC_PEER),
        "last_error": error,
        "failures": failures,
        "failing_since": meta(FAILING_SINCE) if failures else None,
    }


def _error(raw: str | None, at: str | None, peer: str | None) -> dict[str, Any] | None:
    """The recorded error with its message in the reader's language."""
    if raw is None or at is None:
        return None
    try:
        data = json.loads(raw)
        key, params = str(data["key"]), dict(data["params"])
    except (ValueError, KeyError, TypeError):
        key, params = "link.internal", {"error": "?"}
    return {"at": at, "peer": peer, "key": key, "params": params, "message": _render(key, params)}


def _render(key: str, params: dict[str, Any]) -> str:
    """The error's sentence in the reader's language. Its words are registered by the
    module that raised it, which a `status` process may not have loaded: the round's
    modules are loaded then (only then: they bring httpx)."""
    if not i18n.has(key):
        import sync.round  # noqa: F401  (registers the round's, the client's words)
    if not i18n.has(key):
        return " ".join([key, *(str(v) for v in params.values() if v is not None)])
    return i18n.t(key, **params)


def backlog(node: Node) -> dict[str, int]:
    """origin → entries of this node's subtree held here that the parent has not
    acknowledged (by a receipt for our very history); empty at the city."""
    parent = node.config.parent_id
    if parent is None:
        return {}
    acked = receipts.acknowledged(node.store, parent)
    waiting = {}
    for origin, (seq, _) in sorted(node.store.heads().items()):
        if is_within(origin, node.node_id) and seq > acked.get(origin, 0):
            waiting[origin] = seq - acked.get(origin, 0)
    return waiting


@cache
def version() -> str:
    from importlib import metadata  # ~15 ms to import: only the health check asks

    try:
        return metadata.version("zhibao")
    except metadata.PackageNotFoundError:
        return "unknown"


def health(node: Node) -> dict[str, Any]:
    """`GET /v1/health`: what a monitor needs and nothing else — no name, no URL, no
    error text (it may name hosts), no case data. The node id is public (a division code,
    which `/v1/time` says too); beyond it a stranger learns the version and two figures."""
    return {
        "ok": True,
        "node_id": node.node_id,
        "version": version(),
        "last_sync": node.store.get_meta(LAST_SYNC),
        "backlog": sum(backlog(node).values()),
    }


# --- words for times and sizes ----------------------------------------------------------


def wait_text(seconds: float) -> str:
    """A wait as a person reads it: "0.4 s", "12 s", "5 min" (never "0 s")."""
    if seconds < 10:
        return i18n.t("unit.seconds", value=f"{max(seconds, 0.1):.1f}")
    if seconds < 120:
        return i18n.t("unit.seconds", value=f"{seconds:.0f}")
    return i18n.t("unit.minutes", value=f"{seconds / 60:.0f}")


def age_text(then: str | None, now: datetime) -> str:
    """How long ago an ISO time was ("3 min ago"); "" when it cannot say."""
    if not then:
        return ""
    try:
        moment = datetime.fromisoformat(then)
        seconds = (now - moment).total_seconds()
    except (ValueError, TypeError):
        return ""
    if seconds < -60:
        return i18n.t("age.ahead")
    seconds = max(0, int(seconds))
    if seconds < 10:
        return i18n.t("age.now")
    if seconds < 60:
        return i18n.t("age.seconds", value=seconds)
    if seconds < 3600:
        return i18n.t("age.minutes", value=seconds // 60)
    if seconds < 2 * 86400:
        return i18n.t("age.hours", value=seconds // 3600)
    return i18n.tn("age.days", seconds // 86400)


def size_text(nbytes: int) -> str:
    """Bytes as a person reads them: "512 B", "3.4 KB", "12 MB" (never "0 KB")."""
    if nbytes < 1024:
        return f"{nbytes} B"
    value, units = nbytes / 1024, ["KB", "MB", "GB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}" if value < 10 else f"{value:.0f} {units[0]}"


i18n.register(
    {
        "link.internal": (
            "an unexpected error in this program ({error})",
            "本程序发生意外错误（{error}）",
        ),
        "unit.seconds": ("{value} s", "{value} 秒"),
        "unit.minutes": ("{value} min", "{value} 分钟"),
        "age.ahead": ("in the future: check this computer's clock", "在将来：请检查本机时钟"),
        "age.now": ("just now", "刚才"),
        "age.seconds": ("{value} s ago", "{value} 秒前"),
        "age.minutes": ("{value} min ago", "{value} 分钟前"),
        "age.hours": ("{value} h ago", "{value} 小时前"),
        "age.days": ("{count} days ago", "{count} 天前"),
        "age.days.one": ("{count} day ago", "{count} 天前"),
    }
)
