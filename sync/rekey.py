"""`zhibao node rekey`: a planned rotation of a node's identity key (DESIGN §8).

The old key vouches for the new one: the node appends `node.rekeyed` (naming the new public
key) signed by the old key, and signs every later entry with the new one. Its ancestors,
holding its log whole, learn the new key from that entry; nodes below it get the entry with
the enrolment records that flow down (sync.relevance: every `node.` type).

On the wire the old key is still used for a while (`node.key.old`): the parent learns the
new key only from the push that carries the rotation, and the node's children only from
their next pull. So requests, receipts, time answers and bundles are signed with the old key
until the parent has receipted the rotation and `rekey_grace_days` (node.toml, default 14)
have passed; then the old key file is deleted. Receivers accept either meanwhile
(`trust.wire_keys`).

Crash safety, file by file: the new key is written to `node.key.next` first; the entry is
appended; then node.key → node.key.old, node.key.next → node.key, node.toml updated. Opening
a home finishes (or, if the entry was never appended, undoes) an interrupted rotation.
"""

from __future__ import annotations

import tomllib

from sync.keyring import REKEYED
from sync.node import (
    NEXT_KEY,
    NODE_KEY,
    NODE_TOML,
    OLD_KEY,
    Node,
    NodeConfig,
    finish_rotation,
    read_secret,
    retiring_signer,
    write_secret,
)
from sync.protocol import i18n
from sync.protocol.errors import HomeError
from sync.protocol.keys import Signer


def rotate(node: Node) -> str:
    """Rotate this node's key; returns the new public key (hex)."""
    home = node.home
    if (home / OLD_KEY).exists():
        raise HomeError("rekey.pending", path=str(home / OLD_KEY))
    (home / NEXT_KEY).unlink(missing_ok=True)  # an attempt that never got appended
    new = Signer.generate()
    write_secret(home / NEXT_KEY, new.seed.hex().encode() + b"\n")
    try:
        with node.store.transaction():
            node.append(REKEYED, {"public_key": new.public.hex()})
            node.store.set_meta("rekeyed_at", node.clock.stamp())
    except BaseException:
        (home / NEXT_KEY).unlink(missing_ok=True)
        raise
    finish_rotation(node.home, node.store)
    _reload(node)
    return new.public.hex()


def _reload(node: Node) -> None:
    node.config = NodeConfig(**tomllib.loads((node.home / NODE_TOML).read_text("utf-8")))
    node.signer = Signer(read_secret(node.home / NODE_KEY))
    node.retiring = retiring_signer(node)


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
