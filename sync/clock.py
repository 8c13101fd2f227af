"""Time for a node: wall clock in the network's zone, corrected by a learned offset.

Time is injected (`Clock(now=...)`) wherever behaviour depends on it, so tests never sleep.
The offset is learned from the parent's clock during sync (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sync.protocol import i18n
from sync.protocol.entry import AT_EARLIEST, AT_LATEST, in_range
from sync.protocol.errors import ZhibaoError

ZONE = ZoneInfo("Asia/Shanghai")


def system_now() -> datetime:
    return datetime.now(ZONE)


class Clock:
    """`now()` = the system time (or an injected one) plus `offset`."""

    def __init__(self, now: Callable[[], datetime] = system_now, offset: timedelta = timedelta()):
        self._now = now
        self.offset = offset

    def base_now(self) -> datetime:
        """The uncorrected time (system clock, or the injected one)."""
        return self._now()

    def now(self) -> datetime:
        return (self._now() + self.offset).astimezone(ZONE).replace(microsecond=0)

    def stamp(self, at: str | datetime | None = None) -> str:
        """An ISO 8601 time with offset: `at` (a user's --at) or now."""
        if at is None:
            return self.now().isoformat()
        return parse_time(at).isoformat()


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
    if not in_range(moment):
        raise ZhibaoError(
            "time.range", value=value, first=AT_EARLIEST.year, last=AT_LATEST.year - 1
        )
    return moment.astimezone(ZONE)


def local_date(stamp: str) -> date:
    """The calendar day (China time) of an entry's `at`."""
    return datetime.fromisoformat(stamp).astimezone(ZONE).date()


i18n.register(
    {
        "time.bad": (
            "'{value}' is not a time: use e.g. 2025-10-09T14:30 or 2025-10-09.",
            "“{value}”不是有效时间，例如 2025-10-09T14:30 或 2025-10-09。",
        ),
        "time.range": (
            "'{value}' is outside the years {first}-{last} zhibao records.",
            "“{value}”超出 zhibao 可记录的 {first}—{last} 年范围。",
        ),
    }
)
