"""Time for a node: wall clock in the network's zone, corrected by a learned offset.

Time is injected (`Clock(now=...)`) wherever behaviour depends on it, so tests never sleep.
The offset is learned from the parent's clock during sync (DESIGN §4).

A person's `--at` (DESIGN §8) goes through `Clock.stamp`, the one place its limits live:
never in the future beyond the clock tolerance the sync requests allow (`MAX_SKEW_SECONDS`),
never before the node's floor (node.toml `at_floor`, an ISO date, or `at_floor_years`,
default five years before now: paper records entered later, 补录, are weeks or months old),
and never with a UTC offset that is not whole minutes (Shanghai's 1901 LMT `+08:05:43`).
A `Clock` without `limits` (a test double, a library caller) checks only the offset and the
years an entry may name; a node opened by `sync.node` configures its clock from settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, overload
from zoneinfo import ZoneInfo

from sync.protocol import i18n
from sync.protocol.entry import AT_EARLIEST, AT_LATEST, in_range
from sync.protocol.errors import ZhibaoError

ZONE = ZoneInfo("Asia/Shanghai")
# How far apart two clocks may be: a signed request further off is refused (sync.admission),
# and a person's --at may lie this far ahead of now (the node's clock may be behind).
MAX_SKEW_SECONDS = 600
DEFAULT_AT_FLOOR_YEARS = 5


@dataclass(frozen=True)
class AtLimits:
    """How far a person's --at may lie from now: `ahead` into the future, and back to
    `floor` (a date) or else `floor_years` whole years before now."""

    ahead: timedelta = timedelta(seconds=MAX_SKEW_SECONDS)
    floor_years: int = DEFAULT_AT_FLOOR_YEARS
    floor: date | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AtLimits:
        """node.toml `[settings]`: `at_floor` (an ISO date) wins over `at_floor_years`.

        A value that is not what it should be is refused (`time.bad_setting`) rather than
        silently replaced: a floor nobody can see would refuse records for no stated reason.
        """
        floor, years = settings.get("at_floor"), settings.get("at_floor_years")
        if floor is not None:
            if isinstance(floor, datetime):
                floor = floor.date()
            elif isinstance(floor, str):
                try:
                    floor = date.fromisoformat(floor.strip())
                except ValueError:
                    floor = None
            if not isinstance(floor, date):
                raise ZhibaoError("time.bad_setting", name="at_floor", value=str(floor))
            return cls(floor=floor)
        if years is None:
            return cls()
        if isinstance(years, bool) or not isinstance(years, int) or not 0 < years <= 100:
            raise ZhibaoError("time.bad_setting", name="at_floor_years", value=str(years))
        return cls(floor_years=years)

    def earliest(self, now: datetime) -> date:
        """The first day an --at may name, seen from `now`."""
        if self.floor is not None:
            return self.floor
        today = now.date()
        try:
            return today.replace(year=today.year - self.floor_years)
        except ValueError:  # 29 February
            return today.replace(year=today.year - self.floor_years, day=28)


def system_now() -> datetime:
    return datetime.now(ZONE)


class Clock:
    """`now()` = the system time (or an injected one) plus `offset`."""

    def __init__(
        self,
        now: Callable[[], datetime] = system_now,
        offset: timedelta = timedelta(),
        limits: AtLimits | None = None,
    ):
        self._now = now
        self.offset = offset
        self.limits = limits
        self._settings: Mapping[str, Any] | None = None

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take the --at limits from a node's settings, unless limits were given; read when
        an --at is checked, so a bad setting refuses only what it would judge."""
        self._settings = settings

    def base_now(self) -> datetime:
        """The uncorrected time (system clock, or the injected one)."""
        return self._now()

    def now(self) -> datetime:
        return (self._now() + self.offset).astimezone(ZONE).replace(microsecond=0)

    def stamp(self, at: str | datetime | None = None) -> str:
        """An ISO 8601 time with offset: `at` (a user's --at) or now."""
        if at is None:
            return self.now().isoformat()
        moment = parse_time(at)
        self.check_at(moment, at)
        return moment.isoformat()

    def check_at(self, moment: datetime, given: object = None) -> None:
        """Refuse a person's time beyond `limits`: ahead of now by more than the tolerance,
        or before the floor (`time.future`, `time.floor`). No limits, no refusal."""
        limits = self.limits
        if limits is None and self._settings is not None:
            limits = AtLimits.from_settings(self._settings)
        if limits is None:
            return
        now = self.now()
        shown = given if given is not None else moment.isoformat()
        if moment > now + limits.ahead:
            raise ZhibaoError(
                "time.future", value=shown, now=now.isoformat(),
                minutes=int(limits.ahead.total_seconds() // 60),
            )  # fmt: skip
        earliest = limits.earliest(now)
        if moment.date() < earliest:
            raise ZhibaoError(
                "time.floor", value=shown, floor=earliest.isoformat(),
                setting="at_floor" if limits.floor is not None else "at_floor_years",
            )  # fmt: skip


def parse_time(value: str | datetime) -> datetime:
    """A user's time (ISO 8601; a date alone means 09:00; no offset means China time)."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = value.strip().replace("/", "-")
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time()).replace(
                    hour=9
                )
            else:
                moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise ZhibaoError("time.bad", value=value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZONE)
    else:  # an offset the person wrote: whole minutes, as every zone has had since 1928
        offset = moment.utcoffset()
        if offset is not None and (offset.seconds % 60 or offset.microseconds):
            raise ZhibaoError("time.offset", value=value, offset=str(offset))
    if not in_range(moment):
        raise ZhibaoError(
            "time.range", value=value, first=AT_EARLIEST.year, last=AT_LATEST.year - 1
        )
    return moment.astimezone(ZONE)


def local_date(stamp: str) -> date:
    """The calendar day (China time) of an entry's `at`."""
    return datetime.fromisoformat(stamp).astimezone(ZONE).date()


@overload
def local_day(stamp: str) -> str: ...
@overload
def local_day(stamp: str | None) -> str | None: ...
def local_day(stamp: str | None) -> str | None:
    """That day as the projections keep it, YYYY-MM-DD; None for no time (a case not
    accepted, a pause not ended)."""
    return local_date(stamp).isoformat() if stamp else None


i18n.register(
    {
        "time.bad": (
            "'{value}' is not a time: use e.g. 2025-10-09T14:30 or 2025-10-09.",
            "“{value}”不是有效时间，例如 2025-10-09T14:30 或 2025-10-09。",
        ),
        "time.offset": (
            "'{value}' has a UTC offset of {offset}, not whole minutes (a local mean time such"
            " as Shanghai's 1901 +08:05:43); write the time in China time, e.g. +08:00.",
            "“{value}”的时区偏移 {offset} 不是整分钟（如上海 1901 年的地方平时 +08:05:43）；"
            "请用北京时间，如 +08:00。",
        ),
        "time.future": (
            "'{value}' is in the future (now is {now}; at most {minutes} minutes ahead, for"
            " clock differences): record what has happened, when it happened.",
            "“{value}”是将来的时间（现在是 {now}，为容许时钟误差最多可超前 {minutes} 分钟）："
            "只能记录已经发生的事项。",
        ),
        "time.floor": (
            "'{value}' is before {floor}, the earliest time this node records (setting"
            " {setting} in node.toml): paper records (补录) are weeks or months old; check --at.",
            "“{value}”早于本节点可记录的最早日期 {floor}（node.toml 的 {setting} 设置）："
            "补录的纸质记录通常只早几周或几个月，请检查 --at。",
        ),
        "time.bad_setting": (
            "node.toml setting {name} = '{value}' is not valid: at_floor is a date such as"
            " 2024-01-01, at_floor_years a whole number of years from 1 to 100.",
            "node.toml 的设置 {name} = “{value}”无效：at_floor 为日期，如 2024-01-01；"
            "at_floor_years 为 1 到 100 的整数年。",
        ),
        "time.range": (
            "'{value}' is outside the years {first}-{last} zhibao records.",
            "“{value}”超出 zhibao 可记录的 {first}—{last} 年范围。",
        ),
    }
)
