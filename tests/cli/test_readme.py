"""The README's first ten minutes, run as written: every command of its town example, in
order, from the project's folder, against real homes and a real `zhibao serve`.

Only what the reader fills in is filled in: `~/zb` becomes a temporary folder, the city's
fixed port the one its server got, and each `<...>` what the command before printed (the
keys `node show` prints, the case id `case accept` prints)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from contextlib import ExitStack
from pathlib import Path

from tests.support.servers import ZHIBAO, cli_env, zhibao_serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## First ten minutes"


def section() -> str:
    text = README.read_text("utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else None]


def blocks(text: str) -> list[list[str]]:
    """The lines of each fenced block, comments and blank lines dropped."""
    found = re.findall(r"^```\n(.*?)^```$", text, flags=re.S | re.M)
    return [[line for line in block.splitlines() if shlex.split(line, comments=True)]
            for block in found]  # fmt: skip


def split(line: str) -> tuple[dict[str, str], list[str]]:
    """A line as (variables set before it, the words of `zhibao …`)."""
    words = shlex.split(line, comments=True)
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "zhibao", line
    return env, words


def test_readme_names_the_two_commands_and_a_way_to_run_zhibao() -> None:
    text = README.read_text("utf-8")
    assert "scripts/demo     #" in text and "scripts/test     #" in text
    first, *_ = blocks(section())
    assert first == ['export PATH="$PWD/.venv/bin:$PATH"']  # where scripts/_venv.sh installs
    assert '"$root/.venv/bin/zhibao"' in (ROOT / "scripts" / "zhibao").read_text()
    assert "`scripts/zhibao`" in section()
    assert os.access(ROOT / "scripts" / "zhibao", os.X_OK)
    assert os.access(ROOT / "scripts" / "demo", os.X_OK)


def test_readme_town_example_runs_as_written(tmp_path: Path) -> None:
    _, setup, next_steps = blocks(section())
    base = tmp_path / "zb"
    filled: dict[str, str] = {}
    printed: dict[str, str] = {}

    def run(line: str) -> str:
        line = line.replace("~/zb", str(base))
        for placeholder, value in filled.items():
            line = line.replace(placeholder, value)
        assert "<" not in line, line  # every blank filled
        env, words = split(line)
        done = subprocess.run(
            [ZHIBAO, *words[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120,
            env=cli_env(env.get("ZHIBAO_LANG", "en")), check=False,
        )  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        return done.stdout

    def show(home: str) -> dict[str, str]:
        out: dict[str, str] = json.loads(run(f"zhibao --home {home} node show --json"))
        return out

    with ExitStack() as stack:
        for line in setup:
            _, words = split(line)
            home = words[2]
            if "serve" in words:  # the reader's second terminal: a real server, on port 0
                served = stack.enter_context(zhibao_serve(Path(home.replace("~/zb", str(base)))))
                filled["http://127.0.0.1:8750"] = served.url
                continue
            if "init" in words and "town" in words:
                filled["<city public key>"] = show("~/zb/city")["public_key"]
            if "enroll" in words:
                town = show("~/zb/town")
                filled["<town public key>"], filled["<town seal key>"] = (
                    town["public_key"], town["seal_key"]
                )  # fmt: skip
            said = " ".join(words[3:5])
            printed[said] = printed.get(said, "") + run(line)
        assert "--root-key" in printed["node show"]  # the city's hint …
        assert "zhibao node enroll --node-id 330782001" in printed["node show"]  # … the town's
        assert "entries down" in printed["sync"]
        for line in next_steps:
            _, words = split(line)
            out = run(line)
            if words[3:5] == ["case", "accept"]:
                filled["<case id>"] = out.strip()
            if words[3:5] == ["case", "show"]:
                assert filled["<case id>"] in out and "张三" in out
            if words[3:] == ["case", "list"]:  # (whether it is yellow yet depends on the day)
                assert filled["<case id>"] in out
    assert show("~/zb/city")["node_id"] == "330782"
    counts = json.loads(run("zhibao --home ~/zb/city stats --json"))
    assert counts["total"]["accepted"] == 1  # the town's case reached the city
