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


MAX_INT = 2**63 - 1  # integers within 64 bits: what SQLite and most JSON readers take


def check_value(value: Any, path: str = "$") -> None:
    """TypeError unless `canonical` could write `value` (no floats, integers within 64
    bits, string keys): a reader applies it to what it decoded from someone else."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise TypeError(f"integer at {path} does not fit in 64 bits")
        return
    if isinstance(value, float):
        raise TypeError(f"float at {path}: use integers (fen) or strings")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"non-string key at {path}")
            check_value(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_value(item, f"{path}[{index}]")
        return
    raise TypeError(f"{type(value).__name__} at {path} is not JSON")


def canonical(value: Any) -> bytes:
    """The canonical bytes of `value`; TypeError for floats or non-JSON values."""
    check_value(value)
    return _encoder.encode(value).encode("utf-8")
