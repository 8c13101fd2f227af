"""The command line of DESIGN §7 is a stable interface: every command and option exists."""

from __future__ import annotations

import click
import pytest

from cli.main import cli

# (command path, options it must take) — transcribed from DESIGN §7.
INTERFACE = [
    ("init", {"--tier", "--node-id", "--name", "--parent", "--parent-url", "--root-key"}),
    ("node show", {"--json"}),
    ("node enroll", {"--node-id", "--name", "--public-key", "--seal-key"}),
    ("catalogue import", set()),
    ("catalogue list", {"--json"}),
    ("case receive", {"--item", "--applicant", "--id-no", "--phone", "--material", "--at"}),
    ("case accept", {"--item", "--applicant", "--at"}),
    ("case reject", {"--reason", "--at"}),
    ("case request-supplement", {"--missing", "--at"}),
    ("case supply", {"--at"}),
    ("case suspend", {"--reason", "--at"}),
    ("case resume", {"--at"}),
    ("case extend", {"--days", "--reason", "--at"}),
    ("case forward", {"--to", "--note", "--at"}),
    ("case complete", {"--result", "--note", "--at"}),
    ("case deliver", {"--method", "--at"}),
    ("case fee", {"--amount", "--at"}),
    ("case pay", {"--receipt", "--at"}),
    ("case rate", {"--score", "--comment", "--at"}),
    ("case withdraw", {"--at"}),
    ("case show", {"--json"}),
    ("case list", {"--status", "--warning", "--json"}),
    ("serve", {"--host", "--port"}),
    ("sync", {"--peer", "--watch", "--json"}),
    ("bundle export", {"--to", "--out", "--seal"}),
    ("bundle import", {"--receipt-out"}),
    ("restore", {"--from"}),
    ("log verify", {"--json"}),
    ("log show", {"--origin", "--json"}),
    ("status", {"--json"}),
    ("report monthly", {"--period"}),
    ("stats", {"--period", "--by", "--format", "--out"}),
    ("reconcile", {"--period", "--json"}),
    ("demo", set()),
]


def _resolve(path: str) -> click.Command:
    command: click.Command = cli
    ctx = click.Context(cli)
    for name in path.split():
        assert isinstance(command, click.Group), path
        found = command.get_command(ctx, name)
        assert found is not None, f"zhibao {path}: no such command"
        command = found
    return command


@pytest.mark.parametrize("path, options", [pytest.param(p, o, id=p) for p, o in INTERFACE])
def test_interface_command_takes_design_options(path: str, options: set[str]) -> None:
    command = _resolve(path)
    taken = {opt for param in command.params for opt in param.opts}
    assert options | {"--home"} <= taken, sorted(options | {"--home"} - taken)


def test_interface_choices_are_as_designed() -> None:
    def choices(path: str, option: str) -> set[str]:
        for param in _resolve(path).params:
            if option in param.opts and isinstance(param.type, click.Choice):
                return set(param.type.choices)
        raise AssertionError(f"{path} {option} is not a choice")

    assert choices("init", "--tier") == {"city", "town", "village"}
    assert choices("case complete", "--result") == {"approved", "denied"}
    assert {"window", "mail", "sms"} <= choices("case deliver", "--method")
    assert choices("case list", "--warning") == {"yellow", "red", "unaccepted", "undelivered"}
    assert choices("stats", "--by") == {"node", "tier", "item", "department", "kind"}
    assert choices("stats", "--format") == {"table", "json", "csv", "xlsx"}
