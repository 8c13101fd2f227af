"""What a caller asks of the materials' endpoints (sync.blob_wire), read and checked: pure,
so both sides share the bounds. Anything malformed is `blob.bad_request`.

    have   {"sha256": [...], "held": [...], "refs": {sha: {"size", "root"}}}
    put    ?sha256=S&from=N[&size=Z&root=R]
    get    {"sha256": S, "from": N, "list": bool}

`refs` and a put's `size` and `root` say which blob the caller holds under that hash: the
receiver takes it against an entry naming exactly that, so one naming the hash first with
a wrong size or list cannot hold the honest copy back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sync.protocol.blobs import SHA256, BlobRef
from sync.protocol.canonical import MAX_INT
from sync.protocol.errors import RefusedError

HAVE_MAX = 256  # materials one `have` may ask about (and say it holds)
STREAM_TYPE = "application/x-zhibao-blobs"


def have_ask(body: bytes) -> tuple[list[str], list[str], dict[str, BlobRef]]:
    """The blobs asked about, those the caller says it holds, and the refs it holds."""
    ask = _json(body)
    refs = ask.get("refs", {})
    if not isinstance(refs, dict) or len(refs) > HAVE_MAX:
        raise RefusedError("blob.bad_request")
    said = {}
    for sha, ref in refs.items():
        if not isinstance(ref, dict):
            raise RefusedError("blob.bad_request")
        said[_sha(sha)] = BlobRef(sha, _index(ref.get("size")), _sha(ref.get("root")))
    return _shas(ask.get("sha256", [])), _shas(ask.get("held", [])), said


def put_ask(query: Mapping[str, str]) -> tuple[str, int, BlobRef | None]:
    """The blob, the chunk to start at, and the ref the caller holds (if it says)."""
    sha, start = _sha(query.get("sha256")), _number(query.get("from"))
    if "size" not in query and "root" not in query:
        return sha, start, None
    return sha, start, BlobRef(sha, _number(query.get("size")), _sha(query.get("root")))


def get_ask(body: bytes) -> tuple[str, int, bool]:
    """The blob, the chunk to start at, and whether the chunk list should come first."""
    ask = _json(body)
    sha, start = _sha(ask.get("sha256")), _index(ask.get("from", 0))
    with_list = ask.get("list", start == 0)
    if type(with_list) is not bool:
        raise RefusedError("blob.bad_request")
    return sha, start, with_list


def _sha(value: object) -> str:
    if not isinstance(value, str) or SHA256.fullmatch(value) is None:
        raise RefusedError("blob.bad_request")
    return value


def _shas(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > HAVE_MAX:
        raise RefusedError("blob.bad_request")
    return list(dict.fromkeys(_sha(v) for v in value))


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise RefusedError("blob.bad_request") from None
    if not isinstance(data, dict):
        raise RefusedError("blob.bad_request")
    return data


def _index(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise RefusedError("blob.bad_request")
    return value


def _number(value: object) -> int:
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12):
        raise RefusedError("blob.bad_request")
    return int(value)
