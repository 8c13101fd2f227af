"""PostgreSQL's errors in the project's words (`translate`), and what they say to a person."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from sync.pg import replica
from sync.protocol import i18n
from sync.protocol.errors import DiskFullError, StoreError

# What says the connection is gone or cannot be had (no SQLSTATE: cut on the client's side;
# 08: connection; 57P: the server shutting down; 53300: too many connections) — the store
# failing (StoreError.FAILING). Other operational errors (54000: an index row too big,
# 53200: out of memory, 57014: a statement cancelled) may be an entry's doing: its fault.
_CUT = ("08", "57P", "53300")
_OWN_CODES = {  # the SQLSTATEs sync.pg.schema's triggers raise
    "ZB001": "store.pg_gap",
    "ZB002": "store.pg_chain",
    "ZB003": "store.pg_append_only",
    "ZB004": "store.pg_append_only",
}


def translate(exc: psycopg.Error) -> StoreError:
    """A psycopg error as the project's own (the key says what a person can do about it)."""
    code = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    detail: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError):
        detail = json.loads(diag.message_detail or "") if diag is not None else {}
    if code in _OWN_CODES:
        return StoreError(_OWN_CODES[code], origin=detail.get("origin"), seq=detail.get("seq"),
                          detail=str(diag.message_primary if diag else exc))  # fmt: skip
    if isinstance(exc, pg_errors.UniqueViolation) and diag is not None:
        if diag.constraint_name and diag.constraint_name.startswith("entries_"):
            return StoreError("store.pg_taken", detail=diag.message_detail or "")
        return StoreError("store.constraint", detail=str(diag.message_primary))
    if code == replica.READ_ONLY:  # a standby (sync.pg.replica)
        return StoreError("store.pg_read_only")
    if code == "42501":  # insufficient_privilege: the operator's grants, not the data
        return StoreError("store.pg_denied", detail=(diag and diag.message_primary) or str(exc))
    if code in ("42P01", "42703") or (code == "42P10" and "ON CONFLICT" in str(exc)):
        # undefined table or column, or no key an upsert names: changed under zhibao
        return StoreError("store.schema", detail=(diag and diag.message_primary) or str(exc))
    if code == "53100":  # disk_full
        return DiskFullError("store.full")
    if code in ("40001", "40P01", "55P03"):  # serialization, deadlock, lock not available
        return StoreError("store.busy")
    if isinstance(exc, psycopg.OperationalError) and (not code or code.startswith(_CUT)):
        return StoreError("store.pg_unreachable", detail=str(exc).strip().splitlines()[0])
    if isinstance(exc, pg_errors.IntegrityError):
        return StoreError("store.constraint", detail=str(exc))
    return StoreError("store.failed", detail=str(exc))


i18n.register(
    {
        "store.pg_gap": (
            "The database refused entries of {origin}: they must go on from seq {seq} without "
            "a gap (another process may have appended first); nothing was written, send again.",
            "数据库拒绝了 {origin} 的条目：须从序号 {seq} 起连续追加（可能另一进程已先追加）；"
            "未写入任何内容，请重新发送。",
        ),
        "store.pg_chain": (
            "The database refused entry {seq} of {origin}: it does not extend the chain held "
            "here; nothing was written.",
            "数据库拒绝了 {origin} 的第 {seq} 条：它不接续此处所存的哈希链；未写入任何内容。",
        ),
        "store.pg_taken": (
            "The database already holds an entry at that seq ({detail}): another process "
            "appended first; nothing was written, send again.",
            "数据库在该序号已有条目（{detail}）：另一进程已先追加；未写入任何内容，请重新发送。",
        ),
        "store.pg_append_only": (
            "The log is append-only: the database refused to change or delete it.",
            "日志只可追加：数据库拒绝修改或删除。",
        ),
        "store.pg_whole_only": (
            "The PostgreSQL store holds whole logs only (the city's); {origin} was sent in part.",
            "PostgreSQL 存储只保存完整日志（市级）；{origin} 只送来了一部分。",
        ),
        "store.pg_newer": (
            "The database was upgraded by a newer zhibao (schema {version}; this one knows up "
            "to {known}): upgrade zhibao.",
            "数据库已由更新版本的 zhibao 升级（结构版本 {version}，本版本只支持到 {known}）："
            "请升级 zhibao。",
        ),
        "store.pg_collation": (
            "The database sorts text by the rules of {collation}; zhibao needs byte order: "
            "create it with LC_COLLATE 'C' (CREATE DATABASE … TEMPLATE template0 "
            "LC_COLLATE 'C' LC_CTYPE 'C').",
            "该数据库按 {collation} 的规则排序文本；zhibao 需要按字节排序：请以 LC_COLLATE 'C' "
            "创建数据库（CREATE DATABASE … TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'）。",
        ),
        "store.pg_unreachable": (
            "The PostgreSQL database could not be reached: {detail}",
            "无法连接 PostgreSQL 数据库：{detail}",
        ),
        "store.pg_denied": (
            "The PostgreSQL database refused this node's role: {detail}. Grant the role its "
            "rights on the city's tables (docs/operator.md); nothing was written.",
            "PostgreSQL 数据库拒绝了本节点使用的角色：{detail}。请为该角色授予市级数据表的权限"
            "（见 docs/operator.md）；未写入任何内容。",
        ),
    }
)
