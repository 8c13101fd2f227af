"""sync/protocol must stay pure: no sockets, no database, no HTTP, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "sync" / "protocol"
FORBIDDEN = {
    "apsw",
    "sqlite3",
    "sqlite_utils",
    "httpx",
    "socket",
    "starlette",
    "uvicorn",
    "urllib",
    "http",
    "asyncio",
    "subprocess",
    "threading",
    "time",
    "random",
    "secrets",
    "sync.store",
    "sync.node",
    "sync.client",
    "sync.server",
    "tiers",
    "cli",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PROTOCOL.glob("*.py")), ids=lambda p: p.name)
def test_protocol_module_imports_nothing_that_does_io(path: Path) -> None:
    bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_protocol_purity_check_sees_modules() -> None:
    assert len(list(PROTOCOL.glob("*.py"))) >= 8


def test_layers_import_downward_only() -> None:
    """sync never imports tiers or cli; tiers never import cli."""
    root = PROTOCOL.parents[1]
    for package, banned in (("sync", ("tiers", "cli")), ("tiers", ("cli",))):
        for path in (root / package).rglob("*.py"):
            bad = {n for n in _imports(path) if n.split(".")[0] in banned}
            assert not bad, f"{path.relative_to(root)} imports {sorted(bad)}"
