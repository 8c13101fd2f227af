"""What a `zhibao` process imports before it does anything (#15: every test and every
operator's command pays for it at each start).

`zhibao --help` lists the commands from cli.main.SUMMARIES, importing none of them; the
tests here check that the page is exactly the one click makes from the commands
themselves, in both languages and at any width, and which modules a start pulls in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.core import _make_default_short_help

from cli.help import PREFIX
from cli.help_format import HelpContext
from cli.main import COMMANDS, SUMMARIES, cli
from sync.protocol import i18n


def commands_page(lang: str, width: int, *, imported: bool) -> str:
    """The "Commands" section of `zhibao --help`: from SUMMARIES (what --help does), or as
    click makes it from the commands themselves (each imported and localised)."""
    i18n.use_locale(lang)
    try:
        ctx = HelpContext(cli, terminal_width=width, max_content_width=100)
        formatter = ctx.make_formatter()
        if imported:
            click.Group.format_commands(cli, ctx, formatter)
        else:
            cli.format_commands(ctx, formatter)
        return formatter.getvalue()
    finally:
        i18n.use_locale(None)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_startup_help_lists_the_commands_as_they_describe_themselves(lang: str) -> None:
    for width in (30, 50, 80, 100):
        page = commands_page(lang, width, imported=False)
        assert page == commands_page(lang, width, imported=True), (
            f"cli.main.SUMMARIES is not the first sentence of the commands' help ({lang}, "
            f"{width} columns)"
        )
    assert sorted(SUMMARIES) == sorted(COMMANDS)


def test_startup_summaries_are_the_first_sentences() -> None:
    ctx = click.Context(cli)
    for name, (english, chinese) in SUMMARIES.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        full = command.__dict__.get("_help_en", command.help) or ""
        assert english == _make_default_short_help(full, 10**6), name
        i18n.use_locale("zh")
        try:
            whole = i18n.t(PREFIX + full)
        finally:
            i18n.use_locale(None)
        paragraph = " ".join(whole.partition("\n\n")[0].split())
        assert chinese == re.split(r"(?<=[。！？])", paragraph, maxsplit=1)[0], name


def imports_of(*args: str) -> set[str]:
    """The modules a fresh `zhibao ARGS` (which must succeed) has imported when it exits."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write(json.dumps(sorted(sys.modules))))\n"
        "from cli.main import main\n"
        f"main({list(args)!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_startup_help_imports_no_command() -> None:
    loaded = imports_of("--help")
    commands = {target.partition(":")[0] for target in COMMANDS.values()}
    assert not loaded & commands, sorted(loaded & commands)
    assert not {m for m in loaded if m.startswith("tiers")}, sorted(loaded)


# What only `serve`, `sync`, `restore` and the desk need: the HTTP server and client.
NETWORK = ("starlette", "uvicorn", "httpx", "asyncio", "sync.server", "sync.client", "tiers.desk")


def test_startup_reading_commands_load_no_network_code(tmp_path: Path) -> None:
    home = str(tmp_path / "city")
    imports_of("init", "--tier", "city", "--node-id", "330782", "--name", "市", "--home", home)
    for args in (
        ["status", "--json"],
        ["stats", "--json"],
        ["reconcile", "--period", "2026-11", "--json"],
        ["case", "list", "--json"],
        ["log", "verify", "--json"],
    ):
        loaded = imports_of(*args, "--home", home)
        network = sorted(m for m in loaded if m.split(".")[0] in NETWORK or m.startswith(NETWORK))
        assert network == [], f"zhibao {' '.join(args)} imports {network}"
