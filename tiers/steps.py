"""Time charged where it was spent (环节): each node's own step on a case, and its limit.

A case passes through one **step** per node that held it: from the moment the node got the
case (its receipt for the origin, its `case.taken` for a receiver) to the moment it let go
(its forward) or finished (its completion, rejection or withdrawal). A 上报件 received in a
village, reviewed by its town and decided by the city has three steps: the village's 代办
relay, the town's 初审 and the city's decision.

Each step is judged against its own limit, never against the whole case's deadline, so a
case late at the city is the city's late step and the town's on-time one:

- a step that hands the case on (初审 / 代办转报) may take `review_limit` working days: the
  item's own `review_days` when the catalogue carries one, else a quarter of the promised
  days (at least 1);
- the deciding step gets the promised days plus extensions, less the review limits of the
  steps before it during which the clock was already running (the case was accepted by
  then): the deciding tier's share of the promise. It never goes below 0.

A step's clock starts the working day after it began, or after the acceptance when the
case was accepted during the step (补正 before acceptance is the applicant's time, not the
centre's), and excludes pauses (special procedures, 补正 after acceptance), as
`tiers.deadlines.workdays_used` counts a whole case. Time in transit (forwarded, not yet
taken) is nobody's step: the receiver's clock starts when it records that it took the
case, so no node's figure depends on another node's time stamps. A step whose end is
stamped before its start (a back-dated forward) is not counted at all: `backdated`.

Pure: a step is a tuple of ISO days; `tiers.figures.per_case` judges and counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sync.clock import local_day
from sync.protocol.ids import tier_of
from tiers.calendar import WorkCalendar
from tiers.cases import entries as e
from tiers.catalogue import TIERS, CatalogueItem
from tiers.deadlines import Pause, workdays_used

# How a step ended; OPEN while its node still holds the case.
FORWARDED, IN_TRANSIT, COMPLETED, REJECTED, WITHDRAWN, OPEN = (
    "forwarded", "in_transit", "completed", "rejected", "withdrawn", "",
)  # fmt: skip
REVIEW_SHARE = 4  # a review step may use 1/REVIEW_SHARE of the promised days …
MIN_REVIEW_DAYS = 1  # … and at least this many

Step = tuple[str, str, str | None, str]  # (node, began_on, ended_on, how)


def advance(steps: list[Step], kind: str, at: str, actor: str) -> None:
    """Fold one applied case event (type `kind`, by `actor`, at `at`) into `steps`, whose
    last element is the step open now; events that move no custody change nothing."""
    node, began, ended, how = steps[-1]
    if how not in (OPEN, IN_TRANSIT):
        return
    if kind == e.FORWARDED:
        steps[-1] = (node, began, local_day(at), IN_TRANSIT)
    elif kind == e.TAKEN:
        steps[-1] = (node, began, ended, FORWARDED)
        steps.append((actor, local_day(at), None, OPEN))
    elif kind == e.COMPLETED:
        steps[-1] = (node, began, local_day(at), COMPLETED)
    elif kind in (e.REJECTED, e.WITHDRAWN):
        steps[-1] = (node, began, local_day(at), REJECTED if kind == e.REJECTED else WITHDRAWN)


def steps_of(origin: str, received_at: str, events: Iterable[tuple[str, str, str]]) -> tuple[
    Step, ...
]:  # fmt: skip
    """The steps of a case from its applied events after `case.received`, in causal order,
    as (type, at, origin) triples."""
    steps: list[Step] = [(origin, local_day(received_at), None, OPEN)]
    for kind, at, actor in events:
        advance(steps, kind, at, actor)
    return tuple(steps)


def review_limit(item: CatalogueItem | None, promised: int) -> int:
    """Working days a step that hands the case on may take."""
    own = getattr(item, "review_days", None)
    if isinstance(own, int) and own >= 0:
        return own
    return max(MIN_REVIEW_DAYS, promised // REVIEW_SHARE)


def _decides(node: str, how: str, item: CatalogueItem | None) -> bool:
    """Whether the step is the deciding one: it completed the case, or (still open) its
    node's tier may decide the item."""
    if how == COMPLETED:
        return True
    if how != OPEN or item is None:
        return how == OPEN
    return TIERS.index(tier_of(node)) >= TIERS.index(item.decide_tier)


@dataclass(frozen=True, slots=True)
class Judged:
    """One step as judged: whose, when it ended (None: open then), days used and allowed."""

    node: str
    ended_on: str | None
    used: int
    allowed: int

    @property
    def on_time(self) -> bool:
        return self.used <= self.allowed


def _clock_start(step: Step, accepted_on: str | None, accepted_by: str | None) -> str | None:
    """The day after which the step's clock runs: its beginning, or its node's own
    acceptance when that came later; None when the step's end is stamped before that."""
    node, began, ended, _ = step
    start = began
    if accepted_by == node and accepted_on is not None and accepted_on > began:
        if ended is not None and accepted_on > ended:
            return None
        start = accepted_on
    if ended is not None and ended < start:
        return None
    return start


def judge(
    steps: Sequence[Step],
    *,
    accepted_on: str | None,
    accepted_by: str | None,
    promised: int,
    extension_days: int,
    pauses: Sequence[tuple[str, str | None]],
    item: CatalogueItem | None,
    cal: WorkCalendar,
    as_of: str | None = None,
    used_days: Callable[[str, str, list[Pause]], int] | None = None,
) -> list[Judged]:
    """Every counted step (handed on or completed, and open ones) with its working days
    used and allowed. With `as_of`, as known at the close of that day: steps begun later
    are left out, one that ended later is open then, and an acceptance after it has not
    happened. Rejected, withdrawn and back-dated steps are left out. `used_days(start, end,
    pauses)` counts working days (default: `workdays_used` on `cal`; a caller may memoise)."""
    review = review_limit(item, promised)
    running_reviews = 0
    out: list[Judged] = []
    for step in steps:
        node, began, ended, how = step
        accepted = accepted_on
        if as_of is not None:
            if began > as_of:
                break
            if ended is not None and ended > as_of:
                ended, how = None, OPEN
            if accepted is not None and accepted > as_of:
                accepted = None
        if how in (REJECTED, WITHDRAWN):
            continue
        start = _clock_start((node, began, ended, how), accepted, accepted_by)
        last = ended if ended is not None else as_of
        if start is None or last is None:
            continue
        cut = [
            Pause(date.fromisoformat(s),
                  date.fromisoformat(e) if e and (as_of is None or e <= as_of) else None)
            for s, e in pauses
            if as_of is None or s <= as_of
        ]  # fmt: skip
        if used_days is not None:
            used = used_days(start, max(last, start), cut)
        else:
            used = workdays_used(cal, date.fromisoformat(start),
                                 date.fromisoformat(max(last, start)), cut)[0]  # fmt: skip
        if _decides(node, how, item):
            allowed = max(0, promised + extension_days - review * running_reviews)
        else:
            allowed = review
            running_reviews += accepted is not None and accepted <= max(last, start)
        out.append(Judged(node, ended, used, allowed))
    return out


def backdated(steps: Sequence[Step], accepted_on: str | None, accepted_by: str | None) -> list[
    Step
]:  # fmt: skip
    """The finished steps whose end is stamped before their beginning or their node's own
    acceptance: signed times that cannot be right, counted nowhere."""
    return [
        step for step in steps
        if step[2] is not None and step[3] not in (REJECTED, WITHDRAWN)
        and _clock_start(step, accepted_on, accepted_by) is None
    ]  # fmt: skip
