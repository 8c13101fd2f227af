"""A node's home (DESIGN §7): node.db, node.key, seal.key, node.toml — and local appends.
A city may keep its store on PostgreSQL instead of node.db (sync.node_store).

Invariants: a node only ever appends to its own origin, one entry per transaction (joined
with whatever the caller checks in the same transaction), and refuses to append while a
restore has not caught up, so it can never fork itself.

Data at rest is its owner's: the home is created 0700, node.db 0600 before SQLite opens it
(SQLite gives the -wal and -shm files the database's mode), key files 0600. A key file that
others can read is refused; a database or home they can read or change is reported by
`exposure_warning` (the CLI prints it), not refused.
"""

from __future__ import annotations

import os
import shlex
import stat
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync import blobs, keyring, liveness, node_store, rekey, trust  # noqa: F401  (liveness: the heartbeat's body check)
from sync.clock import Clock
from sync.keyfiles import (
    NEXT_KEY,
    NEXT_SEAL,
    NODE_KEY,
    OLD_KEY,
    OLD_SEAL,
    SEAL_KEY,
    read_seal_secret,
    read_signer,
    write_secret,
)
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.entry import SignedEntry, encode_entry, sign_entry
from sync.protocol.errors import HomeError, KeyFileError
from sync.protocol.ids import check_node_id, city_of
from sync.protocol.keys import Signer, check_identity_key
from sync.store import Extension

NODE_DB, NODE_TOML = node_store.NODE_DB, "node.toml"
RESTORING = "restoring"
_OTHERS_MAY = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    tier: str
    name: str
    public_key: str
    root_key: str
    parent_id: str | None = None
    parent_url: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    store: str | None = None  # a PostgreSQL URL without password (a city); None: node.db

    def to_toml(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _create_database_file(path: Path) -> None:
    """node.db, empty and readable by its owner only, unless it exists (then it is kept)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def exposure_warning(home: Path) -> str | None:
    """A one-line warning when other users may read or change the home or the database
    (node.db, -wal, -shm), naming the fix; None when only the owner may."""
    paths = [home, *(home / (NODE_DB + suffix) for suffix in ("", "-wal", "-shm"))]
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & _OTHERS_MAY:
            return i18n.t("home.too_open", home=shlex.quote(str(home)))
    return None


class Node:
    """An opened home. Use as a context manager, or close() it."""

    def __init__(
        self,
        home: Path,
        config: NodeConfig,
        store: LogStore,
        signer: Signer,
        seal: X25519PrivateKey | bytes,
        clock: Clock,
    ) -> None:
        self.home, self.config, self.store, self.signer = home, config, store, signer
        self._seal, self.clock = seal, clock
        self.retiring: Signer | None = None  # a rotated-out key still used on the wire
        self.retiring_seal: X25519PrivateKey | None = None  # … and its seal key

    @property
    def seal(self) -> X25519PrivateKey:
        """This node's seal key, made on first use from the bytes `open_node` read."""
        if isinstance(self._seal, bytes):
            self._seal = X25519PrivateKey.from_private_bytes(self._seal)
        return self._seal

    @seal.setter
    def seal(self, key: X25519PrivateKey) -> None:
        self._seal = key

    @property
    def request_signer(self) -> Signer:
        """The key this node's requests are signed with: the retired one only until the
        parent has receipted the rotation (then the parent knows the new one)."""
        if self.retiring is None or rekey.parent_has_rotation(self):
            return self.signer
        return self.retiring

    @property
    def seals(self) -> list[X25519PrivateKey]:
        """The keys a body sealed to this node may be opened with: its own, and for a
        while after a rotation the retired one (a sender may not know the new one yet)."""
        return [self.seal] + ([self.retiring_seal] if self.retiring_seal is not None else [])

    @property
    def wire_signer(self) -> Signer:
        """The key this node's requests, receipts, time answers and bundles are signed
        with: the retired one for a while after a rotation (sync.rekey), else its own."""
        return self.retiring or self.signer

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def blobs(self) -> blobs.BlobStore:
        """The materials held in this home (sync.blobs)."""
        return blobs.BlobStore(self.home, self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self, entry_type: str, body: dict[str, Any], *, at: str | None = None
    ) -> SignedEntry:
        """Sign and append one entry to this node's own log (joins an open transaction)."""
        with self.store.transaction():
            if self.store.get_meta(RESTORING):
                raise HomeError("node.restoring")
            if self.node_id in self.store.frozen():
                raise HomeError("node.self_frozen")
            seq, prev = self.store.head(self.node_id)
            answer = keyring.KeyRing.load(self.store, self.node_id).span(seq + 1)
            if answer.why == "entry.revoked":
                raise HomeError("node.revoked", cut=answer.cut)
            if answer.key is not None and answer.key != self.signer.public:
                raise HomeError("node.key_not_enrolled", seq=seq + 1)
            raw = encode_entry(
                self.node_id, seq + 1, prev, at or self.clock.stamp(), entry_type, body
            )
            entry = sign_entry(self.signer, raw)
            self.store.insert([entry], self.clock.stamp(), strict=True)
        return entry

    def set_clock_offset(self, offset: timedelta) -> None:
        self.clock.offset = offset
        with self.store.transaction():
            self.store.set_meta("clock_offset", str(int(offset.total_seconds())))


def _config_path(home: Path) -> Path:
    return home / NODE_TOML


def init_node(
    home: Path,
    *,
    tier: str,
    node_id: str,
    name: str,
    parent_id: str | None = None,
    parent_url: str | None = None,
    root_key: str | None = None,
    extensions: Sequence[Extension] = (),
    clock: Clock | None = None,
    store: str | None = None,
) -> Node:
    """Create a node's home. Refuses a home that already holds a node, or ids that do not fit.
    `store`: a city's PostgreSQL database (postgresql://USER[:PASSWORD]@HOST[:PORT]/DB),
    which must hold no log; its password goes to the home's passfile, not node.toml."""
    check_node_id(node_id, tier, parent_id)
    if not name.strip():
        raise HomeError("node.name_required")
    if parent_url is not None:
        check_parent_url(parent_url)
    if (home / NODE_DB).exists() or _config_path(home).exists():
        raise HomeError("node.exists", home=str(home))
    password = None
    if store is not None:
        if tier != "city":
            raise HomeError("node.store_city_only")
        store, password = node_store.split_store_url(store)
        node_store.check_unclaimed(store, node_id, password=password)
    signer = Signer.generate()
    if tier == "city":
        root_key = signer.public.hex()
    elif not root_key:
        raise HomeError("node.root_required")
    check_identity_key(root_key)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    seal = X25519PrivateKey.generate()
    config = NodeConfig(
        node_id=node_id,
        tier=tier,
        name=name.strip(),
        public_key=signer.public.hex(),
        root_key=root_key.lower(),
        parent_id=parent_id,
        parent_url=parent_url,
        store=store,
    )
    write_secret(home / NODE_KEY, signer.seed.hex().encode() + b"\n")
    write_secret(home / SEAL_KEY, seal.private_bytes_raw().hex().encode() + b"\n")
    if store is None:
        _create_database_file(home / NODE_DB)
    elif password is not None:
        node_store.write_passfile(home, store, password)
    opened = node_store.open_store(home, config, node_store.base_extensions(extensions))
    trust.pin_root(
        opened, city_of(node_id), bytes.fromhex(config.root_key), name if tier == "city" else ""
    )
    import tomli_w  # only `init` writes node.toml; opening a node reads it (#13)

    _config_path(home).write_text(tomli_w.dumps(config.to_toml()), "utf-8")
    if clock is None:  # an injected clock (a test's, an embedding's) brings its own limits
        clock = Clock()
        clock.configure(config.settings)  # a person's --at: limits from node.toml
    node = Node(home, config, opened, signer, seal, clock)
    if tier == "city":  # the root enrols itself, so its seal key flows down with the rest
        seal_hex = seal.public_key().public_bytes_raw().hex()
        node.append(
            trust.ENROLLED, trust.enrolment_body(node_id, name, config.public_key, seal_hex)
        )
    return node


def check_parent_url(url: str) -> None:
    """Refuse a parent URL no sync could use: it must be http:// or https://, name a host,
    and carry nothing but an optional port and path (no user, query or fragment)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0  # .port raises on a bad port
    except ValueError:
        port_ok = False
    if (
        not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in url)
    ):
        raise HomeError("node.bad_parent_url", url=url)


def open_node(
    home: Path,
    *,
    extensions: Sequence[Extension] = (),
    clock: Clock | None = None,
    rebuild: bool = False,
) -> Node:
    """Open an existing home, checking that its key is the one it was created with.

    A home whose node.db is gone (the disk died, the keys were kept) is refused, unless
    `rebuild` (`zhibao restore`): then a new, empty database is made, marked restoring."""
    path = _config_path(home)
    if not path.exists():
        raise HomeError("node.missing", home=str(home))
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        config = NodeConfig(**data)
    except (tomllib.TOMLDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise HomeError("node.bad_config", home=str(home), detail=str(exc)) from None
    rotating = any((home / name).exists() for name in (NEXT_KEY, OLD_KEY, NEXT_SEAL, OLD_SEAL))
    if not rotating:
        signer = read_signer(home / NODE_KEY)
        if signer.public.hex() != config.public_key:
            raise KeyFileError("key.wrong", path=str(home / NODE_KEY))
    lost = not config.store and not (home / NODE_DB).exists()  # PostgreSQL: not a file
    if lost and config.tier == "city":
        raise HomeError("node.city_db_lost", home=str(home))
    if lost and not rebuild:
        raise HomeError("node.db_lost", home=str(home))
    if lost:
        _create_database_file(home / NODE_DB)
    store = node_store.open_store(home, config, node_store.base_extensions(extensions))
    if lost:  # the disk died: never append under this key before learning how far the log got
        trust.pin_root(store, city_of(config.node_id), bytes.fromhex(config.root_key))
        with store.transaction():
            store.set_meta(RESTORING, "1")
    if rotating:  # finish (or undo) a key rotation that stopped half-way
        rekey.finish(home, store)
        config = NodeConfig(**tomllib.loads(path.read_text("utf-8")))
        signer = read_signer(home / NODE_KEY)
        if signer.public.hex() != config.public_key:
            store.close()
            raise KeyFileError("key.wrong", path=str(home / NODE_KEY))
    if clock is None:  # an injected clock (a test's, an embedding's) brings its own limits
        clock = Clock()
        clock.configure(config.settings)  # a person's --at: limits from node.toml
    offset = store.get_meta("clock_offset")
    if offset:
        clock.offset = timedelta(seconds=int(offset))
    node = Node(home, config, store, signer, read_seal_secret(home / SEAL_KEY), clock)
    node.retiring, node.retiring_seal = rekey.retiring(node)
    return node


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """--home, else $ZHIBAO_HOME, else the current directory."""
    value = home or os.environ.get("ZHIBAO_HOME") or "."
    return Path(value).expanduser()


i18n.register(
    {
        "node.exists": (
            "{home} already holds a node; choose another --home.",
            "{home} 已有节点，请换一个 --home。",
        ),
        "node.missing": (
            "No node at {home}: run `zhibao init` first, or give --home / ZHIBAO_HOME.",
            "{home} 没有节点：请先运行 `zhibao init`，或指定 --home / ZHIBAO_HOME。",
        ),
        "node.bad_config": (
            "node.toml at {home} is damaged: {detail}",
            "{home} 的 node.toml 已损坏：{detail}",
        ),
        "node.name_required": ("A node needs a --name.", "节点需要 --name。"),
        "node.root_required": (
            "A town or village must pin the city's key: give --root-key HEX.",
            "镇、村节点必须固定市级公钥：请提供 --root-key。",
        ),
        "node.restoring": (
            "This node is being restored and may not record anything until it has caught up "
            "with its parent: run `zhibao restore`.",
            "本节点正在恢复，追平上级数据前不能记录：请运行 `zhibao restore`。",
        ),
        "node.revoked": (
            "This node's key was revoked after seq {cut}: nothing it signs now is accepted. "
            "Ask the parent to enrol a new key (`node enroll … --continue-from {cut}`), then "
            "restore onto it.",
            "本节点密钥已在序号 {cut} 之后被吊销：现在签名的内容不会被接受。"
            "请上级登记新密钥（`node enroll … --continue-from {cut}`），再用新密钥恢复。",
        ),
        "node.key_not_enrolled": (
            "This node's key is not the one enrolled for its next entry (#{seq}): run "
            "`zhibao restore` with the key the parent enrolled.",
            "本节点密钥不是为下一条目（#{seq}）登记的密钥："
            "请用上级登记的密钥运行 `zhibao restore`。",
        ),
        "node.self_frozen": (
            "This node's own log has a fork on record; an admin must resolve it first.",
            "本节点日志存在分叉记录，需管理员先处理。",
        ),
        "node.city_db_lost": (
            "node.db is missing at {home}: put the latest backup of node.db back (the city has "
            "no parent to restore from).",
            "{home} 缺少 node.db：请放回最近的 node.db 备份（市级节点没有上级可供恢复）。",
        ),
        "node.db_lost": (
            "node.db is missing at {home} (the keys are there): put its latest backup back, "
            "or rebuild it from the parent with `zhibao restore`.",
            "{home} 缺少 node.db（密钥还在）：请放回最近的 node.db 备份，"
            "或运行 `zhibao restore` 从上级重建。",
        ),
        "node.bad_parent_url": (
            "--parent-url {url} is not an address a node can sync with: give the parent's "
            "`zhibao serve` address, such as http://192.168.1.10:8750",
            "--parent-url {url} 不是可以同步的地址：请填写上级 `zhibao serve` 的地址，"
            "如 http://192.168.1.10:8750",
        ),
        "key.missing": ("Key file {path} is missing.", "密钥文件 {path} 不存在。"),
        "home.too_open": (
            "warning: other users can read or change the node's data at {home}: run "
            "`chmod 700 {home}; chmod 600 {home}/node.db*`",
            "警告：其他用户可以读取或修改 {home} 中的节点数据：请运行 "
            "`chmod 700 {home}; chmod 600 {home}/node.db*`",
        ),
        "key.too_open": (
            "Key file {path} is readable by others: run `chmod 600 {path}`.",
            "密钥文件 {path} 可被他人读取：请运行 `chmod 600 {path}`。",
        ),
        "key.wrong": (
            "{path} is not this node's key (it does not match node.toml).",
            "{path} 不是本节点的密钥（与 node.toml 不符）。",
        ),
    }
)
