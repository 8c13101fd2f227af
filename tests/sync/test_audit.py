"""`log verify` names every kind of tampering by origin and seq (issue: tamper tests)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sync import audit
from sync.audit import AuditReport, _problem, _unproved, verify_log
from sync.keyring import KeyRing
from sync.node import init_node, open_node
from sync.protocol.entry import entry_hash, parse_envelope, signing_message
from sync.protocol.errors import EntryError
from sync.protocol.keys import Signer, verify
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


def _before(store: Store) -> AuditReport:
    """`log verify` as it was before it used workers (#13): one pass over every entry."""
    report = AuditReport()
    for current in sorted(store.heads()):
        report.origins += 1
        ring = KeyRing.load(store, current)
        if not ring.enrols:
            _problem(report, current, 0, "unknown_key")
        answer, expected, prev, unproved = None, 1, None, []
        for entry in store.iter_all(current):
            report.entries += 1
            actual = entry_hash(entry.raw)
            linked = entry.seq == expected
            if not linked:
                _problem(report, current, expected, "missing", first=expected, last=entry.seq - 1)
                prev = None
            if actual != entry.hash:
                _problem(report, current, entry.seq, "changed")
            try:
                fields = parse_envelope(entry.raw, current, entry.seq)
                if prev is not None and fields.prev != prev.hex():
                    _problem(report, current, entry.seq, "chain")
                    linked = False
            except EntryError as exc:
                _problem(report, current, entry.seq, "malformed", reason=exc.params["reason"])
                linked = False
            if not linked:
                _unproved(report, current, unproved)
            if answer is None or (answer.through is not None and entry.seq > answer.through):
                answer = ring.span(entry.seq)
            if answer.key is None and answer.why == "entry.revoked":
                _problem(report, current, entry.seq, "revoked", cut=answer.cut)
            elif answer.key is not None and not verify(
                answer.key, signing_message(actual), entry.sig
            ):
                unproved.append(entry.seq)
            elif unproved:
                report.vouched[current] = report.vouched.get(current, 0) + len(unproved)
                unproved.clear()
            expected, prev = entry.seq + 1, actual
        _unproved(report, current, unproved)
        head_seq, head_hash = store.head(current)
        if head_seq != expected - 1 or (prev is not None and head_hash != prev):
            _problem(report, current, head_seq, "head", held=expected - 1)
    return report


def _both(home: Path, slice_size: int) -> AuditReport:
    """The reports of the pass before #13, of one pass here and of two worker threads on
    slices of `slice_size` entries: the same, problem for problem, in the same order."""
    with Store(home / "node.db") as store:
        before = _before(store)
        alone = verify_log(store, workers=1)
        apart = verify_log(store, workers=2, slice_size=slice_size)
    assert alone.to_json() == before.to_json()
    assert apart.to_json() == before.to_json()
    return apart


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
    assert {(p["seq"], p["kind"]) for p in _both(home, slice_size=2).problems} == found


def test_audit_inner_signature_vouched_by_the_chain_is_no_problem(tmp_path: Path) -> None:
    """A relay or a hostile author may store garbage in an inner entry's signature: the
    chain up to a valid signature proves the entry, as it did at ingest (docs/protocol.md)."""
    home = _town(tmp_path)
    _tamper(home, "UPDATE entries SET sig = ? WHERE seq IN (2, 3)", params=(b"\x07" * 64,))
    assert _problems(home) == []
    with Store(home / "node.db") as store:
        assert verify_log(store).vouched == {TOWN: 2}


LONG = 300  # entries: slices of 16 put every tampering below past a worker's first slice


@pytest.fixture(scope="module")
def long_town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _town(tmp_path_factory.mktemp("long"), entries=LONG)


def _copy(home: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("node.toml", "node.key", "seal.key", "node.db"):
        if (home / name).exists():
            (to / name).write_bytes((home / name).read_bytes())
    return to


FOREIGN = Signer.generate().sign(b"zhibao")


@pytest.mark.parametrize(
    "statements, params, expected, vouched",
    [
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq = 250", "DELETE FROM entries WHERE seq = 251"],
            (FOREIGN,),
            [(251, "missing"), (250, "signature")],
            {},
            id="forged-signature-before-a-gap-deep-in-the-log",
        ),
        pytest.param(
            # 209 is the first entry of a slice (after 13 × 16), so its link to 208 is
            # checked by another worker than 208's
            ["UPDATE entries SET raw = CAST(replace(raw, '\"n\":209', '\"n\":9') AS BLOB)"
             " WHERE seq = 209"],
            (),
            [(209, "changed"), (210, "chain"), (209, "signature")],
            {},
            id="changed-bytes-at-a-slice-start",
        ),
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq = ?"],
            (FOREIGN, LONG),
            [(LONG, "signature")],
            {},
            id="forged-signature-on-the-head",
        ),
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq BETWEEN 190 AND 194"],
            (FOREIGN,),
            [],
            {TOWN: 5},
            id="inner-signatures-vouched-across-a-slice-boundary",
        ),
        pytest.param(
            ["UPDATE entries SET sig = ? WHERE seq BETWEEN 100 AND 112",
             "DELETE FROM entries WHERE seq = 113"],
            (FOREIGN,),
            [(113, "missing")] + [(seq, "signature") for seq in range(100, 113)],
            {},
            id="bad-signatures-across-slices-then-a-gap",
        ),
    ],
)  # fmt: skip
def test_audit_finds_tampering_deep_in_a_long_log_on_every_worker(
    long_town: Path,
    tmp_path: Path,
    statements: list[str],
    params: tuple[object, ...],
    expected: list[tuple[int, str]],
    vouched: dict[str, int],
) -> None:
    home = _copy(long_town, tmp_path / "town")
    _tamper(home, *statements, params=params)
    report = _both(home, slice_size=16)
    assert [(p["seq"], p["kind"]) for p in report.problems] == expected
    assert report.vouched == vouched
    assert report.entries == LONG - sum(1 for s in statements if s.startswith("DELETE"))


def test_audit_checks_slices_on_worker_threads(
    long_town: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With workers, the slices are checked away from the caller's thread (the real
    check, each call recorded), and every slice of the log is checked once."""
    seen: list[tuple[int, object]] = []
    real = audit.check_slice

    def recorded(conn: object, part: audit.Slice) -> audit.Checked:
        seen.append((threading.get_ident(), part.through))
        return real(conn, part)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "check_slice", recorded)
    calls: list[tuple[int, int]] = []
    with Store(long_town / "node.db") as store:
        report = verify_log(
            store, workers=2, slice_size=16, progress=lambda d, t: calls.append((d, t))
        )
    assert report.ok and report.entries == LONG
    assert threading.get_ident() not in {ident for ident, _ in seen}
    assert sorted(through for _, through in seen) == [*range(16, LONG, 16), LONG]
    assert calls[-1] == (LONG, LONG) and len(calls) == len(seen)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


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


def _switch(home: Path, branch: Path, seq: int) -> None:
    """What ingest's fork switch does to `home`'s log: from `seq` on, `branch`'s entries."""
    conn = sqlite3.connect(home / "node.db")
    conn.execute("ATTACH ? AS b", (str(branch / "node.db"),))
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE origin = ? AND seq >= ?", (TOWN, seq))
    columns = "origin, seq, hash, sig, raw, type, received_at"
    conn.execute(f"INSERT INTO entries ({columns}) SELECT {columns} FROM b.entries"
                 " WHERE origin = ? AND seq >= ?", (TOWN, seq))  # fmt: skip
    conn.execute("DELETE FROM heads WHERE origin = ?", (TOWN,))
    conn.execute("INSERT INTO heads SELECT * FROM b.heads WHERE origin = ?", (TOWN,))
    conn.commit()
    conn.close()


def test_audit_slices_a_fork_switch_replaced_meanwhile_are_checked_as_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reads outside the caller's snapshot, and ingest's fork switch may replace
    the tail of a log meanwhile (another branch, signed by the same key). The slices the
    worker did not read as the snapshot holds them are checked again in the snapshot: the
    report is the one pass's, not a head that "does not match" on a sound log."""
    home = _town(tmp_path, 10)
    branch = Path(shutil.copytree(home, tmp_path / "branch"))
    for where, extra in ((home, {}), (branch, {"branch": True})):
        with open_node(where) as node:
            for n in range(11, 21):
                node.append("test.note", {"n": n, **extra}, at="2025-10-09T10:00:00+08:00")
    real, lock, switched = audit.check_slice, threading.Lock(), []

    def switch_first(conn: object, part: audit.Slice) -> audit.Checked:
        with lock:  # before any worker reads: after the plan, inside the snapshot
            if not switched:
                _switch(home, branch, 11)
                switched.append(part.through)
        return real(conn, part)  # type: ignore[arg-type]

    with Store(home / "node.db") as store:
        alone = verify_log(store, workers=1)
        monkeypatch.setattr(audit, "check_slice", switch_first)
        apart = verify_log(store, workers=2, slice_size=4)
        assert switched and alone.ok and apart.ok, apart.problems
        assert apart.to_json() == alone.to_json()
        monkeypatch.undo()
        assert verify_log(store, workers=1).ok  # the branch, checked afresh, is sound too
