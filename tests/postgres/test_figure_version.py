"""The desk's figure cache on PostgreSQL (tiers.desk.figures.data_version): with two fronts
an entry may commit after one with a higher id; the version must move when it does, or a
figure computed in between would be served as current while an enrolled name it shows (an
eager table, sync.trust) has changed."""

from __future__ import annotations

from sync.pg import PgStore
from tests.postgres.chains import AT, chain, signer_for
from tiers.desk.figures import _changed_cases, data_version


def test_figure_version_moves_when_an_entry_commits_out_of_id_order(pg_url: str) -> None:
    one, two, reader = PgStore(pg_url), PgStore(pg_url), PgStore(pg_url)
    try:
        one.defer_projections()  # two fronts storing pushes: they append at once
        two.defer_projections()
        first = chain(signer_for("330782001"), "330782001", 1)
        second = chain(signer_for("330782002"), "330782002", 1)
        with one.transaction():
            one.insert(first, AT)  # takes the lower id, commits last
            with two.transaction():
                two.insert(second, AT)
            between = data_version(reader)
        after = data_version(reader)
        ids = dict(reader.query("SELECT origin, id FROM entries"))
        assert ids["330782001"] < ids["330782002"]  # (the scenario: out of id order)
        assert after != between
        assert _changed_cases(reader, between, after) is None  # not a case entry: recompute
    finally:
        for store in (one, two, reader):
            store.close()
