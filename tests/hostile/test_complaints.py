"""A member attacks complaints (投诉) and the 差评整改 with its own real key, against real
`zhibao serve` processes (issue #12 parts 4 and 5).

Village A, under the town, writes with modified software what the real program refuses:
- it closes, and answers, a complaint about its town: only the subject or a centre above
  it may (谁办理、谁负责) — quarantined ("complaint.not_responsible");
- it answers naming itself as the subject: its own entry passes the rule (which reads the
  entry alone), the complaint refuses it when folded — nothing changes, it counts nowhere,
  and reconcile blames A ("complaint_violation");
- it files a complaint under village B's next complaint id, and one about B (not on its
  line): quarantined ("complaint.not_origin", "complaint.subject_unrelated"); B's own
  complaint with that id stays B's;
- it closes the rectification of B's bad rating: quarantined (it names B's rating, an entry
  its line never holds), and the rectification stays open until B closes it.
Every refusal by the real program appends nothing.
"""

from __future__ import annotations

import pytest

from sync.clock import local_date
from tests.hostile.harness import stamp_now
from tests.hostile.network import (
    CITY,
    ITEM,
    TOWN,
    VILLAGE_A,
    VILLAGE_B,
    Net,
    assert_quarantined,
    assert_works,
    findings,
    heads,
    honest_round,
    zb,
    zj,
)

# the attacks reach the city too: its PostgreSQL runs in the soak run (the CI run's sample
# of a member pushing to a PostgreSQL city: test_city_pushes.py)
pytestmark = [pytest.mark.usefixtures("city_engine"), pytest.mark.pg_soak]


def _own_head(net: Net, node_id: str) -> int:
    return heads(net.home(node_id))[node_id]


def test_hostile_village_cannot_answer_or_steal_complaints(net: Net) -> None:
    hostile = net.actor(VILLAGE_A)
    town, city, a, b = (net.home(n) for n in (TOWN, CITY, VILLAGE_A, VILLAGE_B))
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        complaint_id = zb(a, "complaint", "file", "--node", TOWN, "--text", "镇窗口推诿")
        complaint_id_text = complaint_id.stdout.strip()
        zb(a, "sync", "--peer", town_url)
        filed = [VILLAGE_A, _own_head(net, VILLAGE_A)]

        # the real program refuses and appends nothing
        before = _own_head(net, VILLAGE_A)
        for args in (("close", complaint_id_text), ("reply", complaint_id_text, "--text", "x")):
            done = zb(a, "complaint", *args, ok=False)
            assert done.returncode == 1 and "330782001" in done.stderr, done.stderr
        assert _own_head(net, VILLAGE_A) == before

        stamp = stamp_now()
        stolen_id = f"{VILLAGE_B}-C{local_date(stamp):%Y%m%d}-0001"  # B's next complaint id
        answer = {"complaint_id": complaint_id_text, "subject": TOWN, "after": filed}
        filing = {"about": "node", "text": "伪造", "days": 5, "after": None}
        forged = {
            "close": hostile.forge("complaint.closed", answer | {"note": "已办结"}),
            "reply": hostile.forge("complaint.replied", answer | {"text": "已答复"}),
            "self_subject": hostile.forge(
                "complaint.replied", answer | {"subject": VILLAGE_A, "text": "我就是对象"}
            ),
            "stolen": hostile.forge(
                "complaint.filed", filing | {"complaint_id": stolen_id, "subject": VILLAGE_B},
                at=stamp,
            ),
            "sibling": hostile.forge(
                "complaint.filed",
                filing | {"complaint_id": f"{VILLAGE_A}-C{local_date(stamp):%Y%m%d}-0099",
                          "subject": VILLAGE_B},
                at=stamp,
            ),
        }  # fmt: skip
        pushed = hostile.push(town_url, list(forged.values()))
        assert pushed.status_code == 200, pushed.text
        # B files its own first complaint of the day, with the id A tried to take
        assert zb(b, "complaint", "file", "--node", VILLAGE_B, "--text", "代办员不在岗"
                  ).stdout.strip() == stolen_id  # fmt: skip
        zb(b, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)

        for home in (town, city):
            assert_quarantined(home, VILLAGE_A, {forged["close"].seq, forged["reply"].seq},
                               "complaint.not_responsible")  # fmt: skip
            assert_quarantined(home, VILLAGE_A, {forged["stolen"].seq}, "complaint.not_origin")
            assert_quarantined(home, VILLAGE_A, {forged["sibling"].seq},
                               "complaint.subject_unrelated")  # fmt: skip
            shown = zj(home, "complaint", "show", complaint_id_text)
            assert (shown["status"], shown["replies"]) == ("open", []), shown
            assert [v["seq"] for v in shown["violations"]] == [forged["self_subject"].seq]
            blamed = findings(home, "complaint_violation")
            assert {f["node_id"] for f in blamed} == {VILLAGE_A}, blamed
            theirs = zj(home, "complaint", "show", stolen_id)
            assert (theirs["filed_by"], theirs["text"]) == (VILLAGE_B, "代办员不在岗")

        # the town answers and closes; its entries never follow A's refused ones
        zb(town, "complaint", "reply", complaint_id_text, "--text", "已约谈窗口人员")
        zb(town, "complaint", "close", complaint_id_text, "--note", "已整改")
        zb(town, "sync", "--peer", city_url)
        closed = zj(city, "complaint", "show", complaint_id_text)
        assert (closed["status"], closed["closed_by"]) == ("closed", TOWN)
        assert [r["node_id"] for r in closed["replies"]] == [TOWN]
        for event in zj(town, "log", "show", "--origin", TOWN):
            if event["type"].startswith("complaint."):
                assert event["body"]["after"][0] != VILLAGE_A or event["body"]["after"] == filed
        rows = {r["key"]: r for r in zj(city, "stats")["rows"]}
        assert (rows[TOWN]["complaints"], rows[TOWN]["complaints_closed"]) == (1, 1)
        assert rows[VILLAGE_B]["complaints"] == 1  # B's own, never A's forgery
        assert rows.get(VILLAGE_A, {}).get("complaints", 0) == 0
        honest_round(net, town_url, city_url)
    assert_works(town, city)


def test_hostile_village_cannot_close_anothers_rectification(net: Net) -> None:
    hostile = net.actor(VILLAGE_A)
    town, city, b = net.home(TOWN), net.home(CITY), net.home(VILLAGE_B)
    with net.serving(CITY, TOWN) as served:
        town_url, city_url = served[TOWN].url, served[CITY].url
        case_id = zb(b, "case", "receive", "--item", ITEM, "--applicant", "张三").stdout.strip()
        zb(b, "case", "reject", case_id, "--reason", "材料不符")
        zb(b, "case", "rate", case_id, "--score", "5", "--channel", "window")
        zb(b, "sync", "--peer", town_url)
        rated = zj(town, "case", "show", case_id)["events"][-1]
        assert rated["type"] == "case.rated"
        forged = hostile.forge(
            "case.rectified",
            {"case_id": case_id, "after": [rated["node_id"], rated["seq"]], "note": "已整改"},
        )
        assert hostile.push(town_url, [forged]).status_code == 200
        zb(town, "sync", "--peer", city_url)
        for home in (town, city):
            shown = zj(home, "case", "show", case_id)
            assert shown["rectification"]["status"] == "open", shown["rectification"]
            # A names B's rating as what it follows: an entry A's line never holds
            assert_quarantined(home, VILLAGE_A, {forged.seq}, "case.after_unreachable")
            assert shown["violations"] == []  # never projected, so never a custody finding
            listed = zj(home, "case", "rectifications", "--open")
            assert [r["case_id"] for r in listed] == [case_id]
        zb(b, "case", "rectify", case_id, "--note", "已当面解释并致歉")
        zb(b, "sync", "--peer", town_url)
        zb(town, "sync", "--peer", city_url)
        assert zj(city, "case", "show", case_id)["rectification"]["closed_by"] == VILLAGE_B
        honest_round(net, town_url, city_url)
    assert_works(town, city)
