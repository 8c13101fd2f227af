"""Who may write what: the rules the engine asks about every entry, on every way in.

A valid signature proves who wrote an entry, not that its author may say it. The domain
that owns an entry type registers one rule for it (`register`); the store asks the rule
before any projection sees the entry (sync.store), whether the entry was appended here or
arrived by push, pull, bundle, restore or relay. A refused entry is kept (it is part of its
author's signed chain, and evidence) but set aside: quarantined with the rule's reason,
shown by `status` and reported by `reconcile`, and never projected.

Rules are pure functions of the entry and of what the node holds (`owner`: this node's id,
and the store for keys), never of arrival order, so every node reaches the same verdict on
the same entry. The rules themselves are written down in docs/protocol.md.

    Refusal = (reason key, params): the key is an i18n message key, the params fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync.protocol.entry import SignedEntry

Refusal = tuple[str, dict[str, Any]]
# (store, this node's id or None, entry, its decoded fields) -> a refusal, or None to admit
Rule = Callable[[Any, "str | None", SignedEntry, Mapping[str, Any]], "Refusal | None"]

_RULES: dict[str, Rule] = {}


def register(entry_type: str, rule: Rule) -> None:
    """Let the domain that owns `entry_type` say who may write it (one rule per type)."""
    known = _RULES.get(entry_type)
    if known is not None and known is not rule:
        raise ValueError(f"an authority rule for {entry_type!r} is already registered")
    _RULES[entry_type] = rule


def verdict(
    store: Any, owner: str | None, entry: SignedEntry, fields: Mapping[str, Any]
) -> Refusal | None:
    """Why `entry` may not be used here, or None when it may (no rule: anyone may)."""
    rule = _RULES.get(entry.type)
    return rule(store, owner, entry, fields) if rule is not None else None


def governs(entry_type: str) -> bool:
    """Whether a rule is registered for `entry_type`."""
    return entry_type in _RULES
