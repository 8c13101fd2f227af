"""`zhibao demo` builds a whole city on loopback and every node's log verifies; it ends by
saying how to serve the city's desk and a login that works there."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_desk import client, login
from tests.support.servers import ZHIBAO, zhibao_serve


@pytest.mark.slow
def test_demo_runs_a_whole_city(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path / "city"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ZHIBAO_LANG": "en"},
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout[run.stdout.index("{\n") :])
    assert summary["problems"] == 0
    assert set(summary["entries"]) == {
        "330782",
        "330782001",
        "330782002",
        "330782001201",
        "330782001202",
        "330782002201",
    }
    assert summary["statuses"]["delivered"] >= 3  # the three villages' forwarded cases
    assert {"rejected", "withdrawn", "completed"} <= set(summary["statuses"])
    assert "USB stick" in run.stdout
    # every centre reported, and the reports reconcile; whether the city still has to publish
    # a calendar year (calendar_missing) depends on the day the demo runs, not on the demo
    assert [f for f in summary["findings"] if f["kind"] != "calendar_missing"] == []
    assert summary["stats"]["accepted"] == 21 and summary["stats"]["rated"] == 11
    # the village's two scans were opened at the city, the city's licence printed at the
    # village: each byte for byte what the other side attached, over the cutting line
    opened = tmp_path / "city" / "opened-at-city"
    printed = tmp_path / "city" / "printed-at-village"
    assert sorted(p.name for p in opened.iterdir()) == ["卫生检测报告.pdf", "申请表.jpg"]
    assert [p.name for p in printed.iterdir()] == ["公共场所卫生许可证.pdf"]
    village = tmp_path / "city" / "330782001202"
    case_id = next(c for c in summary["forwarded"] if c.startswith("330782001202"))
    listed = subprocess.run(
        [sys.executable, "-m", "cli.main", "case", "materials", case_id, "--home", str(village),
         "--json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    held = {m["file"]: m for m in json.loads(listed.stdout)}
    assert {m["state"] for m in held.values()} == {"here"}
    for path in [*opened.iterdir(), *printed.iterdir()]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == held[path.name]["sha256"]
    assert summary["home"] == str(tmp_path / "city")
    desk = summary["desk"]
    assert desk["name"] == "demo" and len(desk["password"]) >= 12
    assert desk["url"] == "http://127.0.0.1:8750/desk/" and desk["node_id"] == "330782"


Built = tuple[subprocess.CompletedProcess[str], Path]  # a demo's run, and the folder it built


def _demo_env() -> dict[str, str]:
    return {"PATH": f"{Path(ZHIBAO).parent}:/usr/bin:/bin", "ZHIBAO_LANG": "en"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`zhibao demo` run once in an empty folder (no --home), and that folder: each test
    works in its own copy (a demo run costs tens of seconds; the next two tests read it)."""
    where = tmp_path_factory.mktemp("demo")
    run = subprocess.run(
        [ZHIBAO, "demo"], capture_output=True, text=True, timeout=300, check=False, cwd=where,
        env=_demo_env(),
    )  # fmt: skip
    return run, where / "zhibao-demo"


def _demo_in(tmp_path: Path, built: Built) -> str:
    """The demo's output, its folder copied to `tmp_path/zhibao-demo` (as if run there)."""
    run, folder = built
    assert run.returncode == 0, run.stderr
    shutil.copytree(folder, tmp_path / "zhibao-demo")
    return run.stdout


@pytest.mark.slow
def test_demo_keeps_its_city_in_a_folder_and_says_how_to_explore_it(
    tmp_path: Path, built: Built
) -> None:
    """Without --home the demo builds ./zhibao-demo where it is run, ends with its tables
    (headed) and three commands that work as printed; run again, it rebuilds that folder."""
    env = _demo_env()
    lines = _demo_in(tmp_path, built).splitlines()
    assert (tmp_path / "zhibao-demo" / "city" / "node.db").exists()
    heads = [
        n
        for n, line in enumerate(lines)
        if line.split() in (["node", "name", "entries"], ["status", "cases"])
    ]
    assert len(heads) == 2 and all(set(lines[n + 1]) == {"-", " "} for n in heads)
    assert lines[heads[0] + 2].split() == ["330782", "义乌市行政服务中心", "21"]
    assert lines[-8] == "The city is kept in zhibao-demo. Explore it:"
    commands = [shlex.split(line) for line in lines[-7:-4]]
    assert [c[:3] for c in commands] == [["zhibao", "--home", "zhibao-demo/330782001"],
                                         ["zhibao", "--home", "zhibao-demo/city"],
                                         ["zhibao", "--home", "zhibao-demo/city"]]  # fmt: skip
    said = []
    for command in commands:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
        said.append(done.stdout)
    assert said[0].count("330782001-20251009-") == 10  # the town's day at the window
    assert commands[1][-1] in said[1] and "330782001202" in said[1]  # decided at the city
    assert "2025-10" in said[2] and "330782001" in said[2]
    again = subprocess.run(
        [ZHIBAO, "demo"], capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        "zhibao-demo holds the city an earlier demo built: building it again from scratch."
    )
    assert again.stdout.splitlines()[-7:-4] == lines[-7:-4]
    assert again.stdout.splitlines()[-1] != lines[-1]  # a password of its own each time


@pytest.mark.slow
def test_demo_prints_a_desk_login_that_works(tmp_path: Path, built: Built) -> None:
    """The demo's last lines: how to serve the city (a command that works as printed, here on
    a free port) and a login (name, password) that opens the city's desk; the demo's own
    servers are gone by then (the printed port is free for `serve`)."""
    env = _demo_env()
    said, serve, login_line = _demo_in(tmp_path, built).splitlines()[-3:]
    assert said == "To see the city's desk in a browser, serve the city:"
    assert shlex.split(serve) == ["zhibao", "--home", "zhibao-demo/city", "serve"]
    found = re.fullmatch(
        r"then open (http://127\.0\.0\.1:8750/desk/) and log in as (\S+) with the password "
        r"(\S+) \(an admin of this demo city only\)\.",
        login_line,
    )
    assert found, login_line
    url, name, password = found.groups()
    home = tmp_path / "zhibao-demo" / "city"
    with zhibao_serve(home) as served, client(served.url) as web:
        assert login(web, name, "not " + password).status_code == 401
        assert login(web, name, password).status_code == 303
        page = web.get(url.removeprefix("http://127.0.0.1:8750"))
        assert page.status_code == 200 and "demo" in page.text
        assert web.get("/desk/access").status_code == 200  # an admin
        assert web.get("/desk/warnings").status_code == 200
    chinese = subprocess.run(
        [ZHIBAO, "demo"], capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        env=env | {"ZHIBAO_LANG": "zh"},
    )  # fmt: skip
    assert chinese.returncode == 0, chinese.stderr
    assert chinese.stdout.splitlines()[-1].startswith(
        "然后打开 http://127.0.0.1:8750/desk/，用户名 demo"
    )


def test_demo_refuses_a_directory_that_is_not_a_demo_city(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
