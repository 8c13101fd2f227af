"""`log verify` (#13): progress on standard error only, words in both languages, counts."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.log import LONG_RUN, ProgressLine, progress_line
from sync.node import init_node
from sync.protocol import i18n
from sync.protocol.canonical import canonical
from sync.protocol.entry import entry_hash, signing_message
from sync.protocol.keys import Signer
from tests.support.servers import ZHIBAO, cli_env, zhibao

TOWN = "330782001"


@pytest.fixture
def locale() -> Iterator[None]:
    yield
    i18n.use_locale(None)


def _town(base: Path, entries: int) -> Path:
    """A town whose own key is enrolled in its store and whose log holds `entries` notes."""
    home = base / "town"
    root = Signer.generate().public.hex()
    node = init_node(
        home, tier="town", node_id=TOWN, name="稠城", parent_id="330782", root_key=root
    )
    with node:
        node.store.execute(
            "INSERT INTO nodes (node_id, tier, name, parent_id, public_key) VALUES (?,?,?,?,?)",
            (TOWN, "town", "稠城", "330782", node.signer.public),
        )
        for n in range(1, entries + 1):
            node.append("test.note", {"n": n}, at="2025-10-09T10:00:00+08:00")
    return home


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_elsewhere_is_silent_for_a_short_run_then_a_line_every_interval() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(out, terminal=False, quiet_for=LONG_RUN, every=LONG_RUN, clock=clock)
    for done in range(1, 10):
        clock.now += 1
        line(done * 1000, 100_000)
    assert out.getvalue() == ""  # 9 s: a short run says nothing
    clock.now += 1
    line(10_000, 100_000)
    clock.now += 5
    line(15_000, 100_000)  # 5 s after the last line: not yet
    clock.now += 5
    line(20_000, 100_000)
    clock.now += 1
    line(100_000, 100_000)  # the end is always said
    line.close()
    assert out.getvalue().splitlines() == [
        "Verifying: 10,000 of 100,000 entries (10 %), 1,000 entries/s, about 90 s left",
        "Verifying: 20,000 of 100,000 entries (20 %), 1,000 entries/s, about 80 s left",
        "Verifying: 100,000 of 100,000 entries (100 %), 4,762 entries/s, about 0 s left",
    ]


def test_progress_on_a_terminal_skips_a_glimpse() -> None:
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(out, terminal=True, quiet_for=0.5, every=0.2, clock=clock)
    line(4096, 8192)
    clock.now += 0.4
    line(8192, 8192)  # done within half a second: nothing was drawn, nothing to wipe
    line.close()
    assert out.getvalue() == ""


def test_progress_on_a_terminal_is_one_line_redrawn_and_wiped(locale: None) -> None:
    i18n.use_locale("zh")
    clock, out = Clock(), io.StringIO()
    line = ProgressLine(out, terminal=True, quiet_for=0.0, every=0.2, clock=clock)
    line(4096, 8192)
    clock.now += 0.1
    line(6000, 8192)  # too soon for a redraw
    clock.now += 1.9
    line(8192, 8192)
    line.close()
    assert out.getvalue() == (
        "\r\x1b[K核验中：4,096/8,192 条条目（50%）"
        "\r\x1b[K核验中：8,192/8,192 条条目（100%），每秒 4,096 条，约剩 0 秒"
        "\r\x1b[K"
    )


def test_progress_mode_follows_the_stream_and_the_option() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_line(False, Terminal()) is None
    shown = progress_line(None, Terminal())
    assert shown is not None and shown.terminal and shown.quiet_for > 0
    piped = progress_line(None, io.StringIO())
    assert piped is not None and not piped.terminal and piped.quiet_for == LONG_RUN
    forced = progress_line(True, io.StringIO())
    assert forced is not None and forced.quiet_for == 0


def test_log_verify_progress_goes_to_stderr_never_to_stdout(tmp_path: Path) -> None:
    home = _town(tmp_path, entries=40)
    run = zhibao(home, "log", "verify", "--json", "--progress", "--workers", "2")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)  # nothing but the report on stdout
    assert set(report) >= {"ok", "origins", "entries", "problems"}
    assert report["ok"] is True and report["entries"] == 40
    assert run.stderr.splitlines()[-1].startswith("Verifying: 40 of 40 entries (100 %)")
    quiet = zhibao(home, "log", "verify", "--json")  # a pipe, a short run: no progress
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout) == report
    never = zhibao(home, "log", "verify", "--no-progress")
    assert never.stderr == ""
    assert never.stdout == "OK: 40 entries from 1 origin verified.\n"


def test_log_verify_on_a_terminal_draws_and_wipes_its_line(tmp_path: Path) -> None:
    """stderr on a real pseudo-terminal, stdout a pipe: the line is on the terminal only."""
    home = _town(tmp_path, entries=3)
    leader, follower = os.openpty()
    try:
        run = subprocess.run(
            [ZHIBAO, "log", "verify", "--progress", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=cli_env("zh"),
            text=True,
            timeout=120,
            check=False,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert run.returncode == 0
    assert run.stdout == "通过：已核验 1 个来源的 3 条条目。\n"
    text = drawn.decode()
    assert text.startswith("\r\x1b[K核验中：") and text.endswith("\r\x1b[K")
    assert "3/3 条条目（100%）" in text


def test_log_verify_counts_in_words_for_one_and_many(tmp_path: Path) -> None:
    home = _town(tmp_path, entries=1)
    assert zhibao(home, "log", "verify").stdout == "OK: 1 entry from 1 origin verified.\n"
    _tamper(home, "DELETE FROM entries WHERE seq = 1")
    run = zhibao(home, "log", "verify")
    assert run.returncode == 1
    assert run.stdout.splitlines()[0] == "1 problem in 0 entries:"
    zh = zhibao(home, "log", "verify", lang="zh")
    assert zh.stdout.splitlines()[0] == "0 条条目中发现 1 个问题："


def _tamper(home: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(home / "node.db")
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("DROP TRIGGER entries_no_delete")
    for sql in statements:
        conn.execute(sql, params if "?" in sql else ())
    conn.commit()
    conn.close()


def test_log_verify_shows_what_an_entry_says_terminal_safe(tmp_path: Path) -> None:
    """An entry whose version field is text with ESC and a bidi override, signed with the
    node's real key: the problem names it, escaped, and exits 1."""
    home = _town(tmp_path, entries=2)
    signer = Signer(bytes.fromhex((home / "node.key").read_text().strip()))
    conn = sqlite3.connect(home / "node.db")
    prev = conn.execute("SELECT hash FROM entries WHERE seq = 2").fetchone()[0]
    raw = canonical(
        {
            "v": "\x1b[2J\u202eevil",
            "origin": TOWN,
            "seq": 3,
            "prev": prev.hex(),
            "at": "2025-10-09T10:00:00+08:00",
            "type": "test.note",
            "body": {"n": 3},
        }
    )
    digest = entry_hash(raw)
    conn.execute(
        "INSERT INTO entries (origin, seq, hash, sig, raw, type, received_at) "
        "VALUES (?, 3, ?, ?, ?, 'test.note', '2025-10-09T10:00:00+08:00')",
        (TOWN, digest, signer.sign(signing_message(digest)), raw),
    )
    conn.commit()
    conn.close()
    run = zhibao(home, "log", "verify")
    assert run.returncode == 1
    assert "\x1b" not in run.stdout and "\u202e" not in run.stdout
    assert f"{TOWN}#3: malformed entry: unknown format version \\x1b[2J\\u202eevil" in run.stdout
