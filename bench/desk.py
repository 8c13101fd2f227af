"""The desk at city scale (issue #14): time to first byte and to a loaded page (the HTML,
then every style sheet and script it names, fetched with httpx one after another — not a
browser: no rendering, no chart drawing) for the overview and the warnings page, served by
a real `zhibao serve` subprocess to a real desk user logged in with their password.

The city is bench/stats.py's generated year (≥ 1,000,000 entries at `--scale 1.0`, ~15-25
min to build on this VM; `--dir DIR` keeps it and a later run with the same `--dir` reuses
it). Each configuration gets a fresh `zhibao serve`: `cache off` (node.toml
`desk_figures_cache = false`: every page computes its figures, as before the cache) then
`cache on`. For each page: the first request after the login, then `--runs` repeats
(median, min, max); with the cache on also the first request after a new case entry dated
today (another month than the one shown) and after one dated in the month shown, each
`--settle` seconds (default 30) after the pages before it (the warmer's time to read the
cases of what the pages filed; with 0 those results are computed again).

    .venv/bin/python bench/desk.py [--scale 1.0] [--dir DIR] [--keep] [--runs 5]
                                   [--period 2025-12] [--settle 30] [--tree DIR]

`--tree DIR` serves the code in DIR instead of this checkout (e.g. this tree with the
charts helper's overview.py, which also draws the 12-month trend: 12 more months).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import tomli_w
from _common import ROOT, ZHIBAO, figure, note, print_machine
from stats import YEAR, Year, enrol_all, sync_up

from sync.clock import ZONE
from tiers.cases import service
from tiers.cases.service import Applicant
from tiers.node import open_home

USER, PASSWORD = "bench", "a bench password"
CITY_ITEM = "330782-JT-001"  # accepted at the city too (tiers/data/catalogue.csv)
ASSET = re.compile(r'(?:href|src)="(/desk/static/[^"]+)"')


def build_city(scale: float, base: Path) -> Path:
    """bench/stats.py's year, ingested at the city as weekly syncs deliver it."""
    city_home = base / "city"
    year = Year(scale)
    end = datetime(YEAR + 1, 1, 20, tzinfo=ZONE)
    enrol_all(year, city_home, end)
    day, entries = date(YEAR, 1, 1), 0
    while day < end.date():
        if day.day == 3 and (day.year, day.month) > (YEAR, 1):
            previous = day.replace(day=1) - timedelta(days=1)
            year.run_until(year._at(day, 8, 0))
            year.report(f"{previous:%Y-%m}", day)
        if day.year == YEAR and year.cal.is_workday(day):
            year.open_day(day)
        year.run_until(year._at(day + timedelta(days=1), 0, 0))
        if day.weekday() == 6:
            entries += sync_up(year, city_home, year._at(day, 22, 0))[0]
        day += timedelta(days=1)
    year.run_until(end)
    entries += sync_up(year, city_home, end - timedelta(hours=1))[0]
    return city_home


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


def new_case(home: Path, at: str | None) -> str:
    """A case received and accepted at the city (a new entry, as any sync brings)."""
    with open_home(home) as node:
        return service.accept(node, item_code=CITY_ITEM, applicant=Applicant("王秀英",
                              phone="13805790001"), at=at)  # fmt: skip


def run(args: argparse.Namespace, home: Path, tree: Path) -> None:
    period = args.period
    pages = {"overview (this month)": "/desk/", "overview": f"/desk/?period={period}",
             "warnings": "/desk/warnings"}  # fmt: skip
    for on in (False, True):
        label = "cache on" if on else "cache off"
        set_cache(home, on)
        server = Serve(home, tree)
        try:
            with httpx.Client(base_url=server.url, timeout=300) as web:
                figure(f"{label} login (Argon2id)", login(web), "s")
                measure(label, web, pages, args.runs)
                if not on:
                    continue
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
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds between the pages and each new case (the warmer's time)")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the code `serve` runs")
    args = parser.parse_args()
    print_machine()
    note(f"served code: {args.tree}; pages fetched with httpx (HTML + its CSS/JS), no browser")
    base = args.dir or Path(tempfile.mkdtemp(prefix="zhibao-bench-desk-"))
    home = base / "city"
    if (home / "node.db").exists():
        note(f"reusing the city at {home}")
    else:
        began = time.perf_counter()
        build_city(args.scale, base)
        figure("build the city (generate + sign + ingest)", time.perf_counter() - began, "s")
    figure("entries at the city", entries_held(home))
    add_user(home)
    try:
        run(args, home, args.tree)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base)
        else:
            note(f"city home kept at {home}")


if __name__ == "__main__":
    main()
