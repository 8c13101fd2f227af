"""The one translation layer: every human-facing sentence goes through `t`.

Messages live in catalogues registered by the module that uses them
(`register({"key": ("English {x}", "中文 {x}")})`), so each module keeps its own words
next to its code. The locale is Chinese when LC_ALL, LC_MESSAGES or LANG (first one set)
starts with "zh", English otherwise; `ZHIBAO_LANG` overrides all three.
JSON keys never go through here: they are English and stable.

Terms are words a value stands for (a tier's code `town` is 镇级 to a Chinese reader):
`register_terms(kind, params, {value: (english, chinese)})` names the parameters that
hold such a value, and `t` shows a known value (or a ", "-joined list of them) in the
reader's words; the value itself stays data (errors and the wire keep `town`).
`render` fills a template that came from elsewhere (a server's refusal: key and params)
and falls back to the text that came with it when the key or its params do not fit.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator, Mapping

_CATALOGUE: dict[str, tuple[str, str]] = {}
_TERM_PARAMS: dict[str, str] = {}  # parameter name -> kind of term it holds
_forced: str | None = None
# One page's language (the desk renders pages for readers of both languages at once, in
# worker threads): it wins over `_forced` and the environment within its context only.
_speaking: contextvars.ContextVar[str | None] = contextvars.ContextVar("speaking", default=None)


def register(messages: Mapping[str, tuple[str, str]]) -> None:
    """Add (English, Chinese) templates; a key registered twice must say the same thing."""
    for key, pair in messages.items():
        known = _CATALOGUE.get(key)
        if known is not None and known != pair:
            raise ValueError(f"message {key!r} registered twice with different text")
        _CATALOGUE[key] = pair


def locale() -> str:
    """'zh' or 'en': the page's (`speaking`), else what `use_locale` forced, else the
    environment's."""
    page = _speaking.get()
    if page is not None:
        return page
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


@contextlib.contextmanager
def speaking(name: str) -> Iterator[None]:
    """Speak 'zh' or 'en' in this block, in this context only (one page of the desk: other
    threads and tasks keep their own language), then return to what was in force before."""
    token = _speaking.set(name)
    try:
        yield
    finally:
        _speaking.reset(token)


def register_terms(
    kind: str, params: tuple[str, ...], values: Mapping[str, tuple[str, str]]
) -> None:
    """Words for the values of one kind (`tier`: city, town, village), and the parameter
    names that hold such a value (`tier`, `tiers`, `decide_tier`)."""
    register({f"term.{kind}.{value}": pair for value, pair in values.items()})
    for name in params:
        known = _TERM_PARAMS.setdefault(name, kind)
        if known != kind:
            raise ValueError(f"parameter {name!r} already holds terms of kind {known!r}")


def term(kind: str, value: str) -> str:
    """`value` in the reader's words if it is a known term of `kind`, else as it is."""
    key = f"term.{kind}.{value}"
    if key in _CATALOGUE:
        return t(key)
    parts = value.split(", ") if isinstance(value, str) else []
    if len(parts) > 1 and all(f"term.{kind}.{p}" in _CATALOGUE for p in parts):
        return listed(t(f"term.{kind}.{p}") for p in parts)
    return value


def _terms(params: Mapping[str, object]) -> dict[str, object]:
    return {
        name: term(_TERM_PARAMS[name], value)
        if name in _TERM_PARAMS and isinstance(value, str)
        else value
        for name, value in params.items()
    }


def t(key: str, /, **params: object) -> str:
    """The sentence for `key` in the current locale, with `params` filled in."""
    pair = _CATALOGUE.get(key)
    if pair is None:
        return key + (" " + repr(params) if params else "")
    template = pair[1] if locale() == "zh" else pair[0]
    try:
        return template.format(**_terms(params))
    except (KeyError, IndexError):
        return template


def render(key: object, params: object, fallback: str) -> str:
    """A sentence that came from elsewhere (a server's refusal: its key and params) in
    this reader's language; `fallback` (the text sent with it) when the key is not known
    here or its params do not fill the template (missing, or not of the kind it formats)."""
    if not isinstance(key, str) or key not in _CATALOGUE or not isinstance(params, Mapping):
        return fallback
    pair = _CATALOGUE[key]
    template = pair[1] if locale() == "zh" else pair[0]
    values = {str(k): v for k, v in params.items()}
    try:
        return template.format(**_terms(values))
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return fallback


def template(key: str) -> str | None:
    """The current locale's template for `key` as registered, unfilled (None if unknown):
    for text another library formats itself (click's messages)."""
    pair = _CATALOGUE.get(key)
    if pair is None:
        return None
    return pair[1] if locale() == "zh" else pair[0]


def has(key: str) -> bool:
    return key in _CATALOGUE


def tn(key: str, count: int, /, **params: object) -> str:
    """`t` for a sentence about `count` things: `key + ".one"` when there is exactly one and
    it is registered ("1 entry"), else `key` ("0 entries", "3 entries"); `{count}` is filled."""
    chosen = key + ".one" if count == 1 and has(key + ".one") else key
    return t(chosen, count=count, **params)


def listed(items: Iterable[object]) -> str:
    """Items named one after another: `a、b、c` under zh, `a, b, c` otherwise."""
    return ("、" if locale() == "zh" else ", ").join(str(item) for item in items)
