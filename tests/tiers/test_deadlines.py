"""Deadlines, pauses, extensions, warnings and working days used.

Every expected date below is written out by hand from the State Council's arrangement:
2025 National Day + Mid-Autumn: off Wed 10-01 .. Wed 10-08, working Sun 09-28 and Sat 10-11.
2026 New Year: off 01-01 .. 01-03, working Sun 01-04.
2026 Spring Festival: off Sun 02-15 .. Mon 02-23, working Sat 02-14 and Sat 02-28.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.protocol.i18n import use_locale
from tiers.calendar import CalendarOverrides, WorkCalendar, YearArrangement
from tiers.deadlines import (
    Deadline,
    Pause,
    compute_deadline,
    remaining_workdays,
    warning,
    workdays_used,
)

D = date.fromisoformat
CAL = WorkCalendar()

# A made-up 2027 arrangement: 01-01 .. 01-03 off, Saturday 01-09 working.
CAL_2027 = WorkCalendar(
    CalendarOverrides(
        {
            2027: YearArrangement(
                holidays=frozenset({D("2027-01-01"), D("2027-01-02"), D("2027-01-03")}),
                workdays=frozenset({D("2027-01-09")}),
                complete=True,  # published as the whole year (issue #12): 2027 is known
            )
        }
    )
)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    use_locale("en")
    yield
    use_locale(None)


def _pauses(*spans: tuple[str, str | None]) -> list[Pause]:
    return [Pause(D(s), None if e is None else D(e)) for s, e in spans]


@pytest.mark.parametrize(
    ("accepted", "days", "extension", "due"),
    [
        # 2025 National Day: accepted Thu 09-25.
        pytest.param("2025-09-25", 0, 0, "2025-09-25", id="nd-jiban"),
        pytest.param("2025-09-25", 1, 0, "2025-09-26", id="nd-1"),
        pytest.param("2025-09-25", 3, 0, "2025-09-29", id="nd-3-over-working-sunday"),
        pytest.param("2025-09-25", 5, 0, "2025-10-09", id="nd-5-over-holiday"),
        pytest.param("2025-09-25", 7, 0, "2025-10-11", id="nd-7-on-working-saturday"),
        pytest.param("2025-09-25", 10, 0, "2025-10-15", id="nd-10"),
        pytest.param("2025-09-25", 15, 0, "2025-10-22", id="nd-15"),
        pytest.param("2025-09-25", 20, 0, "2025-10-29", id="nd-20"),
        pytest.param("2025-09-26", 1, 0, "2025-09-28", id="nd-fri-1-working-sunday"),
        pytest.param("2025-09-27", 1, 0, "2025-09-28", id="nd-accepted-saturday-off"),
        pytest.param("2025-09-28", 0, 0, "2025-09-28", id="nd-jiban-working-sunday"),
        pytest.param("2025-09-28", 3, 0, "2025-10-09", id="nd-accepted-working-sunday-3"),
        pytest.param("2025-09-30", 1, 0, "2025-10-09", id="nd-eve-1"),
        pytest.param("2025-09-30", 3, 0, "2025-10-11", id="nd-eve-3"),
        pytest.param("2025-09-30", 5, 0, "2025-10-14", id="nd-eve-5"),
        pytest.param("2025-10-03", 0, 0, "2025-10-03", id="nd-jiban-on-holiday"),
        pytest.param("2025-10-03", 1, 0, "2025-10-09", id="nd-accepted-on-holiday-1"),
        pytest.param("2025-10-10", 1, 0, "2025-10-11", id="nd-fri-1-working-saturday"),
        pytest.param("2025-10-11", 1, 0, "2025-10-13", id="nd-accepted-working-saturday"),
        pytest.param("2025-09-25", 15, 5, "2025-10-29", id="nd-15-extended-5"),
        pytest.param("2025-09-25", 0, 3, "2025-09-29", id="nd-jiban-extended-3"),
        # 2026 New Year.
        pytest.param("2025-12-31", 1, 0, "2026-01-04", id="ny-1-working-sunday"),
        pytest.param("2025-12-31", 3, 0, "2026-01-06", id="ny-3"),
        # 2026 Spring Festival: accepted Thu 02-12 unless said otherwise.
        pytest.param("2026-02-12", 0, 0, "2026-02-12", id="sf-jiban"),
        pytest.param("2026-02-12", 1, 0, "2026-02-13", id="sf-1"),
        pytest.param("2026-02-12", 3, 0, "2026-02-24", id="sf-3-over-festival"),
        pytest.param("2026-02-12", 5, 0, "2026-02-26", id="sf-5"),
        pytest.param("2026-02-12", 7, 0, "2026-02-28", id="sf-7-on-working-saturday"),
        pytest.param("2026-02-12", 10, 0, "2026-03-04", id="sf-10"),
        pytest.param("2026-02-12", 15, 0, "2026-03-11", id="sf-15"),
        pytest.param("2026-02-12", 20, 0, "2026-03-18", id="sf-20"),
        pytest.param("2026-02-12", 10, 10, "2026-03-18", id="sf-10-extended-10"),
        pytest.param("2026-02-06", 7, 0, "2026-02-24", id="sf-fri-7"),
        pytest.param("2026-02-06", 20, 0, "2026-03-12", id="sf-fri-20"),
        pytest.param("2026-02-13", 1, 0, "2026-02-14", id="sf-fri-1-working-saturday"),
        pytest.param("2026-02-14", 1, 0, "2026-02-24", id="sf-accepted-working-saturday"),
        pytest.param("2026-02-18", 0, 0, "2026-02-18", id="sf-jiban-on-festival"),
        pytest.param("2026-02-18", 1, 0, "2026-02-24", id="sf-accepted-on-festival-1"),
        pytest.param("2026-02-27", 1, 0, "2026-02-28", id="sf-fri-1-working-saturday-after"),
        pytest.param("2026-02-27", 2, 0, "2026-03-02", id="sf-fri-2"),
    ],
)
def test_compute_deadline_without_pauses(
    accepted: str, days: int, extension: int, due: str
) -> None:
    assert compute_deadline(CAL, D(accepted), days, extension_days=extension) == Deadline(D(due))


@pytest.mark.parametrize(
    ("accepted", "days", "pauses", "extension", "due"),
    [
        pytest.param(
            "2025-09-25", 10, [("2025-09-26", "2025-10-10")], 0, "2025-10-22", id="nd-over-holiday"
        ),
        pytest.param(
            "2025-09-25", 5, [("2025-10-01", "2025-10-08")], 0, "2025-10-09", id="nd-only-holidays"
        ),
        pytest.param(
            "2025-09-25",
            5,
            [("2025-09-26", "2025-09-28"), ("2025-09-30", "2025-10-10")],
            0,
            "2025-10-13",
            id="nd-two-pauses",
        ),
        pytest.param(
            "2025-09-25",
            10,
            [("2025-09-29", "2025-10-10"), ("2025-09-26", "2025-09-30")],
            0,
            "2025-10-22",
            id="nd-overlapping-unsorted",
        ),
        pytest.param(
            "2025-09-25", 1, [("2025-09-29", "2025-10-10")], 0, "2025-09-26", id="nd-after-due"
        ),
        pytest.param(
            "2025-09-25", 3, [("2025-09-29", "2025-10-09")], 0, "2025-10-09", id="nd-on-due-day"
        ),
        pytest.param(
            "2025-09-30", 0, [("2025-09-30", "2025-10-09")], 0, "2025-10-09", id="nd-jiban-paused"
        ),
        pytest.param(
            "2025-09-25", 3, [("2025-09-20", "2025-09-25")], 0, "2025-09-29", id="nd-before-accept"
        ),
        pytest.param(
            "2025-09-25", 3, [("2025-09-20", "2025-09-28")], 0, "2025-10-09", id="nd-straddles"
        ),
        pytest.param(
            "2025-09-22",
            20,
            [("2025-09-26", "2025-10-09")],
            10,
            "2025-11-13",
            id="nd-20-paused-extended-10",
        ),
        pytest.param(
            "2026-02-12", 5, [("2026-02-13", "2026-02-14")], 0, "2026-02-27", id="sf-working-sat"
        ),
        pytest.param(
            "2026-02-12", 3, [("2026-02-13", "2026-02-24")], 5, "2026-03-04", id="sf-3-extended-5"
        ),
        pytest.param("2026-02-12", 15, [("2026-02-13", "2026-02-27")], 0, "2026-03-18", id="sf-15"),
    ],
)
def test_compute_deadline_with_pauses(
    accepted: str, days: int, pauses: list[tuple[str, str]], extension: int, due: str
) -> None:
    deadline = compute_deadline(CAL, D(accepted), days, _pauses(*pauses), extension)
    assert deadline == Deadline(D(due))


@pytest.mark.parametrize(
    ("accepted", "days", "pauses", "since", "remaining"),
    [
        pytest.param("2025-09-25", 10, [("2025-09-30", None)], "2025-09-30", 6, id="nd"),
        pytest.param(
            "2025-09-25",
            10,
            [("2025-09-26", "2025-10-10"), ("2025-10-14", None)],
            "2025-10-14",
            6,
            id="nd-after-closed",
        ),
        pytest.param("2025-09-25", 5, [("2025-09-30", None)], "2025-09-30", 1, id="nd-last-day"),
        pytest.param("2026-02-12", 5, [("2026-02-14", None)], "2026-02-14", 3, id="sf"),
    ],
)
def test_compute_deadline_open_pause_freezes_clock(
    accepted: str, days: int, pauses: list[tuple[str, str | None]], since: str, remaining: int
) -> None:
    deadline = compute_deadline(CAL, D(accepted), days, _pauses(*pauses))
    assert deadline == Deadline(None, paused_since=D(since), remaining_when_paused=remaining)
    assert deadline.paused


def test_compute_deadline_open_pause_after_due_keeps_due() -> None:
    deadline = compute_deadline(CAL, D("2025-09-25"), 1, _pauses(("2025-09-29", None)))
    assert deadline == Deadline(D("2025-09-26"))


def test_compute_deadline_rejects_negative_days() -> None:
    with pytest.raises(ValueError):
        compute_deadline(CAL, D("2025-09-25"), -1)


def test_compute_deadline_into_2027_is_provisional_until_published() -> None:
    # Wed 2026-12-23: Dec 24, 25, 28, 29, 30, 31, then guessed Fri 01-01, Mon 01-04, 05, 06.
    guessed = compute_deadline(CAL, D("2026-12-23"), 10)
    assert guessed == Deadline(D("2027-01-06"), frozenset({2027}))
    assert guessed.provisional
    assert guessed.note() == "provisional: publish the 2027 calendar override"
    # Published: 01-01 .. 01-03 off, so 01-04, 05, 06, 07.
    settled = compute_deadline(CAL_2027, D("2026-12-23"), 10)
    assert settled == Deadline(D("2027-01-07"))
    assert not settled.provisional
    assert settled.note() is None


def test_compute_deadline_2027_working_saturday_once_published() -> None:
    assert compute_deadline(CAL, D("2026-12-23"), 12).due == D("2027-01-08")
    assert compute_deadline(CAL_2027, D("2026-12-23"), 12) == Deadline(D("2027-01-09"))


def test_compute_deadline_within_2026_is_not_provisional() -> None:
    assert compute_deadline(CAL, D("2026-12-23"), 5) == Deadline(D("2026-12-30"))


def test_compute_deadline_open_pause_in_2027_is_provisional() -> None:
    # Counted before the pause: Dec 31, guessed Fri 01-01, Mon 01-04, Tue 01-05.
    deadline = compute_deadline(CAL, D("2026-12-30"), 10, _pauses(("2027-01-05", None)))
    assert deadline == Deadline(None, frozenset({2027}), D("2027-01-05"), 6)


def test_compute_deadline_single_day_override_wins() -> None:
    cal = WorkCalendar(CalendarOverrides(days={D("2025-10-09"): False, D("2026-02-14"): False}))
    assert compute_deadline(cal, D("2025-09-30"), 1) == Deadline(D("2025-10-10"))
    assert compute_deadline(cal, D("2026-02-13"), 1) == Deadline(D("2026-02-24"))


@pytest.mark.parametrize(
    ("accepted", "days", "today", "threshold", "expected"),
    [
        pytest.param("2025-09-25", 10, "2025-09-25", 1, None, id="fresh"),
        pytest.param("2025-09-25", 10, "2025-10-13", 1, None, id="two-left"),
        pytest.param("2025-09-25", 10, "2025-10-14", 1, "yellow", id="one-left"),
        pytest.param("2025-09-25", 10, "2025-10-15", 1, "yellow", id="due-today"),
        pytest.param("2025-09-25", 10, "2025-10-16", 1, "red", id="overdue"),
        pytest.param("2025-09-25", 10, "2026-01-01", 1, "red", id="long-overdue"),
        pytest.param("2025-09-25", 5, "2025-09-29", 1, None, id="nd-two-left"),
        pytest.param("2025-09-25", 5, "2025-09-30", 1, "yellow", id="nd-eve-one-left"),
        pytest.param("2025-09-25", 5, "2025-10-03", 1, "yellow", id="nd-holiday-one-left"),
        pytest.param("2025-09-25", 5, "2025-10-10", 1, "red", id="nd-overdue"),
        pytest.param("2025-09-25", 5, "2025-09-26", 2, None, id="threshold-2-four-left"),
        pytest.param("2025-09-25", 5, "2025-09-29", 2, "yellow", id="threshold-2-two-left"),
        pytest.param("2025-09-25", 5, "2025-09-30", 0, None, id="threshold-0-one-left"),
        pytest.param("2025-09-25", 5, "2025-10-09", 0, "yellow", id="threshold-0-due"),
        pytest.param("2026-02-12", 3, "2026-02-13", 1, None, id="sf-two-left"),
        pytest.param("2026-02-12", 3, "2026-02-14", 1, "yellow", id="sf-working-sat"),
        pytest.param("2026-02-12", 3, "2026-02-20", 1, "yellow", id="sf-festival"),
        pytest.param("2026-02-12", 3, "2026-02-25", 1, "red", id="sf-overdue"),
        pytest.param("2025-10-03", 0, "2025-10-03", 1, "yellow", id="jiban-today"),
        pytest.param("2025-10-03", 0, "2025-10-04", 1, "red", id="jiban-next-day"),
    ],
)
def test_warning_yellow_and_red(
    accepted: str, days: int, today: str, threshold: int, expected: str | None
) -> None:
    deadline = compute_deadline(CAL, D(accepted), days)
    assert warning(CAL, deadline, D(today), threshold) == expected


def test_warning_paused_case_never_turns_red() -> None:
    calm = compute_deadline(CAL, D("2025-09-25"), 10, _pauses(("2025-09-30", None)))
    close = compute_deadline(CAL, D("2025-09-25"), 5, _pauses(("2025-09-30", None)))
    assert warning(CAL, calm, D("2026-06-01")) is None
    assert warning(CAL, close, D("2026-06-01")) == "yellow"


def test_warning_open_pause_after_due_stays_red() -> None:
    deadline = compute_deadline(CAL, D("2025-09-25"), 1, _pauses(("2025-09-29", None)))
    assert warning(CAL, deadline, D("2025-10-20")) == "red"


def test_remaining_workdays_counts_after_today() -> None:
    deadline = compute_deadline(CAL, D("2025-09-25"), 10)
    assert remaining_workdays(CAL, deadline, D("2025-09-25")) == 10
    assert remaining_workdays(CAL, deadline, D("2025-10-14")) == 1
    assert remaining_workdays(CAL, deadline, D("2025-10-20")) == 0
    paused = compute_deadline(CAL, D("2025-09-25"), 10, _pauses(("2025-09-30", None)))
    assert remaining_workdays(CAL, paused, D("2026-01-01")) == 6


@pytest.mark.parametrize(
    ("accepted", "completed", "pauses", "used"),
    [
        pytest.param("2025-09-25", "2025-09-25", [], 0, id="same-day"),
        pytest.param("2025-09-25", "2025-10-09", [], 5, id="nd"),
        pytest.param("2025-09-25", "2025-10-03", [], 4, id="nd-completed-on-holiday"),
        pytest.param("2025-09-25", "2025-10-13", [("2025-09-26", "2025-10-10")], 3, id="nd-paused"),
        pytest.param(
            "2025-09-25",
            "2025-10-13",
            [("2025-09-29", "2025-10-10"), ("2025-09-26", "2025-09-30")],
            3,
            id="nd-overlapping",
        ),
        pytest.param("2025-09-25", "2025-10-10", [("2025-09-29", None)], 3, id="nd-done-in-pause"),
        pytest.param("2025-09-25", "2025-10-09", [("2025-09-30", "2025-10-14")], 4, id="nd-cut"),
        pytest.param("2026-02-12", "2026-03-02", [], 8, id="sf"),
        pytest.param("2026-02-12", "2026-03-02", [("2026-02-13", "2026-02-24")], 6, id="sf-paused"),
        pytest.param("2025-09-25", "2025-09-20", [], 0, id="completed-before-accepted"),
    ],
)
def test_workdays_used_excludes_pauses(
    accepted: str, completed: str, pauses: list[tuple[str, str | None]], used: int
) -> None:
    assert workdays_used(CAL, D(accepted), D(completed), _pauses(*pauses)) == (used, frozenset())


def test_workdays_used_into_2027_is_provisional() -> None:
    # Dec 31, guessed Fri 01-01, Mon 01-04.
    assert workdays_used(CAL, D("2026-12-30"), D("2027-01-04")) == (3, frozenset({2027}))
    assert workdays_used(CAL_2027, D("2026-12-30"), D("2027-01-04")) == (2, frozenset())


ACCEPTED = st.dates(min_value=D("2025-01-01"), max_value=D("2026-11-30"))
DAYS = st.integers(min_value=0, max_value=60)
CLOSED = st.lists(st.tuples(st.integers(-10, 120), st.integers(0, 40)), max_size=4)


def _closed(accepted: date, spans: list[tuple[int, int]]) -> list[Pause]:
    return [Pause(accepted + timedelta(s), accepted + timedelta(s + n)) for s, n in spans]


def _due(accepted: date, days: int, pauses: Sequence[Pause] = (), extension: int = 0) -> date:
    due = compute_deadline(CAL, accepted, days, pauses, extension).due
    assert due is not None
    return due


@settings(deadline=None)
@given(ACCEPTED, DAYS, DAYS, CLOSED)
def test_compute_deadline_never_before_acceptance(
    accepted: date, days: int, extension: int, spans: list[tuple[int, int]]
) -> None:
    assert _due(accepted, days, _closed(accepted, spans), extension) >= accepted


@settings(deadline=None)
@given(ACCEPTED, DAYS, CLOSED)
def test_compute_deadline_pause_never_earlier(
    accepted: date, days: int, spans: list[tuple[int, int]]
) -> None:
    pauses = _closed(accepted, spans)
    assert _due(accepted, days, pauses) >= _due(accepted, days)
    for i in range(len(pauses)):
        fewer = pauses[:i] + pauses[i + 1 :]
        assert _due(accepted, days, pauses) >= _due(accepted, days, fewer)


@settings(deadline=None)
@given(ACCEPTED, DAYS, st.integers(1, 30), CLOSED)
def test_compute_deadline_more_days_never_earlier(
    accepted: date, days: int, more: int, spans: list[tuple[int, int]]
) -> None:
    pauses = _closed(accepted, spans)
    assert _due(accepted, days + more, pauses) >= _due(accepted, days, pauses)
    assert _due(accepted, days + more) > _due(accepted, days)


@settings(deadline=None)
@given(ACCEPTED, DAYS, DAYS, CLOSED)
def test_compute_deadline_extension_adds_days(
    accepted: date, days: int, extension: int, spans: list[tuple[int, int]]
) -> None:
    pauses = _closed(accepted, spans)
    assert _due(accepted, days, pauses, extension) == _due(accepted, days + extension, pauses)


@settings(deadline=None)
@given(ACCEPTED, DAYS, CLOSED)
def test_workdays_used_at_deadline_is_the_limit(
    accepted: date, days: int, spans: list[tuple[int, int]]
) -> None:
    pauses = _closed(accepted, spans)
    assert workdays_used(CAL, accepted, _due(accepted, days, pauses), pauses)[0] == days


@settings(deadline=None)
@given(ACCEPTED, DAYS, CLOSED, st.integers(-10, 120), st.integers(0, 400))
def test_compute_deadline_open_pause_never_red(
    accepted: date, days: int, spans: list[tuple[int, int]], start: int, later: int
) -> None:
    closed = _closed(accepted, spans)
    pause = Pause(accepted + timedelta(start))
    deadline = compute_deadline(CAL, accepted, days, [*closed, pause])
    if deadline.paused:
        assert 0 <= (deadline.remaining_when_paused or 0) <= days
        assert warning(CAL, deadline, pause.start + timedelta(later)) != "red"
    else:
        assert deadline.due == _due(accepted, days, closed)
        assert deadline.due < pause.start
