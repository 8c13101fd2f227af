"""`zhibao --home DIR COMMAND …` is `COMMAND --home DIR`; `zhibao --version` (DESIGN §8).

Real `zhibao` subprocesses on real homes: the option before the command reaches commands
of every group (init, node, catalogue, log, status, case, bundle), the command's own
--home wins over it, it wins over $ZHIBAO_HOME, and a home that does not exist is the
same one-line error, exit 1, either way.
"""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.servers import ZHIBAO, cli_env

CITY_A, CITY_B = "330782", "330783"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`zhibao ARGS` exactly as given (no --home appended), messages in English."""
    return subprocess.run(
        [ZHIBAO, *args], capture_output=True, text=True, env=env or cli_env(), timeout=120,
        check=False,
    )  # fmt: skip


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    done = run(*args, env=env)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two cities, made with `zhibao --home DIR init …` (the option before the command)."""
    base = tmp_path_factory.mktemp("global")
    a, b = base / "a", base / "b"
    ok("--home", str(a), "init", "--tier", "city", "--node-id", CITY_A, "--name", "A 市")
    ok("--home", str(b), "init", "--tier", "city", "--node-id", CITY_B, "--name", "B 市")
    return a, b


def test_global_home_reaches_commands_of_every_group(homes: tuple[Path, Path]) -> None:
    a, _ = homes
    for command in (
        ["node", "show", "--json"],
        ["catalogue", "list", "--json"],
        ["log", "verify", "--json"],
        ["case", "list", "--json"],
    ):
        before = ok("--home", str(a), *command)
        after = ok(*command, "--home", str(a))
        assert before == after, command
    shown = json.loads(ok("--home", str(a), "node", "show", "--json"))
    assert shown["node_id"] == CITY_A
    status = json.loads(ok("--home", str(a), "status", "--json"))
    assert status["node_id"] == CITY_A


def test_global_home_writes_where_it_points(homes: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = homes
    out = tmp_path / "a.bundle"
    done = run("--home", str(a), "bundle", "export", "--to", "330782001", "--out", str(out))
    # the city has not enrolled that town: refused by the city at `a`, in its words
    assert done.returncode == 1 and "330782001" in done.stderr, done.stderr
    assert not out.exists()


def test_command_home_wins_over_global_home(homes: tuple[Path, Path]) -> None:
    a, b = homes
    shown = json.loads(ok("--home", str(a), "node", "show", "--json", "--home", str(b)))
    assert shown["node_id"] == CITY_B


def test_global_home_wins_over_environment(homes: tuple[Path, Path]) -> None:
    a, b = homes
    env = cli_env() | {"ZHIBAO_HOME": str(b)}
    assert json.loads(ok("node", "show", "--json", env=env))["node_id"] == CITY_B
    shown = json.loads(ok("--home", str(a), "node", "show", "--json", env=env))
    assert shown["node_id"] == CITY_A


def test_global_home_missing_is_one_line_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    before = run("--home", str(missing), "case", "list")
    after = run("case", "list", "--home", str(missing))
    assert before.returncode == after.returncode == 1
    assert before.stderr == after.stderr
    assert before.stderr.startswith("zhibao: ") and before.stderr.count("\n") == 1
    assert str(missing) in before.stderr and "Traceback" not in before.stderr
    assert before.stdout == "" and not missing.exists()


def test_global_home_without_value_is_a_usage_error() -> None:
    done = run("--home")
    assert done.returncode == 2 and "--home" in done.stderr


def test_version_is_the_installed_distribution() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.split()[-1] == version("zhibao")
    assert done.stdout.startswith("zhibao")


def test_help_says_which_home_wins() -> None:
    top = ok("--help")
    assert "--home DIR" in top and "own --home wins" in top
    assert "zhibao --home" in ok("case", "list", "--help")
