"""Node ids (national statistical division codes) and what follows from them (DESIGN §1)."""

from __future__ import annotations

from sync.protocol import i18n
from sync.protocol.errors import NodeIdError

TIER_LENGTH = {"city": 6, "town": 9, "village": 12}
TIERS = ("city", "town", "village")


_LENGTHS = frozenset(TIER_LENGTH.values())


_SEEN: set[str] = set()  # ids found well formed: a network has a few thousand at most
_SEEN_MAX = 100_000


def is_node_id(value: object) -> bool:
    """True for a well-formed id: 6, 9 or 12 ASCII digits. Checked several times for every
    entry received, so string methods rather than a regular expression (several times
    dearer), and ids already seen are looked up."""
    if type(value) is not str:  # JSON may hold anything here, unhashable lists included
        return False
    if value in _SEEN:  # hashing a str is cached on the object
        return True
    ok = len(value) in _LENGTHS and value.isascii() and value.isdigit()
    if ok and len(_SEEN) < _SEEN_MAX:
        _SEEN.add(value)
    return ok


def tier_of(node_id: str) -> str:
    """The tier an id belongs to, from its length; NodeIdError when it fits none."""
    if is_node_id(node_id):
        for tier, length in TIER_LENGTH.items():
            if len(node_id) == length:
                return tier
    raise NodeIdError("id.malformed", node_id=node_id)


def parent_of(node_id: str) -> str | None:
    """The id of the node one tier up (its prefix), or None for a city."""
    tier = tier_of(node_id)
    if tier == "city":
        return None
    return node_id[: TIER_LENGTH[TIERS[TIERS.index(tier) - 1]]]


def city_of(node_id: str) -> str:
    tier_of(node_id)
    return node_id[:6]


def check_node_id(node_id: str, tier: str, parent_id: str | None) -> None:
    """Refuse an id that does not fit `tier` or does not sit directly under `parent_id`."""
    if tier not in TIER_LENGTH:
        raise NodeIdError("id.bad_tier", tier=tier)
    if tier_of(node_id) != tier:
        raise NodeIdError("id.wrong_tier", node_id=node_id, tier=tier, length=TIER_LENGTH[tier])
    if tier == "city":
        if parent_id:
            raise NodeIdError("id.city_parent")
        return
    if not parent_id:
        raise NodeIdError("id.parent_required", tier=tier)
    if parent_of(node_id) != parent_id:
        raise NodeIdError("id.not_under", node_id=node_id, parent_id=parent_id)


def ancestors_of(node_id: str) -> list[str]:
    """The ids above `node_id`, city first (they are its prefixes)."""
    tier = tier_of(node_id)
    return [node_id[: TIER_LENGTH[t]] for t in TIERS[: TIERS.index(tier)]]


def tier_order(node_id: str) -> tuple[int, str]:
    """Sort key: the city before its towns before their villages (an id is its parent's and
    more), each tier by id. How ingest takes a batch's runs (an enrolment before what it
    vouches for), so what it stores in one go rises in this order."""
    return (len(node_id), node_id)


def is_within(node_id: str, ancestor: str) -> bool:
    """True when `node_id` is `ancestor` or lies below it."""
    return node_id.startswith(ancestor)


def subtree_end(prefix: str) -> str:
    """The first string past every id (and case id) starting with `prefix`: a subtree is
    `prefix <= x < subtree_end(prefix)` in SQL, so an index serves it."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# A tier named to a person: 市级/镇级/村级 under zh; parameters with these names hold a
# tier's code (or a ", "-joined list of codes), shown in the reader's words by i18n.t.
i18n.register_terms(
    "tier",
    ("tier", "tiers", "decide_tier"),
    {"city": ("city", "市级"), "town": ("town", "镇级"), "village": ("village", "村级")},
)
i18n.register(
    {
        "id.malformed": (
            "'{node_id}' is not a node id: use 6 digits (city), 9 (town) or 12 (village).",
            "“{node_id}”不是节点编码：市为 6 位、镇为 9 位、村为 12 位数字。",
        ),
        "id.bad_tier": (
            "Unknown tier '{tier}': use city, town or village.",
            "未知层级“{tier}”：应为 city、town 或 village。",
        ),
        "id.wrong_tier": (
            "Id {node_id} does not fit tier {tier}: a {tier} id has {length} digits.",
            "编码 {node_id} 与层级“{tier}”不符：{tier}编码应为 {length} 位。",
        ),
        "id.city_parent": ("A city has no parent.", "市级节点没有上级。"),
        "id.parent_required": (
            "A {tier} node needs --parent (the id of the node above it).",
            "{tier}节点需要 --parent（上级节点编码）。",
        ),
        "id.not_under": (
            "Id {node_id} does not start with its parent's id {parent_id} (or skips a tier).",
            "编码 {node_id} 不以上级编码 {parent_id} 开头（或跨越了层级）。",
        ),
    }
)
