"""The one translation layer: every human-facing sentence goes through `t`.

Messages live in catalogues registered by the module that uses them
(`register({"key": ("English {x}", "中文 {x}")})`), so each module keeps its own words
next to its code. The locale is Chinese when LC_ALL, LC_MESSAGES or LANG (first one set)
starts with "zh", English otherwise; `ZHIBAO_LANG` overrides all three.
JSON keys never go through here: they are English and stable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_CATALOGUE: dict[str, tuple[str, str]] = {}
_forced: str | None = None


def register(messages: Mapping[str, tuple[str, str]]) -> None:
    """Add (English, Chinese) templates; a key registered twice must say the same thing."""
    for key, pair in messages.items():
        known = _CATALOGUE.get(key)
        if known is not None and known != pair:
            raise ValueError(f"message {key!r} registered twice with different text")
        _CATALOGUE[key] = pair


def locale() -> str:
    """'zh' or 'en', from the environment unless `use_locale` forced one."""
    if _forced is not None:
        return _forced
    for var in ("ZHIBAO_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def use_locale(name: str | None) -> None:
    """Force 'zh' or 'en' (tests, the demo); None returns to the environment."""
    global _forced
    _forced = name


def t(key: str, /, **params: object) -> str:
    """The sentence for `key` in the current locale, with `params` filled in."""
    pair = _CATALOGUE.get(key)
    if pair is None:
        return key + (" " + repr(params) if params else "")
    template = pair[1] if locale() == "zh" else pair[0]
    try:
        return template.format(**params)
    except (KeyError, IndexError):
        return template


def has(key: str) -> bool:
    return key in _CATALOGUE


def tn(key: str, count: int, /, **params: object) -> str:
    """`t` for a sentence about `count` things: `key + ".one"` when there is exactly one and
    it is registered ("1 entry"), else `key` ("0 entries", "3 entries"); `{count}` is filled."""
    chosen = key + ".one" if count == 1 and has(key + ".one") else key
    return t(chosen, count=count, **params)
