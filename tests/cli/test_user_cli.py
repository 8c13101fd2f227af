"""`zhibao user add|list|remove` (DESIGN §8, issue #14): the desk's people, node-local."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.support.servers import ZHIBAO, cli_env
from tests.support.topology import CITY
from tiers.desk import users
from tiers.node import open_home

PASSWORD = "correct horse battery"


def run(
    home: Path, *args: str, stdin: str = "", lang: str = "en"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZHIBAO, "user", *args, "--home", str(home)],
        input=stdin, capture_output=True, text=True, env=cli_env(lang), timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def city(make_topology) -> Path:  # type: ignore[no-untyped-def]
    home: Path = make_topology([CITY]).home(CITY)
    return home


def _listed(home: Path) -> list[dict[str, str]]:
    done = run(home, "list", "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, str]] = json.loads(done.stdout)
    return listed


def _stored(home: Path) -> list[tuple[object, ...]]:
    node = open_home(home)
    try:
        users.ensure(node.store)
        return node.store.query("SELECT * FROM desk_users ORDER BY name")
    finally:
        node.close()


def test_user_add_reads_the_password_from_stdin_and_lists_it(city: Path) -> None:
    done = run(city, "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "ana" in done.stdout
    run(city, "add", "bo", "--role", "viewer", stdin=PASSWORD + "\n")
    listed = _listed(city)
    assert [(u["name"], u["role"]) for u in listed] == [("ana", "admin"), ("bo", "viewer")]
    assert all(set(u) == {"name", "role", "created_at"} for u in listed)
    assert listed[0]["created_at"].startswith("20")
    table = run(city, "list", lang="zh").stdout
    assert "管理员" in table and "查看者" in table and "用户名" in table


def test_user_add_stores_a_salted_hash_not_the_password(city: Path) -> None:
    run(city, "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    run(city, "add", "bo", "--role", "admin", stdin=PASSWORD + "\n")
    rows = _stored(city)
    hashes = [str(row[2]) for row in rows]
    assert all(h.startswith("argon2id$m=") for h in hashes)
    assert all(PASSWORD not in h for h in hashes)
    assert hashes[0] != hashes[1]  # a salt per person
    assert users.password_matches(PASSWORD, hashes[0])
    assert not users.password_matches(PASSWORD + "x", hashes[0])


def test_user_remove_takes_the_person_away(city: Path) -> None:
    run(city, "add", "ana", "--role", "admin", stdin=PASSWORD + "\n")
    done = run(city, "remove", "ana")
    assert done.returncode == 0, done.stderr
    assert _listed(city) == []


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (("add", "ana", "--role", "admin"), "short\n", "too short"),
        (("add", "ana", "--role", "admin"), "", "no password"),
        (("add", "bad name", "--role", "admin"), PASSWORD + "\n", "not a user name"),
        (("add", "<script>", "--role", "admin"), PASSWORD + "\n", "not a user name"),
        (("add", "keep", "--role", "viewer"), PASSWORD + "\n", "already exists"),
        (("remove", "nobody"), "", "no user named 'nobody'"),
    ],
)
def test_user_bad_input_is_one_line_and_changes_nothing(
    city: Path, args: tuple[str, ...], stdin: str, said: str
) -> None:
    run(city, "add", "keep", "--role", "admin", stdin=PASSWORD + "\n")
    before = _stored(city)
    done = run(city, *args, stdin=stdin)
    assert done.returncode == 1
    assert done.stderr.startswith("zhibao: ") and said in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _stored(city) == before


def test_user_bad_role_is_a_usage_error(city: Path) -> None:
    done = run(city, "add", "ana", "--role", "root", stdin=PASSWORD + "\n")
    assert done.returncode == 2
    assert _stored(city) == []


def test_user_errors_speak_chinese(city: Path) -> None:
    done = run(city, "remove", "nobody", lang="zh")
    assert done.returncode == 1
    assert "没有名为“nobody”的用户" in done.stderr


def _on_terminal(home: Path, *typed: str) -> tuple[int, str]:
    """`user add ana --role admin` on a real terminal (a pty as its controlling tty),
    answering each prompt with the next of `typed`."""
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [ZHIBAO, "user", "add", "ana", "--role", "admin", "--home", str(home)],
        stdin=slave, stdout=slave, stderr=slave, env=cli_env(), preexec_fn=controlling_tty,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    answers = list(typed)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, seen
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child has gone
                break
            if not chunk:
                break
            seen += chunk
            if answers and seen.rstrip().endswith(b":"):
                _wait_for_hidden_input(master)  # typed earlier, it would echo (or be flushed)
                os.write(master, answers.pop(0).encode() + b"\n")
    finally:
        os.close(master)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def _wait_for_hidden_input(master: int) -> None:
    deadline = time.monotonic() + 30
    while termios.tcgetattr(master)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the prompt never turned echo off"
        time.sleep(0.01)


def test_user_add_asks_twice_on_a_terminal(city: Path) -> None:
    code, seen = _on_terminal(city, PASSWORD, PASSWORD)
    assert code == 0, seen
    assert "Password:" in seen and "Password again:" in seen and PASSWORD not in seen
    assert [u["name"] for u in _listed(city)] == ["ana"]


def test_user_add_on_a_terminal_refuses_two_different_passwords(city: Path) -> None:
    code, seen = _on_terminal(city, PASSWORD, PASSWORD + "!")
    assert code == 1 and "the two passwords differ" in seen
    assert _listed(city) == []
