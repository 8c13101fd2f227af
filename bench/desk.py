"""The desk at city scale (issue #14): time to first byte and to a loaded page (the HTML,
then every style sheet and script it names, fetched with httpx one after another) for the
overview, warnings and network pages, and in a real browser (Debian's chromium driven by
Playwright: navigation to `load`, then until the trend charts' canvases are drawn), served
by a real `zhibao serve` subprocess to a real desk user logged in with their password.

The city is bench/stats.py's generated year (≥ 1,000,000 entries at `--scale 1.0`, ~15-25
min to build on this VM; `--dir DIR` keeps it and a later run with the same `--dir` reuses
it). Each configuration gets a fresh `zhibao serve`: `cache off` (node.toml
`desk_figures_cache = false`: every page computes its figures, as before the cache) then
`cache on`. For each page: the first request after the login, then `--runs` repeats
(median, min, max); with the cache on also the first request after a new case entry dated
today (another month than the one shown) and after one dated in the month shown, each
`--settle` seconds (default 30) after the pages before it (the warmer's time to read the
cases of what the pages filed; with 0 those results are computed again).

The generated year's cases are all closed, so its warnings page would list none. With
`--open-cases N` (default 3000) N open cases are added first, as the towns and villages
would write them (signed by their keys, chained after their logs' heads, ingested at the
city as a sync does): received 10-40 working days before today at a town (60 %) or one of
its villages (forwarded, taken and accepted by the town), of the items with a promise of
5 days or more, none completed — so hundreds are red or yellow. `--work DIR` copies the
city there first (the city at `--dir` stays as built); a city holding them already is
left as it is. With the cache on, the findings page for `--period` (reconcile, computed
on a thread: the page reloads itself until it is ready) is timed until it shows the
findings, polling as its meta refresh does, then again.

    .venv/bin/python bench/desk.py [--scale 1.0] [--dir DIR] [--keep] [--runs 5]
                                   [--period 2025-12] [--settle 30] [--tree DIR]
                                   [--open-cases 3000] [--work DIR] [--no-browser]

`--tree DIR` serves the code in DIR instead of this checkout (e.g. this tree with the
charts helper's overview.py, which also draws the 12-month trend: 12 more months).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import date, datetime, timedelta
from html import unescape
from io import StringIO
from pathlib import Path

import httpx
import tomli_w
from _common import ROOT, ZHIBAO, figure, note, print_machine
from stats import CITY, TOWNS, VILLAGES, YEAR, Year, build_year, sync_up

from sync.clock import ZONE
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.node import open_home
from tiers.published import work_calendar

USER, PASSWORD = "bench", "a bench password"
CITY_ITEM = "330782-JT-001"  # accepted at the city too (tiers/data/catalogue.csv)
ASSET = re.compile(r'(?:href|src)="(/desk/static/[^"]+)"')
CSV_LINK = re.compile(r'href="(/desk/warnings\?[^"]*format=csv[^"]*)"')
REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')
COUNT = re.compile(r"<p>([\d,]+) 件")  # desk.warnings.count in Chinese (the default)


def build_city(scale: float, base: Path) -> Path:
    """bench/stats.py's year, ingested at the city as weekly syncs deliver it."""
    city_home = base / "city"
    build_year(scale, city_home)
    return city_home


def open_cases_held(home: Path) -> int:
    """Cases received at the towns and villages after the generated year, still open."""
    with open_home(home) as node:
        return int(node.store.query(
            "SELECT count(*) FROM cases WHERE received_at >= ? AND origin != ?"
            " AND status NOT IN ('completed', 'delivered', 'rated', 'closed')",
            (f"{YEAR + 1}-02-01", CITY))[0][0])  # fmt: skip


def add_open_cases(home: Path, count: int, seed: int = 14) -> int:
    """`count` open cases at the towns and villages, written in their logs (after the heads
    the city holds, signed by their keys: bench/stats.py's `Year`) and ingested at the
    city as one sync would bring them; returns the entries applied."""
    year, rng = Year(1.0, seed=seed), random.Random(seed)
    now = datetime.now(ZONE)
    with open_home(home) as city:
        for node_id, log in year.logs.items():
            log.seq, log.prev = city.store.head(node_id)
            assert log.seq > 0, node_id
        cal = work_calendar(city.store)
    today, workdays = now.date(), list[date]()
    day = today
    while len(workdays) < 41:  # the last 40 working days before today
        day -= timedelta(days=1)
        if cal.is_workday(day):
            workdays.append(day)
    town_items = [i for i in year.town_items if i.promised_days >= 5]
    village_items = [i for i in year.village_items if i.promised_days >= 5]
    for _ in range(count):
        town = rng.choice(TOWNS)
        received = workdays[rng.randint(10, 40) - 1]
        t0 = year._at(received, 8, 30) + timedelta(minutes=rng.randrange(480))
        if rng.random() < 0.6:
            item = rng.choice(town_items)
            steps = [(t0, town, "case.received", year._applicant(item)["case"]),
                     (t0 + timedelta(minutes=2), town, "case.accepted",
                      {"promised_days": item.promised_days})]  # fmt: skip
            year._start(year._case_id(town, received), steps)
            continue
        village, item = rng.choice(VILLAGES[town]), rng.choice(village_items)
        taken = year._at(cal.add_workdays(received, 1)[0], 9, rng.randrange(50))
        steps = [(t0, village, "case.received", year._applicant(item)["case"]),
                 (t0 + timedelta(minutes=10), village, "case.forwarded", {"to": town}),
                 (taken, town, "case.taken", {}),
                 (taken + timedelta(minutes=1), town, "case.accepted",
                  {"promised_days": item.promised_days})]  # fmt: skip
        year._start(year._case_id(village, received), steps)
    year.run_until(now)
    assert not year.heap
    return sync_up(year, home, now)[0]


def warning_counts(home: Path) -> dict[str, int]:
    """Red and yellow cases today, as `zhibao case list --warning` counts them."""
    counts = {}
    for colour in ("red", "yellow"):
        argv = [str(ZHIBAO), "case", "list", "--warning", colour, "--json", "--home", str(home)]
        listed = json.loads(subprocess.run(argv, capture_output=True, text=True,
                                           check=True).stdout)  # fmt: skip
        rows = listed["cases"] if isinstance(listed, dict) else listed
        counts[colour] = len(rows)
    return counts


def entries_held(home: Path) -> int:
    with open_home(home) as node:
        return int(node.store.query("SELECT count(*) FROM entries")[0][0])


def set_cache(home: Path, on: bool) -> None:
    path = home / "node.toml"
    config = tomllib.loads(path.read_text("utf-8"))
    config.setdefault("settings", {})["desk_figures_cache"] = on
    path.write_text(tomli_w.dumps(config), "utf-8")


def add_user(home: Path) -> None:
    listed = subprocess.run([str(ZHIBAO), "user", "list", "--json", "--home", str(home)],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    if f'"{USER}"' not in listed:
        argv = [str(ZHIBAO), "user", "add", USER, "--role", "admin", "--home", str(home)]
        subprocess.run(argv, input=PASSWORD + "\n", text=True, check=True, capture_output=True)


class Serve:
    """`zhibao serve` on port 0 running the code in `tree`."""

    def __init__(self, home: Path, tree: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(tree))
        env.pop("ZHIBAO_HOME", None)
        argv = [sys.executable, "-m", "cli.main", "serve", "--home", str(home), "--port", "0",
                "--interval", "86400"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=tree)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"zhibao serve did not start: {line!r}")
        self.url = line.strip().split()[-1]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/v1/health", timeout=2.0)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("zhibao serve is not answering")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def login(web: httpx.Client) -> float:
    began = time.perf_counter()
    page = web.get("/desk/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    answer = web.post("/desk/login", data={"csrf": found[1], "name": USER, "password": PASSWORD})
    assert answer.status_code == 303, answer.status_code
    return time.perf_counter() - began


def load(web: httpx.Client, path: str) -> tuple[float, float, int]:
    """(time to first byte, time to the page and its assets, bytes) for one page."""
    began = time.perf_counter()
    with web.stream("GET", path) as answer:
        first = time.perf_counter() - began
        body = answer.read()
    assert answer.status_code == 200, (path, answer.status_code)
    size = len(body)
    for asset in dict.fromkeys(ASSET.findall(body.decode("utf-8", "replace"))):
        size += len(web.get(asset).content)
    return first, time.perf_counter() - began, size


def measure(label: str, web: httpx.Client, pages: dict[str, str], runs: int) -> None:
    for name, path in pages.items():
        ttfb, loaded, size = load(web, path)
        figure(f"{label} {name} first: time to first byte", ttfb, "s")
        figure(f"{label} {name} first: loaded (HTML + assets)", loaded, "s")
        repeats = [load(web, path) for _ in range(runs)]
        for what, index in (("time to first byte", 0), ("loaded (HTML + assets)", 1)):
            values = [r[index] for r in repeats]
            figure(f"{label} {name} repeated: {what} median (min-max) of {runs}",
                   f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})",
                   "s")  # fmt: skip
        figure(f"{label} {name} bytes (HTML + assets)", size)
        note(f"load average (1 min) after {label} {name}: {os.getloadavg()[0]:.2f}")


def until_shown(web: httpx.Client, path: str, limit: float = 900.0) -> tuple[float, int]:
    """(seconds until `path` answers without a meta refresh, requests): reloading as the
    page's own meta refresh does (a browser's wait, then the page again)."""
    began, asked = time.perf_counter(), 0
    while True:
        answer = web.get(path)
        asked += 1
        refresh = REFRESH.search(answer.text)
        if refresh is None:
            assert answer.status_code == 200, (path, answer.status_code)
            return time.perf_counter() - began, asked
        if time.perf_counter() - began > limit:
            raise RuntimeError(f"{path} still reloading after {limit} s")
        time.sleep(int(refresh[1]))


WATCH = """(() => {  // from navigation start, each frame: are the charts drawn yet?
  function look() {
    const all = Array.from(document.querySelectorAll("canvas"));
    if (all.length > 0 && typeof Chart !== "undefined" && all.every(
        c => c.width > 0 && c.height > 0 && Chart.getChart(c) !== undefined)) {
      window.benchDrawn = performance.now();
    } else {
      requestAnimationFrame(look);
    }
  }
  requestAnimationFrame(look);
})();"""
TIMING = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  return [n.responseStart - n.startTime, n.loadEventEnd - n.startTime];
}"""


def in_browser(label: str, url: str, pages: dict[str, str], runs: int) -> None:
    """Each page in headless chromium (Playwright, Debian's binary), logged in through the
    form: time to first byte and to `load` (the page's Navigation Timing), and on a page
    with charts the time every canvas is drawn (a Chart.js chart of non-zero size; not
    animated), looked at each animation frame by a script Playwright adds to the page, on
    the same clock (from the navigation's start). First visit (nothing cached), then
    `runs` more."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        note("no chromium: browser figures not measured")
        return
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.add_init_script(WATCH)  # Playwright's scripts are not subject to the CSP
            page = context.new_page()
            page.goto(url + "/desk/login")
            page.fill('input[name="name"]', USER)
            page.fill('input[name="password"]', PASSWORD)
            with page.expect_navigation():
                page.click('form[action="/desk/login"] button[type="submit"]')
            for name, path in pages.items():
                seen: list[tuple[float, float, float | None]] = []
                for _ in range(runs + 1):
                    answer = page.goto(url + path, wait_until="load", timeout=300_000)
                    assert answer is not None and answer.status == 200, (path, answer)
                    drawn = None
                    if page.locator("canvas").count():
                        seen_at = page.wait_for_function("() => window.benchDrawn", timeout=60_000)
                        drawn = float(seen_at.json_value()) / 1000
                    ttfb, load_event = page.evaluate(TIMING)
                    seen.append((ttfb / 1000, load_event / 1000, drawn))
                ttfb, loaded, drawn = seen[0]
                what = f"{label} browser {name}"
                figure(f"{what} first: time to first byte", ttfb, "s")
                figure(f"{what} first: load event", loaded, "s")
                if drawn is not None:
                    figure(f"{what} first: charts drawn ({page.locator('canvas').count()})",
                           drawn, "s")  # fmt: skip
                for index, part in ((0, "time to first byte"), (1, "load event"),
                                    (2, "charts drawn")):  # fmt: skip
                    values = [v for r in seen[1:] if (v := r[index]) is not None]
                    if values:
                        figure(f"{what} repeated: {part} median (min-max) of {len(values)}",
                               f"{statistics.median(values):.3f} ({min(values):.3f}-"
                               f"{max(values):.3f})", "s")  # fmt: skip
            context.close()
        finally:
            browser.close()


def new_case(home: Path, at: str | None) -> str:
    """A case received and accepted at the city (a new entry, as any sync brings)."""
    with open_home(home) as node:
        return service.accept(node, item_code=CITY_ITEM, applicant=Applicant("王秀英",
                              phone="13805790001"), at=at)  # fmt: skip


def run(args: argparse.Namespace, home: Path, tree: Path) -> None:
    period, town = args.period, TOWNS[0]
    pages = {"overview (this month)": "/desk/", "overview": f"/desk/?period={period}",
             "warnings": "/desk/warnings"}  # fmt: skip
    more = {
        "warnings yellow": "/desk/warnings?warning=yellow",
        f"warnings of town {town}": f"/desk/warnings?node={town}",
        "network": "/desk/network",
    }
    shown = {
        "overview (this month)": "/desk/",
        "overview": f"/desk/?period={period}",
        "warnings": "/desk/warnings",
        f"warnings of town {town}": f"/desk/warnings?node={town}",
    }
    for on in (False, True):
        label = "cache on" if on else "cache off"
        set_cache(home, on)
        server = Serve(home, tree)
        try:
            with httpx.Client(base_url=server.url, timeout=300) as web:
                figure(f"{label} login (Argon2id)", login(web), "s")
                measure(label, web, pages, args.runs)
                if not on:
                    if not args.no_browser:  # every page computes its figures: no 2025-12
                        in_browser(label, server.url, {k: shown[k] for k in (
                            "overview (this month)", "warnings")}, args.runs)  # fmt: skip
                    continue
                link = CSV_LINK.search(web.get("/desk/warnings").text)
                assert link is not None, "no CSV link on the warnings page"
                more["warnings CSV (every red case)"] = unescape(link[1])
                measure(label, web, more, args.runs)
                for name, path in (
                    ("red", "/desk/warnings"),
                    ("yellow", more["warnings yellow"]),
                    (f"red of town {town}", more[f"warnings of town {town}"]),
                ):
                    found = COUNT.search(web.get(path).text)
                    figure(f"warnings page says: {name}", found[1] if found else "none")
                text = web.get(more["warnings CSV (every red case)"]).text.lstrip("\ufeff")
                figure(
                    "warnings CSV rows (every red case)", len(list(csv.reader(StringIO(text)))) - 1
                )
                findings = f"/desk/findings?period={period}"
                seconds, asked = until_shown(web, findings)
                figure(f"{label} findings {period} first: until shown (polled as its "
                       f"meta refresh, {asked} requests)", seconds, "s")  # fmt: skip
                shown_again = [load(web, findings) for _ in range(args.runs)]
                figure(f"{label} findings {period} repeated: time to first byte median",
                       statistics.median(r[0] for r in shown_again), "s")  # fmt: skip
                figure(f"{label} findings {period} repeated: loaded median",
                       statistics.median(r[1] for r in shown_again), "s")  # fmt: skip
                if not args.no_browser:
                    in_browser(label, server.url, shown, args.runs)
                note(f"load average (1 min) after the browser: {os.getloadavg()[0]:.2f}")
                for when, at in (("today", None), (f"in {period}", f"{period}-15T10:00:00+08:00")):
                    time.sleep(args.settle)  # the warmer reads the cases of what pages filed
                    new_case(home, at)
                    ttfb, loaded, _ = load(web, pages["overview"])
                    figure(f"{label} overview first after a new case {when}: time to first byte",
                           ttfb, "s")  # fmt: skip
                    figure(f"{label} overview first after a new case {when}: loaded", loaded, "s")
                    again = [load(web, pages["overview"])[0] for _ in range(args.runs)]
                    figure(f"{label} overview repeated after it: time to first byte median",
                           statistics.median(again), "s")  # fmt: skip
        finally:
            server.stop()
    set_cache(home, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = ≥1M entries")
    parser.add_argument("--dir", type=Path, default=None, help="keep (or reuse) the city here")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--period", default=f"{YEAR}-12", help="the month the overview shows")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds between the pages and each new case (the warmer's time)",
    )
    parser.add_argument("--tree", type=Path, default=ROOT, help="the code `serve` runs")
    parser.add_argument(
        "--open-cases", type=int, default=3000, help="open cases added to the city (0: none)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="copy the city here first and add the open cases to the copy",
    )
    parser.add_argument("--no-browser", action="store_true", help="httpx figures only")
    args = parser.parse_args()
    print_machine()
    note(
        f"served code: {args.tree}; pages fetched with httpx (HTML + its CSS/JS)"
        + ("" if args.no_browser else " and in headless chromium (Playwright)")
    )
    base = args.dir or Path(tempfile.mkdtemp(prefix="zhibao-bench-desk-"))
    home = base / "city"
    if (home / "node.db").exists():
        note(f"reusing the city at {home}")
    else:
        began = time.perf_counter()
        build_city(args.scale, base)
        figure("build the city (generate + sign + ingest)", time.perf_counter() - began, "s")
    if args.work is not None:
        copy = args.work / "city"
        if not (copy / "node.db").exists():
            began = time.perf_counter()
            copy.mkdir(parents=True)
            for name in ("node.db", "node.db-wal", "node.key", "seal.key", "node.toml"):
                if (home / name).exists():  # no server may hold the city meanwhile
                    shutil.copy2(home / name, copy / name)
            figure(f"copy the city to {copy}", time.perf_counter() - began, "s")
        home = copy
    if args.open_cases and not open_cases_held(home):
        began = time.perf_counter()
        applied = add_open_cases(home, args.open_cases)
        figure(f"add {args.open_cases} open cases ({applied} entries, signed + ingested)",
               time.perf_counter() - began, "s")  # fmt: skip
    figure("open cases of the towns and villages", open_cases_held(home))
    figure("entries at the city", entries_held(home))
    add_user(home)
    figure(
        "red / yellow cases today (zhibao case list --warning)",
        " / ".join(str(v) for v in warning_counts(home).values()),
    )
    note(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
    try:
        run(args, home, args.tree)
        note(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base)
        else:
            note(f"city home kept at {home}")


if __name__ == "__main__":
    main()
