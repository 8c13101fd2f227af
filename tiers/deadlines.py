"""Time limits in working days: deadlines, pauses, extensions, warnings, working days used.

Counting starts the working day after acceptance (受理次日起算): a 承诺件 of N working days is
due on the N-th working day after the acceptance date, a 即办件 (N = 0) on the acceptance
date itself. A pause from S to resume R does not count the working days in (S, R]; the clock
restarts after R as after acceptance. An open pause freezes the clock. An extension adds
working days. Pure: every function takes the calendar and the dates it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from tiers.calendar import WorkCalendar, provisional_note

if TYPE_CHECKING:
    from tiers.figures import Facts

YELLOW = "yellow"
RED = "red"


@dataclass(frozen=True)
class Pause:
    """A special procedure or a supplement after acceptance; `end` is the resume date."""

    start: date
    end: date | None = None


@dataclass(frozen=True)
class Deadline:
    """When a case is due. `due` is None while an open pause froze a still-running clock.

    `paused_since` and `remaining_when_paused` describe that freeze: the pause's start and
    the working days that were left then. `provisional_years` name guessed calendar years.
    """

    due: date | None
    provisional_years: frozenset[int] = frozenset()
    paused_since: date | None = None
    remaining_when_paused: int | None = None

    @property
    def paused(self) -> bool:
        """Whether an open pause froze the clock before the deadline passed."""
        return self.due is None

    @property
    def provisional(self) -> bool:
        """Whether a year nobody published a calendar for was counted by weekends alone."""
        return bool(self.provisional_years)

    def note(self) -> str | None:
        """The provisional sentence for a person, or None when the deadline is settled."""
        return provisional_note(self.provisional_years) if self.provisional else None


def compute_deadline(
    cal: WorkCalendar,
    accepted_on: date,
    promised_days: int,
    pauses: Sequence[Pause] = (),
    extension_days: int = 0,
) -> Deadline:
    """The deadline of a case accepted on `accepted_on`, given its pauses and extensions.

    A pause that starts after the deadline has passed does not move it (the case stays
    overdue); one that starts on the due day itself moves it to the resume day. Pauses
    may overlap; a pause starting before acceptance counts from acceptance.
    """
    if promised_days < 0 or extension_days < 0:
        raise ValueError("promised and extension days must not be negative")
    remaining = promised_days + extension_days
    cursor = accepted_on
    guessed: frozenset[int] = frozenset()
    due, last_guess = cal.add_workdays(cursor, remaining)
    for pause in sorted(pauses, key=lambda p: p.start):
        if pause.start > due:
            break
        start = max(pause.start, cursor)
        used, g = cal.workdays_in(cursor, start)
        guessed |= g
        remaining -= used
        if pause.end is None:
            return Deadline(None, guessed, paused_since=start, remaining_when_paused=remaining)
        cursor = max(pause.end, start)
        due, last_guess = cal.add_workdays(cursor, remaining)
    return Deadline(due, guessed | last_guess)


def remaining_workdays(cal: WorkCalendar, deadline: Deadline, today: date) -> int:
    """Working days left after `today` through the due date (0 once due or past due).

    For a paused case, the working days that were left when the pause began.
    """
    if deadline.due is None:
        return deadline.remaining_when_paused or 0
    return cal.workdays_in(today, deadline.due)[0]


def warning(cal: WorkCalendar, deadline: Deadline, today: date, threshold: int = 1) -> str | None:
    """The warning on `today`: "red" past due, "yellow" with `threshold` or fewer days left.

    A paused case is judged as of its pause, so it never turns red while paused. `deadline`
    must come from the events known on `today`.
    """
    if deadline.due is not None and today > deadline.due:
        return RED
    return YELLOW if remaining_workdays(cal, deadline, today) <= threshold else None


def workdays_used(
    cal: WorkCalendar, accepted_on: date, completed_on: date, pauses: Sequence[Pause] = ()
) -> tuple[int, frozenset[int]]:
    """Working days from the day after acceptance through completion, pauses excluded.

    Completing on the acceptance day uses 0; a pause still open at completion ends there.
    Returns the count and the guessed years it relied on.
    """
    total, guessed = cal.workdays_in(accepted_on, completed_on)
    cursor = accepted_on
    for pause in sorted(pauses, key=lambda p: p.start):
        start = max(pause.start, cursor)
        end = min(completed_on if pause.end is None else pause.end, completed_on)
        if end <= start:
            continue
        paused, _ = cal.workdays_in(start, end)
        total -= paused
        cursor = end
    return total, guessed


class CaseDeadlines:
    """Deadlines and working days of cases (`tiers.figures.Facts`) on one calendar, memoised
    for the common unpaused case: what the figures judge cases by."""

    def __init__(self, cal: WorkCalendar) -> None:
        self.cal = cal
        self._due: dict[tuple[str, int], date] = {}
        self._used: dict[tuple[str, str], int] = {}

    def due(self, f: Facts, as_of: str | None = None) -> date | None:
        """The deadline as known at the close of `as_of` (None: with every event)."""
        assert f.accepted_on is not None and f.promised_days is not None
        days = f.promised_days
        if f.extensions:
            days += sum(n for d, n in f.extensions if as_of is None or d <= as_of)
        pauses = [
            Pause(date.fromisoformat(s), date.fromisoformat(end) if end else None)
            for s, end in f.pauses
            if as_of is None or s <= as_of
        ]
        if as_of is not None:
            pauses = [p if p.end and p.end.isoformat() <= as_of else Pause(p.start) for p in pauses]
        if pauses:
            return compute_deadline(self.cal, date.fromisoformat(f.accepted_on), days, pauses).due
        key = (f.accepted_on, days)
        if key not in self._due:
            self._due[key] = self.cal.add_workdays(date.fromisoformat(f.accepted_on), days)[0]
        return self._due[key]

    def span(self, start: str, end: str, pauses: list[Pause]) -> int:
        """Working days after `start` through `end`, pauses excluded (memoised unpaused)."""
        if pauses:
            return workdays_used(self.cal, date.fromisoformat(start), date.fromisoformat(end),
                                 pauses)[0]  # fmt: skip
        key = (start, end)
        if key not in self._used:
            self._used[key] = workdays_used(
                self.cal, date.fromisoformat(start), date.fromisoformat(end)
            )[0]
        return self._used[key]

    def used(self, f: Facts) -> int:
        assert f.accepted_on is not None and f.completed_on is not None
        accepted, done = date.fromisoformat(f.accepted_on), date.fromisoformat(f.completed_on)
        if f.pauses:
            pauses = [
                Pause(date.fromisoformat(s), date.fromisoformat(end) if end else None)
                for s, end in f.pauses
            ]
            return workdays_used(self.cal, accepted, done, pauses)[0]
        key = (f.accepted_on, f.completed_on)
        if key not in self._used:
            self._used[key] = workdays_used(self.cal, accepted, done)[0]
        return self._used[key]
