"""The working-day calendar: the package's arrangement, guessed years, overrides."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.protocol.canonical import canonical
from sync.protocol.errors import CatalogueError
from sync.protocol.i18n import use_locale
from tests.support.calendars import (
    NEW_YEAR_ONLY_2027,
    NEW_YEAR_ONLY_2027_UNDECLARED,
    WHOLE_2027,
)
from tiers.calendar import (
    CalendarOverrides,
    WorkCalendar,
    YearArrangement,
    provisional_note,
    whole_year_problem,
)

D = date.fromisoformat

# A made-up 2027 arrangement (the official one is not published yet): New Year's Day on a
# Friday with the weekend off, and a working Saturday on 2027-01-09; declared the whole
# year (the counting tests here need no more; publishing checks more, see below).
ARRANGEMENT_2027 = YearArrangement(
    holidays=frozenset({D("2027-01-01"), D("2027-01-02"), D("2027-01-03")}),
    workdays=frozenset({D("2027-01-09")}),
    complete=True,
)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    use_locale("en")
    yield
    use_locale(None)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        pytest.param("2025-09-26", True, id="fri-before-national-day"),
        pytest.param("2025-09-27", False, id="sat-off"),
        pytest.param("2025-09-28", True, id="sun-adjusted-working"),
        pytest.param("2025-10-01", False, id="national-day"),
        pytest.param("2025-10-06", False, id="mid-autumn"),
        pytest.param("2025-10-08", False, id="last-holiday-wed"),
        pytest.param("2025-10-09", True, id="back-to-work-thu"),
        pytest.param("2025-10-11", True, id="sat-adjusted-working"),
        pytest.param("2025-10-12", False, id="sun-off"),
        pytest.param("2026-01-04", True, id="new-year-sun-working"),
        pytest.param("2026-02-13", True, id="fri-before-spring-festival"),
        pytest.param("2026-02-14", True, id="sat-before-spring-festival-working"),
        pytest.param("2026-02-15", False, id="spring-festival-first"),
        pytest.param("2026-02-23", False, id="spring-festival-last-mon"),
        pytest.param("2026-02-24", True, id="back-to-work-tue"),
        pytest.param("2026-02-28", True, id="sat-after-spring-festival-working"),
        pytest.param("2026-03-01", False, id="sun-off-after"),
        pytest.param("2027-01-01", True, id="unknown-year-friday-guessed"),
        pytest.param("2027-01-02", False, id="unknown-year-saturday-guessed"),
    ],
)
def test_is_workday_follows_official_arrangement(day: str, working: bool) -> None:
    assert WorkCalendar().is_workday(D(day)) is working


def test_is_known_covers_package_years_only() -> None:
    cal = WorkCalendar()
    assert cal.is_known(D("2004-01-01"))
    assert cal.is_known(D("2026-12-31"))
    assert not cal.is_known(D("2003-12-31"))
    assert not cal.is_known(D("2027-01-01"))


def test_is_known_after_year_or_day_override() -> None:
    cal = WorkCalendar(CalendarOverrides({2027: ARRANGEMENT_2027}, {D("2028-03-01"): True}))
    assert cal.is_known(D("2027-06-01"))
    assert cal.knows_year(2027)
    assert cal.is_known(D("2028-03-01"))
    assert not cal.is_known(D("2028-03-02"))
    assert not cal.knows_year(2028)


@pytest.mark.parametrize(
    "arrangement",
    [
        pytest.param(NEW_YEAR_ONLY_2027, id="declared-partial"),
        pytest.param(NEW_YEAR_ONLY_2027_UNDECLARED, id="undeclared-old-entry"),
    ],
)
def test_partial_year_counts_its_days_and_stays_guessed(arrangement: YearArrangement) -> None:
    # Issue #12: an override publishing only New Year's Day for 2027 marked the whole year
    # known while 春节 was counted as working days. Not complete: New Year's Day is off,
    # 春节 (Mon 2027-02-08) is still a guessed working day, and every count names 2027.
    cal = WorkCalendar(CalendarOverrides({2027: arrangement}))
    assert not cal.is_workday(D("2027-01-01"))
    assert cal.is_workday(D("2027-02-08"))
    assert not cal.knows_year(2027) and not cal.is_known(D("2027-06-01"))
    # Thu 2026-12-31, Fri 01-01 off, Mon 01-04.
    assert cal.add_workdays(D("2026-12-30"), 2) == (D("2027-01-04"), frozenset({2027}))


def test_whole_year_counts_spring_festival_off_and_is_known() -> None:
    cal = WorkCalendar(CalendarOverrides({2027: WHOLE_2027}))
    assert not cal.is_workday(D("2027-02-08"))  # 春节
    assert cal.is_workday(D("2027-02-20"))  # a 调休 Saturday
    assert cal.knows_year(2027)
    # Mon 2026-12-28 + 10 working days: Dec 29, 30, 31, (Jan 1 off) Jan 4-8, 11, 12.
    assert cal.add_workdays(D("2026-12-28"), 10) == (D("2027-01-12"), frozenset())
    # On weekends alone Jan 1 was counted: the guessed deadline was a day earlier.
    assert WorkCalendar().add_workdays(D("2026-12-28"), 10) == (D("2027-01-11"), frozenset({2027}))


def test_add_workdays_zero_is_start_even_on_holiday() -> None:
    assert WorkCalendar().add_workdays(D("2025-10-03"), 0) == (D("2025-10-03"), frozenset())


def test_add_workdays_crosses_new_year_into_working_sunday() -> None:
    cal = WorkCalendar()
    assert cal.add_workdays(D("2025-12-31"), 1) == (D("2026-01-04"), frozenset())
    assert cal.add_workdays(D("2025-12-31"), 2) == (D("2026-01-05"), frozenset())


def test_add_workdays_rejects_negative() -> None:
    with pytest.raises(ValueError):
        WorkCalendar().add_workdays(D("2025-10-03"), -1)


def test_add_workdays_into_unknown_year_counts_weekends_and_names_it() -> None:
    # Thu 2026-12-31, then guessed Fri 2027-01-01, Mon 01-04.
    cal = WorkCalendar()
    assert cal.add_workdays(D("2026-12-30"), 1) == (D("2026-12-31"), frozenset())
    assert cal.add_workdays(D("2026-12-30"), 2) == (D("2027-01-01"), frozenset({2027}))
    assert cal.add_workdays(D("2026-12-30"), 3) == (D("2027-01-04"), frozenset({2027}))
    assert cal.add_workdays(D("2027-12-30"), 3) == (D("2028-01-04"), frozenset({2027, 2028}))


def test_add_workdays_with_year_override_is_settled() -> None:
    cal = WorkCalendar(CalendarOverrides({2027: ARRANGEMENT_2027}))
    assert cal.add_workdays(D("2026-12-30"), 2) == (D("2027-01-04"), frozenset())
    # Fri 01-08, then the working Saturday 01-09.
    assert cal.add_workdays(D("2027-01-07"), 2) == (D("2027-01-09"), frozenset())


def test_whole_year_override_wins_over_package() -> None:
    # A city correction of a year the package knows: Mon 2026-03-02 off, Sun 03-01 working.
    fix = YearArrangement(frozenset({D("2026-03-02")}), frozenset({D("2026-03-01")}), True)
    cal = WorkCalendar(CalendarOverrides({2026: fix}))
    assert cal.is_workday(D("2026-03-01"))
    assert not cal.is_workday(D("2026-03-02"))
    # The whole year is replaced: what it does not list falls back to weekdays.
    assert cal.is_workday(D("2026-02-16"))
    assert not cal.is_workday(D("2026-02-14"))


@pytest.mark.parametrize("complete", [pytest.param(False, id="partial"),
                                      pytest.param(None, id="undeclared")])  # fmt: skip
def test_partial_override_of_a_package_year_keeps_the_package(complete: bool | None) -> None:
    fix = YearArrangement(frozenset({D("2026-03-02")}), frozenset({D("2026-03-01")}), complete)
    cal = WorkCalendar(CalendarOverrides({2026: fix}))
    assert cal.is_workday(D("2026-03-01"))
    assert not cal.is_workday(D("2026-03-02"))
    assert not cal.is_workday(D("2026-02-16"))  # 春节, from the package
    assert cal.is_workday(D("2026-02-14"))  # the package's 调休 Saturday
    assert cal.knows_year(2026)


def test_day_override_wins_over_everything() -> None:
    days = {D("2025-10-09"): False, D("2025-09-27"): True, D("2027-01-09"): False}
    cal = WorkCalendar(CalendarOverrides({2027: ARRANGEMENT_2027}, days))
    assert not cal.is_workday(D("2025-10-09"))
    assert cal.is_workday(D("2025-09-27"))
    assert not cal.is_workday(D("2027-01-09"))
    assert cal.add_workdays(D("2025-09-30"), 1) == (D("2025-10-10"), frozenset())


def test_day_override_settles_only_its_own_day_in_unknown_year() -> None:
    cal = WorkCalendar(CalendarOverrides(days={D("2027-01-01"): False}))
    # Only 2027-01-01 lies in (12-31, 01-01]: settled by the override.
    assert cal.add_workdays(D("2026-12-30"), 2) == (D("2027-01-04"), frozenset({2027}))
    assert cal.workdays_in(D("2026-12-31"), D("2027-01-01")) == (0, frozenset())


def test_workdays_in_counts_after_through_inclusive() -> None:
    cal = WorkCalendar()
    # Sep 26, Sep 28 (Sun), Sep 29, Sep 30, Oct 9.
    assert cal.workdays_in(D("2025-09-25"), D("2025-10-09")) == (5, frozenset())
    assert cal.workdays_in(D("2025-09-30"), D("2025-10-08")) == (0, frozenset())
    assert cal.workdays_in(D("2025-10-09"), D("2025-10-09")) == (0, frozenset())
    assert cal.workdays_in(D("2025-10-09"), D("2025-09-25")) == (0, frozenset())
    # Feb 13, 14 (Sat), 24, 25, 26, 27, 28 (Sat), Mar 2.
    assert cal.workdays_in(D("2026-02-12"), D("2026-03-02")) == (8, frozenset())
    assert cal.workdays_in(D("2026-12-30"), D("2027-01-04")) == (3, frozenset({2027}))


def test_overrides_body_round_trip_is_canonical_json() -> None:
    overrides = CalendarOverrides({2027: ARRANGEMENT_2027}, {D("2026-05-06"): False})
    body = overrides.to_body()
    assert body == {
        "years": {
            "2027": {
                "complete": True,
                "holidays": ["2027-01-01", "2027-01-02", "2027-01-03"],
                "workdays": ["2027-01-09"],
            }
        },
        "days": {"2026-05-06": False},
    }
    assert canonical(body)
    assert CalendarOverrides.from_body(body) == overrides


def test_overrides_body_without_complete_round_trips_unchanged() -> None:
    # An entry signed before the declaration existed must still verify: its exact bytes.
    old = {"years": {"2027": {"holidays": ["2027-01-01"], "workdays": []}}, "days": {}}
    overrides = CalendarOverrides.from_body(old)
    assert overrides.years[2027].complete is None
    assert overrides.to_body() == old


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="not-object"),
        pytest.param({"days": []}, id="days-not-object"),
        pytest.param({"days": {"2026-05-06": 1}}, id="day-not-bool"),
        pytest.param({"days": {"20260506": True}}, id="basic-iso-date"),
        pytest.param({"days": {"2026-02-30": True}}, id="no-such-date"),
        pytest.param({"years": {"27": {}}}, id="short-year"),
        pytest.param({"years": {"2027": {"holidays": "2027-01-01"}}}, id="list-not-string"),
        pytest.param({"years": {"2027": {"holidays": ["2028-01-01"]}}}, id="date-in-wrong-year"),
        pytest.param(
            {"years": {"2027": {"holidays": ["2027-01-09"], "workdays": ["2027-01-09"]}}},
            id="holiday-and-workday",
        ),
        pytest.param({"years": {"2027": {"complete": "yes"}}}, id="complete-not-bool"),
        pytest.param({"years": {"2027": {"complete": 1}}}, id="complete-number"),
    ],
)
def test_overrides_from_body_rejects_malformed(body: object) -> None:
    with pytest.raises(CatalogueError):
        CalendarOverrides.from_body(body)


def test_overrides_merged_later_publication_wins() -> None:
    first = CalendarOverrides(
        {2027: ARRANGEMENT_2027}, {D("2026-05-06"): False, D("2026-05-07"): False}
    )
    fix = YearArrangement(frozenset({D("2027-02-08")}), complete=False)
    later = CalendarOverrides({2027: fix}, {D("2026-05-06"): True})
    merged = first.merged(later)
    assert merged.years == {2027: fix}
    assert merged.days == {D("2026-05-06"): True, D("2026-05-07"): False}


def test_provisional_note_names_years_in_both_languages() -> None:
    assert provisional_note([2028, 2027]) == "provisional: publish the 2027, 2028 calendar override"
    use_locale("zh")
    assert provisional_note([2027]) == "临时期限：请发布 2027 年的节假日安排"


DATES = st.dates(min_value=D("2004-01-01"), max_value=D("2026-12-31"))


@settings(deadline=None)
@given(DATES)
def test_is_workday_matches_package_in_known_years(day: date) -> None:
    assert WorkCalendar().is_workday(day) is chinese_calendar.is_workday(day)


@settings(deadline=None)
@given(DATES, st.integers(min_value=0, max_value=400))
def test_add_workdays_inverts_workdays_in(start: date, n: int) -> None:
    cal = WorkCalendar()
    due, _ = cal.add_workdays(start, n)
    assert cal.workdays_in(start, due)[0] == n
    if n:
        assert cal.is_workday(due)
        assert cal.workdays_in(start, due - timedelta(1))[0] == n - 1


@settings(deadline=None)
@given(st.lists(st.dates(min_value=D("2024-01-01"), max_value=D("2028-12-31")), min_size=3))
def test_workdays_in_is_additive(days: list[date]) -> None:
    a, b, c = sorted(days)[:3]
    cal = WorkCalendar(CalendarOverrides({2027: ARRANGEMENT_2027}))
    whole = cal.workdays_in(a, c)[0]
    assert whole == cal.workdays_in(a, b)[0] + cal.workdays_in(b, c)[0]
    assert whole == sum(cal.is_workday(a + timedelta(i)) for i in range(1, (c - a).days + 1))


@given(
    st.dictionaries(
        st.dates(min_value=D("2027-01-01"), max_value=D("2027-12-31")),
        st.sampled_from(["holiday", "workday"]),
    ),
    st.dictionaries(st.dates(min_value=D("2000-01-01"), max_value=D("2099-12-31")), st.booleans()),
    st.sampled_from([True, False, None]),
)
def test_overrides_body_round_trips(
    kinds: dict[date, str], days: dict[date, bool], complete: bool | None
) -> None:
    arrangement = YearArrangement(
        frozenset(d for d, k in kinds.items() if k == "holiday"),
        frozenset(d for d, k in kinds.items() if k == "workday"),
        complete,
    )
    overrides = CalendarOverrides({2027: arrangement}, days)
    assert CalendarOverrides.from_body(overrides.to_body()) == overrides


# --- whole_year_problem: what "complete" must plausibly mean --------------------------------


def _package_arrangement(year: int) -> YearArrangement:
    first = date(year, 1, 1)
    span = [first + timedelta(i) for i in range((date(year, 12, 31) - first).days + 1)]
    return YearArrangement(
        frozenset(d for d in span if d.weekday() < 5 and not chinese_calendar.is_workday(d)),
        frozenset(d for d in span if d.weekday() >= 5 and chinese_calendar.is_workday(d)),
        complete=True,
    )


@pytest.mark.parametrize("year", range(2004, 2027))
def test_whole_year_problem_accepts_every_year_the_package_knows(year: int) -> None:
    # Every 国务院办公厅 notice 2004-2026, as the package carries it, is plausibly whole.
    assert whole_year_problem(year, _package_arrangement(year)) == ("", {})


def test_whole_year_problem_accepts_the_illustrative_2027() -> None:
    assert whole_year_problem(2027, WHOLE_2027) == ("", {})


@pytest.mark.parametrize(
    ("holidays", "missing"),
    [
        pytest.param((), "元旦、春节、清明节、劳动节、端午节、中秋节、国庆节", id="no-holidays"),
        pytest.param(
            ("2027-01-01",), "春节、清明节、劳动节、端午节、中秋节、国庆节", id="new-year-only"
        ),
        pytest.param(
            tuple(h for h in WHOLE_2027.holidays if h.month != 2), "春节", id="no-spring-festival"
        ),
        pytest.param(
            tuple(h for h in WHOLE_2027.holidays if h.month != 10), "国庆节", id="no-national-day"
        ),
        pytest.param(  # 国庆 1-7 October gives five weekdays off; one is clearly not it
            (*(h for h in WHOLE_2027.holidays if h.month != 10), D("2027-10-01")),
            "国庆节",
            id="national-day-one-day",
        ),
        pytest.param(  # weekend days off are no arrangement at all
            (*(h for h in WHOLE_2027.holidays if h.month != 2), D("2027-02-06"), D("2027-02-07")),
            "春节",
            id="spring-festival-on-weekend-only",
        ),
    ],
)
def test_whole_year_problem_names_missing_festivals(
    holidays: tuple[date | str, ...], missing: str
) -> None:
    days = frozenset(D(h) if isinstance(h, str) else h for h in holidays)
    arrangement = YearArrangement(days, WHOLE_2027.workdays, complete=True)
    assert whole_year_problem(2027, arrangement) == (
        "calendar.not_whole_year",
        {"year": 2027, "missing": missing},
    )


def test_whole_year_problem_before_2008_needs_no_qingming() -> None:
    # 清明, 端午 and 中秋 became holidays in 2008 (国务院令第513号): 2007 had none.
    arrangement = _package_arrangement(2007)
    assert not any(D("2007-04-02") <= d <= D("2007-04-07") for d in arrangement.holidays)
    assert whole_year_problem(2007, arrangement) == ("", {})


def test_whole_year_problem_refuses_a_weekday_as_adjusted_working_day() -> None:
    odd = YearArrangement(WHOLE_2027.holidays, WHOLE_2027.workdays | {D("2027-03-03")}, True)
    assert whole_year_problem(2027, odd) == (
        "calendar.odd_workdays",
        {"year": 2027, "days": "2027-03-03"},
    )
