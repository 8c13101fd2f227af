"""Which engine holds a node's store, and opening it (sync.node's `init_node`/`open_node`).

SQLite (`node.db` in the home) unless node.toml names a PostgreSQL database (`store =
"postgresql://user@host:port/db"`, a city only: DESIGN §8 `init --store`). The password is
never in node.toml: `init` strips it from the URL and writes it to a libpq passfile,
`store.pgpass` in the home (0600), which every open hands to the driver.

Invariants:
- `init` never adopts someone else's log: a database that holds entries or heads, or whose
  meta names another node, is refused before anything is created or changed
  (`check_unclaimed`, with a plain connection: no migration runs on a refused database).
- A PostgreSQL store records its node's id in meta (`node_id`); opening it from a home of
  another node is refused.
"""

from __future__ import annotations

import importlib
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync import blob_index, forks, trust
from sync.keyfiles import write_secret
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import HomeError
from sync.store import Extension, Store

if TYPE_CHECKING:
    from sync.node import NodeConfig

NODE_DB = "node.db"
PASSFILE = "store.pgpass"
SCHEMES = ("postgresql", "postgres")
STORE_NODE_ID = "node_id"  # the meta key naming the node a PostgreSQL store belongs to


def base_extensions(extensions: Sequence[Extension] = ()) -> list[Extension]:
    """The projections every node's store keeps (sync's own), then the tiers' `extensions`."""
    return [
        trust.Trust(), forks.ForkDecisions(), blob_index.BlobState(), blob_index.BlobRefs(),
        *extensions,
    ]  # fmt: skip


def store_kind(config: NodeConfig) -> str:
    """`sqlite` or `postgresql`: what `zhibao status` says the node's store is."""
    return "postgresql" if config.store else "sqlite"


def split_store_url(url: str) -> tuple[str, str | None]:
    """`url` (postgresql:// or postgres://) without its password, and the password (None
    when it has none). The URL kept has scheme postgresql://, the user, host, port,
    database and any other query parameters as given. Anything else is refused."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise HomeError("node.store_bad_url", url=shown_url(url)) from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if parts.scheme not in SCHEMES or not database or "/" in database or parts.fragment:
        raise HomeError("node.store_bad_url", url=shown_url(url))
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    for key, value in query:
        if key == "password":
            password = value
    named = (database, password or "", urllib.parse.unquote(parts.username or ""))
    if any(c in text for text in named for c in "\r\n\0"):  # one passfile line, one value
        raise HomeError("node.store_bad_url", url=shown_url(url))
    userinfo, _, netloc = parts.netloc.rpartition("@")  # host and port as given
    if userinfo:
        netloc = f"{userinfo.partition(':')[0]}@{netloc}"
    kept = urllib.parse.urlencode([(k, v) for k, v in query if k != "password"])
    clean = urllib.parse.urlunsplit(("postgresql", netloc, parts.path, kept, ""))
    return clean, password


def shown_url(url: str) -> str:
    """`url` as a message or a log line may show it: its password, if any, as ***."""
    shown = re.sub(r"(?<=[?&]password=)[^&#]*", "***", url)
    userinfo, at, rest = shown.partition("://")[2].rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        shown = shown.replace(f"{userinfo}@{rest}", f"{user}:***@{rest}", 1)
    return shown


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def passfile_line(url: str, password: str) -> str:
    """libpq's passfile line for `url` (`host:port:database:user:password`, `:` and `\\`
    escaped); libpq's defaults where the URL gives none (localhost, 5432)."""
    parts = urllib.parse.urlsplit(url)
    params = dict(urllib.parse.parse_qsl(parts.query))
    hostport = parts.netloc.rpartition("@")[2]  # as given: libpq compares it exactly
    bracketed = hostport.startswith("[")  # an IPv6 address
    host = hostport[1:].partition("]")[0] if bracketed else hostport.partition(":")[0]
    fields = [
        urllib.parse.unquote(host) or params.get("host") or "localhost",
        str(parts.port or params.get("port") or 5432),
        urllib.parse.unquote(parts.path.lstrip("/")),
        urllib.parse.unquote(parts.username or params.get("user") or ""),
        password,
    ]
    return ":".join(_passfile_field(f) for f in fields) + "\n"


def write_passfile(home: Path, url: str, password: str) -> None:
    """The home's `store.pgpass` (0600, created: never over an existing one)."""
    write_secret(home / PASSFILE, passfile_line(url, password).encode("utf-8"))


def passfile_of(home: Path) -> Path | None:
    path = home / PASSFILE
    return path if path.exists() else None


def check_unclaimed(url: str, node_id: str, *, password: str | None = None) -> None:
    """Refuse (HomeError `node.store_taken`) a database holding a zhibao log, or one whose
    meta names another node; read-only, before anything is created or migrated."""
    from sync import pg  # first: without the driver, StoreError `store.pg_driver_missing`

    psycopg = importlib.import_module("psycopg")

    def one(conn: Any, sql: str, *params: str) -> Any:
        row = conn.execute(sql, params or None).fetchone()
        return row[0] if row else None

    try:
        with psycopg.connect(url, password=password, connect_timeout=10) as conn:
            conn.read_only = True
            exists = {
                name: one(conn, "SELECT to_regclass(%s) IS NOT NULL", name)
                for name in ("entries", "heads", "meta")
            }
            held = any(
                exists[name] and one(conn, f"SELECT EXISTS (SELECT 1 FROM {name})")
                for name in ("entries", "heads")
            )
            owner = (
                one(conn, "SELECT value FROM meta WHERE key = %s", STORE_NODE_ID)
                if exists["meta"]
                else None
            )
    except psycopg.Error as exc:
        raise pg.translate(exc) from exc
    if held or (owner is not None and owner != node_id):
        raise HomeError("node.store_taken", url=shown_url(url), node_id=owner or "?")


def open_store(
    home: Path,
    config: NodeConfig,
    extensions: list[Extension],
) -> LogStore:
    """The node's store: SQLite at `home/node.db`, or the PostgreSQL database node.toml
    names (its password from the home's passfile). A PostgreSQL store that belongs to
    another node is refused."""
    if not config.store:
        return Store(home / NODE_DB, extensions=extensions, owner=config.node_id)
    from sync.pg import PgStore

    options: dict[str, Any] = {"extensions": extensions, "owner": config.node_id}
    passfile = passfile_of(home)
    if passfile is not None:
        options["passfile"] = str(passfile)
    store = PgStore(config.store, **options)
    try:
        owner = store.get_meta(STORE_NODE_ID)
        if owner is None:
            with store.transaction():
                store.set_meta(STORE_NODE_ID, config.node_id)
        elif owner != config.node_id:
            raise HomeError("node.store_other", url=config.store, node_id=owner)
    except BaseException:
        store.close()
        raise
    return store


i18n.register(
    {
        "node.store_city_only": (
            "--store is for a city: towns and villages keep their store in node.db.",
            "--store 只用于市级节点：镇、村节点的数据保存在 node.db 中。",
        ),
        "node.store_bad_url": (
            "--store {url} is not a PostgreSQL database: give "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            "--store {url} 不是 PostgreSQL 数据库地址：请填写 "
            "postgresql://用户[:密码]@主机[:端口]/数据库",
        ),
        "node.store_other": (
            "The database {url} holds the log of node {node_id}, not this node's: check "
            "`store` in node.toml.",
            "数据库 {url} 存的是节点 {node_id} 的日志，不是本节点的："
            "请检查 node.toml 中的 `store`。",
        ),
        "node.store_taken": (
            "The database {url} already holds a zhibao log (node {node_id}): a new node never "
            "takes over another's; give an empty database. Nothing was created.",
            "数据库 {url} 已存有 zhibao 日志（节点 {node_id}）：新节点不会接管其他节点的日志，"
            "请提供一个空数据库。未创建任何内容。",
        ),
    }
)

__all__ = [
    "NODE_DB", "PASSFILE", "base_extensions", "check_unclaimed", "open_store",
    "passfile_of", "shown_url", "split_store_url", "store_kind", "write_passfile",
]  # fmt: skip
