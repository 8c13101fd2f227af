"""Receipts held and given: the acknowledgement that entries are safe at another node.

Invariant: a receipt is issued only after the transaction that applied the entries has
committed (and `synchronous=FULL` made it durable), and is stored by the receiver of the
receipt only after its signature checked out against the issuer's enrolled key.
"""

from __future__ import annotations

from sync import trust
from sync.clock import Clock
from sync.logstore import LogStore
from sync.protocol.errors import RefusedError
from sync.protocol.ids import is_within
from sync.protocol.keys import Signer, verify
from sync.protocol.messages import RECEIPT_DOMAIN, Receipt, make_receipt, read_receipt


def issue(store: LogStore, signer: Signer, me: str, clock: Clock, subtree: str) -> Receipt:
    """A signed statement of the heads held here for every origin within `subtree`."""
    heads = {o: h for o, h in store.heads().items() if is_within(o, subtree)}
    return make_receipt(signer, me, clock.stamp(), heads)


def accept(
    store: LogStore, raw: bytes, sig: bytes, *, expected_issuer: str | None = None
) -> Receipt:
    """Verify a receipt against its issuer's enrolled key and keep the newest per origin."""
    import json

    try:
        issuer = str(json.loads(raw)["issuer"])
    except (ValueError, KeyError, TypeError):
        raise RefusedError("receipt.malformed") from None
    if expected_issuer is not None and issuer != expected_issuer:
        raise RefusedError("receipt.wrong_issuer", issuer=issuer, expected=expected_issuer)
    if trust.public_key(store, issuer) is None:
        raise RefusedError("receipt.unknown_issuer", issuer=issuer)
    key = trust.verify_wire(store, issuer, lambda k: verify(k, RECEIPT_DOMAIN + raw, sig))
    if key is None:
        raise RefusedError("receipt.forged")
    receipt = read_receipt(raw, sig, key)
    with store.transaction():
        for origin, (seq, digest) in receipt.heads.items():
            store.execute(
                "INSERT INTO receipts (issuer, origin, seq, hash, raw, sig, at) VALUES "
                "(?,?,?,?,?,?,?) ON CONFLICT(issuer, origin) DO UPDATE SET seq=excluded.seq,"
                " hash=excluded.hash, raw=excluded.raw, sig=excluded.sig, at=excluded.at "
                "WHERE excluded.seq >= receipts.seq",
                (issuer, origin, seq, bytes.fromhex(digest), raw, sig, receipt.at),
            )
    return receipt


def acknowledged(store: LogStore, issuer: str) -> dict[str, int]:
    """origin → seq that `issuer` has receipted, where its hash is the one held here.

    A receipt for another history (a copied node, an old backup) acknowledges nothing.
    """
    rows = store.query(
        "SELECT r.origin, r.seq FROM receipts r JOIN entries e ON e.origin = r.origin "
        "AND e.seq = r.seq AND e.hash = r.hash WHERE r.issuer = ?",
        (issuer,),
    )
    return {o: s for o, s in rows}


from sync.protocol import i18n  # noqa: E402

i18n.register(
    {
        "receipt.forged": ("receipt signature does not verify", "回执签名无效"),
        "receipt.malformed": ("receipt is malformed", "回执格式错误"),
        "receipt.wrong_issuer": (
            "receipt from {issuer}, expected {expected}",
            "回执来自 {issuer}，应来自 {expected}",
        ),
        "receipt.unknown_issuer": (
            "receipt from unenrolled node {issuer}",
            "回执来自未登记节点 {issuer}",
        ),
    }
)
