"""`zhibao node rekey`: a planned rotation of a node's keys (DESIGN §8).

The old identity key vouches for the new one: the node appends `node.rekeyed` (naming the
new identity key and the new seal key) signed by the old key, and signs every later entry
with the new one. Its ancestors, holding its log whole, learn the new keys from that entry;
nodes below it get the entry with the enrolment records that flow down (sync.relevance:
every `node.` type). The seal key turns over with it: whoever later steals the old
`seal.key` reads nothing sealed after the rotation.

On the wire the old keys stay in use for a while (`node.key.old`, `seal.key.old`): the
parent learns the new keys only from the push that carries the rotation, the node's
children only from their next pull. So requests are signed with the old identity key
until the parent has receipted the rotation (`Node.request_signer`); receipts, time
answers and bundles until, in addition, `rekey_grace_days` (node.toml, default 14) have
passed (`Node.wire_signer`); bodies sealed to the old seal key open until then too, and
then both old files are deleted. A receiver accepts the retired key only until it has seen
the new one in use (`trust.verify_wire`).

Crash safety, file by file: the new keys are written to `*.next` first; the entry is
appended; then each key → `*.old`, `*.next` → key, node.toml updated. Opening a home
(`finish`) completes an interrupted rotation when the entry is in the log, and drops the
`*.next` files when it is not.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.keyfiles import (
    NEXT_KEY,
    NEXT_SEAL,
    NODE_KEY,
    OLD_KEY,
    OLD_SEAL,
    SEAL_KEY,
    read_seal,
    read_signer,
    seal_public_hex,
    write_secret,
)
from sync.keyring import REKEYED
from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import HomeError
from sync.protocol.keys import Signer

if TYPE_CHECKING:
    from sync.node import Node

GRACE_DAYS = 14.0
_CONFIG = "node.toml"
# (key file, its .next, its .old, the public key of a file, the rotation body's field)
def _identity_public(path: Path) -> str:
    return read_signer(path).public.hex()


_PAIRS: list[tuple[str, str, str, Callable[[Path], str], str]] = [
    (NODE_KEY, NEXT_KEY, OLD_KEY, _identity_public, "public_key"),
    (SEAL_KEY, NEXT_SEAL, OLD_SEAL, lambda p: seal_public_hex(read_seal(p)), "seal_key"),
]


def rotate(node: Node) -> tuple[str, int]:
    """Rotate this node's identity and seal keys; (the new public key, the rotation's seq)."""
    home = node.home
    for _, _, old, _, _ in _PAIRS:
        if (home / old).exists():
            raise HomeError("rekey.pending", path=str(home / old))
    for _, nxt, _, _, _ in _PAIRS:
        (home / nxt).unlink(missing_ok=True)  # an attempt that never got appended
    signer, seal = Signer.generate(), X25519PrivateKey.generate()
    write_secret(home / NEXT_KEY, signer.seed.hex().encode() + b"\n")
    write_secret(home / NEXT_SEAL, seal.private_bytes_raw().hex().encode() + b"\n")
    body = {"public_key": signer.public.hex(), "seal_key": seal_public_hex(seal)}
    try:
        with node.store.transaction():
            entry = node.append(REKEYED, body)
            node.store.set_meta("rekeyed_at", node.clock.stamp())
    except BaseException:
        for _, nxt, _, _, _ in _PAIRS:
            (home / nxt).unlink(missing_ok=True)
        raise
    finish(home, node.store)
    node.config = type(node.config)(**tomllib.loads((home / _CONFIG).read_text("utf-8")))
    node.signer, node.seal = read_signer(home / NODE_KEY), read_seal(home / SEAL_KEY)
    node.retiring, node.retiring_seal = retiring(node)
    return signer.public.hex(), entry.seq


def _latest_rotation(store: LogStore, node_id: str) -> tuple[int, dict[str, str]]:
    """(seq, body) of this node's latest rotation in its own log; (0, {}) if none."""
    rows = store.query(
        "SELECT seq, raw FROM entries WHERE origin = ? AND type = ? ORDER BY seq DESC LIMIT 1",
        (node_id, REKEYED),
    )
    return (rows[0][0], dict(json.loads(rows[0][1])["body"])) if rows else (0, {})


def finish(home: Path, store: LogStore) -> None:
    """Complete (or undo) a rotation that stopped half-way; nothing when there is none."""
    config = tomllib.loads((home / _CONFIG).read_text("utf-8"))
    _, body = _latest_rotation(store, str(config["node_id"]))
    for key_name, next_name, old_name, public_of, field in _PAIRS:
        key, nxt, old = home / key_name, home / next_name, home / old_name
        if not nxt.exists():
            continue
        if public_of(nxt) != body.get(field):
            nxt.unlink()  # the entry was never appended: the old key stays
            continue
        if key.exists() and not old.exists():
            os.replace(key, old)
        os.replace(nxt, key)
    target, key = body.get("public_key"), home / NODE_KEY
    moved = target and key.exists() and config["public_key"] != target
    if moved and _identity_public(key) == target:
        config["public_key"] = target
        import tomli_w  # only a finishing rotation writes node.toml (#13)

        tmp = home / (_CONFIG + ".tmp")
        tmp.write_text(tomli_w.dumps(config), "utf-8")
        os.replace(tmp, home / _CONFIG)


def parent_has_rotation(node: Node) -> bool:
    """Whether the parent has receipted this node's latest rotation (a city: always)."""
    from sync import receipts  # a rotation's question; opening a node asks it rarely (#13)

    seq, _ = _latest_rotation(node.store, node.node_id)
    parent = node.config.parent_id
    return parent is None or receipts.acknowledged(node.store, parent).get(node.node_id, 0) >= seq


def retiring(node: Node) -> tuple[Signer | None, X25519PrivateKey | None]:
    """The retired keys while they are still used on the wire (see module doc); deletes
    them once the parent has receipted the rotation and the grace period is over."""
    old_key, old_seal = node.home / OLD_KEY, node.home / OLD_SEAL
    if not old_key.exists() and not old_seal.exists():
        return None, None
    acked = parent_has_rotation(node)
    stamp = node.store.get_meta("rekeyed_at")
    grace = float(node.config.settings.get("rekey_grace_days", GRACE_DAYS))
    since = node.clock.now() - datetime.fromisoformat(stamp) if stamp else timedelta(0)
    if acked and since >= timedelta(days=grace):
        old_key.unlink(missing_ok=True)
        old_seal.unlink(missing_ok=True)
        return None, None
    return (
        read_signer(old_key) if old_key.exists() else None,
        read_seal(old_seal) if old_seal.exists() else None,
    )


i18n.register(
    {
        "rekey.pending": (
            "The previous rotation is still being handed on ({path} is kept until the parent "
            "has it and the grace period is over); rotate again after that.",
            "上一次密钥轮换尚在交接中（{path} 将保留到上级确认且宽限期结束）；之后再轮换。",
        ),
        "rekey.done": (
            "New key {public_key}: entries after seq {seq} are signed with it.",
            "新密钥 {public_key}：序号 {seq} 之后的条目用它签名。",
        ),
    }
)
