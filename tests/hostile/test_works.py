"""`assert_works`, the check every attack ends with, fires on a node an attack did break:
its five commands run in one process per home (tests/hostile/network.py), and each must
still exit 0 with JSON, and `log verify` must still say ok."""

from __future__ import annotations

import sqlite3

import pytest

from sync.keyfiles import NODE_KEY
from sync.node import NODE_DB
from tests.hostile.network import CITY, TOWN, Net, assert_works


def test_works_fires_on_a_log_whose_last_signature_was_changed(net: Net) -> None:
    town, city = net.home(TOWN), net.home(CITY)
    assert_works(town, city)
    db = sqlite3.connect(town / NODE_DB)  # what a failing disk or an intruder may do
    db.execute("DROP TRIGGER entries_no_update")
    (last,) = db.execute("SELECT max(id) FROM entries WHERE origin = ?", (TOWN,)).fetchone()
    db.execute("UPDATE entries SET sig = zeroblob(length(sig)) WHERE id = ?", (last,))
    db.commit()
    db.close()
    with pytest.raises(AssertionError, match=f"zhibao log verify --json at {TOWN}: "):
        assert_works(city, town)
    assert_works(city)  # the other node is not blamed


def test_works_fires_on_a_node_that_cannot_open(net: Net) -> None:
    town = net.home(TOWN)
    (town / NODE_KEY).unlink()
    with pytest.raises(AssertionError, match=f"zhibao case list --json at {TOWN}: zhibao: "):
        assert_works(town)
