"""A whole 2027 calendar for tests: the chinesecalendar package installed here knows years
up to 2026, so deadlines in 2027 are counted on weekends alone until the city publishes it.

ILLUSTRATIVE, not the real notice: shaped like a 国务院办公厅关于2027年部分节假日安排的通知
(one paragraph per festival, weekday days off and 调休 Saturdays/Sundays), with 2027's
festival dates (元旦 Fri 01-01; 正月初一 Sat 02-06; 清明 Mon 04-05; 劳动节 Sat 05-01;
端午 Wed 06-09; 中秋 Wed 09-15; 国庆 Fri 10-01).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from tiers.calendar import YearArrangement

D = date.fromisoformat

HOLIDAYS_2027 = (
    "2027-01-01",  # 一、元旦: 1月1日至3日放假，共3天
    "2027-02-05", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11",  # 二、春节: 2月5日至
    "2027-02-12",  # 13日放假调休，共9天；2月20日（星期六）上班
    "2027-04-05",  # 三、清明节: 4月3日至5日放假，共3天
    "2027-05-03", "2027-05-04", "2027-05-05",  # 四、劳动节: 5月1日至5日；4月25日（星期日）上班
    "2027-06-09",  # 五、端午节
    "2027-09-15",  # 六、中秋节
    "2027-10-01", "2027-10-04", "2027-10-05", "2027-10-06", "2027-10-07",  # 七、国庆节: 10月1日
)  # fmt: skip  # 至7日；9月26日（星期日）、10月9日（星期六）上班
WORKDAYS_2027 = ("2027-02-20", "2027-04-25", "2027-09-26", "2027-10-09")

WHOLE_2027 = YearArrangement(
    frozenset(map(D, HOLIDAYS_2027)), frozenset(map(D, WORKDAYS_2027)), complete=True
)
NEW_YEAR_ONLY_2027 = YearArrangement(frozenset({D("2027-01-01")}), complete=False)
# the same, as an entry from before the declaration existed wrote it
NEW_YEAR_ONLY_2027_UNDECLARED = replace(NEW_YEAR_ONLY_2027, complete=None)


def whole_2027_file() -> dict[str, Any]:
    """The file an admin gives `zhibao calendar import` for the whole of 2027."""
    return {
        "years": {
            "2027": {
                "complete": True,
                "holidays": list(HOLIDAYS_2027),
                "workdays": list(WORKDAYS_2027),
            }
        }
    }
