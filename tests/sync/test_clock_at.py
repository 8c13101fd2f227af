"""A person's --at (DESIGN §8): one rule in `Clock.stamp`, configured from node.toml."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from sync.clock import MAX_SKEW_SECONDS, ZONE, AtLimits, Clock
from sync.protocol.errors import ZhibaoError

NOW = datetime(2026, 12, 2, 13, 0, tzinfo=ZONE)


def _clock(settings: dict[str, object] | None = None) -> Clock:
    clock = Clock(now=lambda: NOW)
    clock.configure(settings or {})
    return clock


def _key(clock: Clock, at: str) -> str:
    with pytest.raises(ZhibaoError) as refused:
        clock.stamp(at)
    return refused.value.key


def test_clock_at_tolerance_is_the_request_clock_tolerance() -> None:
    from sync import admission

    assert admission.MAX_SKEW_SECONDS == MAX_SKEW_SECONDS == 600
    clock = _clock()
    assert clock.stamp("2026-12-02T13:10") == "2026-12-02T13:10:00+08:00"
    assert _key(clock, "2026-12-02T13:10:01") == "time.future"
    assert _key(clock, "2030-01-01") == "time.future"  # the "a case dated 2030"


@pytest.mark.parametrize(
    "settings, first",
    [
        pytest.param({}, date(2021, 12, 2), id="default-five-years"),
        pytest.param({"at_floor_years": 1}, date(2025, 12, 2), id="years"),
        pytest.param({"at_floor": "2026-06-01"}, date(2026, 6, 1), id="date"),
        pytest.param({"at_floor": date(2026, 6, 1), "at_floor_years": 1}, date(2026, 6, 1),
                     id="toml-date-wins"),
    ],
)
def test_clock_at_floor_from_settings(settings: dict[str, object], first: date) -> None:
    clock = _clock(settings)
    clock.stamp(first.isoformat())
    assert _key(clock, (first - timedelta(days=1)).isoformat()) == "time.floor"


def test_clock_at_floor_on_29_february() -> None:
    assert AtLimits(floor_years=1).earliest(datetime(2028, 2, 29, tzinfo=ZONE)) == date(
        2027, 2, 28
    )


@pytest.mark.parametrize(
    "settings",
    [{"at_floor": "last year"}, {"at_floor_years": 0}, {"at_floor_years": "5"},
     {"at_floor_years": True}, {"at_floor": 5}],
)  # fmt: skip
def test_clock_at_bad_setting_refuses_only_an_at(settings: dict[str, object]) -> None:
    clock = _clock(settings)
    clock.stamp()  # now needs no limit
    assert _key(clock, "2026-12-01") == "time.bad_setting"


def test_clock_at_offsets_that_are_not_whole_minutes_are_refused() -> None:
    clock = Clock(now=lambda: NOW)  # no limits: the offset rule holds all the same
    assert _key(clock, "1901-01-01T09:00:00+08:05:43") == "time.offset"
    assert _key(clock, "2026-12-01T09:00:00+08:05:43") == "time.offset"
    assert clock.stamp("2026-12-01T09:00:00+05:45") == "2026-12-01T11:15:00+08:00"  # Nepal


def test_clock_without_limits_takes_any_at_in_range() -> None:
    clock = Clock(now=lambda: NOW)
    assert clock.stamp("2099-12-31") == "2099-12-31T09:00:00+08:00"
