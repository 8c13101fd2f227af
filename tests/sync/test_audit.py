"""`log verify` names every kind of tampering by origin and seq (issue: tamper tests)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sync.audit import verify_log
from sync.node import init_node
from sync.protocol.keys import Signer
from sync.store import Store

TOWN = "330782001"


def _town(tmp_path: Path, entries: int = 5) -> Path:
    root = Signer.generate().public.hex()
    home = tmp_path / "town"
    node = init_node(
        home, tier="town", node_id=TOWN, name="稠城", parent_id="330782", root_key=root
    )
    with node:
        # the town's own key must be known to check its log: enrol it as the city would
        node.store.execute(
            "INSERT INTO nodes (node_id, tier, name, parent_id, public_key) VALUES (?,?,?,?,?)",
            (TOWN, "town", "稠城", "330782", node.signer.public),
        )
        for n in range(1, entries + 1):
            node.append("test.note", {"n": n}, at="2025-10-09T10:00:00+08:00")
    return home


def _tamper(home: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Edit node.db behind zhibao's back, as an attacker or a bad disk would."""
    conn = sqlite3.connect(home / "node.db")
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("DROP TRIGGER entries_no_delete")
    for sql in statements:
        conn.execute(sql, params if "?" in sql else ())
    conn.commit()
    conn.close()


def _problems(home: Path) -> list[tuple[int, str]]:
    with Store(home / "node.db") as store:
        report = verify_log(store)
    return sorted((p["seq"], p["kind"]) for p in report.problems if p["origin"] == TOWN)


def test_audit_clean_log_is_ok(tmp_path: Path) -> None:
    home = _town(tmp_path)
    assert _problems(home) == []


@pytest.mark.parametrize(
    "statements, params, expected",
    [
        pytest.param(
            [
                "UPDATE entries SET raw = CAST(replace(raw, '\"n\":3', '\"n\":8') AS BLOB)"
                " WHERE seq = 3"
            ],
            (),
            {(3, "changed"), (3, "signature"), (4, "chain")},
            id="changed-byte",
        ),
        pytest.param(
            [
                "UPDATE entries SET seq = -1 WHERE seq = 2",
                "UPDATE entries SET seq = 2 WHERE seq = 3",
                "UPDATE entries SET seq = 3 WHERE seq = -1",
            ],
            (),
            {(2, "malformed"), (3, "malformed")},
            id="reordered",
        ),
        pytest.param(["DELETE FROM entries WHERE seq = 4"], (), {(4, "missing")}, id="dropped"),
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq = 5"],
            (Signer.generate().sign(b"zhibao"),),
            {(5, "signature")},
            id="foreign-signature-on-the-head",
        ),
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq = 2", "DELETE FROM entries WHERE seq = 3"],
            (Signer.generate().sign(b"zhibao"),),
            {(2, "signature"), (3, "missing")},
            id="foreign-signature-before-a-gap",
        ),
    ],
)
def test_audit_names_tampering(
    tmp_path: Path,
    statements: list[str],
    params: tuple[object, ...],
    expected: set[tuple[int, str]],
) -> None:
    home = _town(tmp_path)
    _tamper(home, *statements, params=params)
    found = set(_problems(home))
    assert expected <= found, found


def test_audit_inner_signature_vouched_by_the_chain_is_no_problem(tmp_path: Path) -> None:
    """A relay or a hostile author may store garbage in an inner entry's signature: the
    chain up to a valid signature proves the entry, as it did at ingest (docs/protocol.md)."""
    home = _town(tmp_path)
    _tamper(home, "UPDATE entries SET sig = ? WHERE seq IN (2, 3)", params=(b"\x07" * 64,))
    assert _problems(home) == []
    with Store(home / "node.db") as store:
        assert verify_log(store).vouched == {TOWN: 2}


def test_audit_cli_reports_json_and_exit_1(tmp_path: Path) -> None:
    home = _town(tmp_path)
    _tamper(home, "DELETE FROM entries WHERE seq = 2")
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "log", "verify", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["ok"] is False and report["entries"] == 4
    assert {"origin": TOWN, "seq": 2, "kind": "missing"}.items() <= report["problems"][0].items()


def test_store_refuses_update_and_delete(tmp_path: Path) -> None:
    home = _town(tmp_path, entries=1)
    conn = sqlite3.connect(home / "node.db")
    for sql in ("UPDATE entries SET type = 'x.y'", "DELETE FROM entries"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()
