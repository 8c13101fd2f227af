"""Canonical JSON: the one serialisation every signed object goes through, exactly once.

UTF-8, keys sorted, no insignificant white space, no floats (money in fen, times as
strings), integers within 64 bits. The bytes produced here are what is hashed, signed,
stored and shipped.
"""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:  # what every reader (orjson) takes back
            raise TypeError(f"integer at {path} does not fit in 64 bits")
        return
    if isinstance(value, float):
        raise TypeError(f"float at {path}: use integers (fen) or strings")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"non-string key at {path}")
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise TypeError(f"{type(value).__name__} at {path} is not JSON")


def canonical(value: Any) -> bytes:
    """The canonical bytes of `value`; TypeError for floats or non-JSON values."""
    _check(value, "$")
    return _encoder.encode(value).encode("utf-8")
