"""The log core's tables on PostgreSQL, created and upgraded by numbered migrations.

`schema_version` holds one row per migration applied; `migrate` applies the missing ones in
order, each in the transaction that records it, under an advisory lock so two processes
opening one database at once do not both migrate it. A database migrated by a newer zhibao
(a version this one does not know) is refused, never written.

What the database itself enforces (not one process's memory, so two `serve` fronts may
append at once):
- `entries` is append-only: UPDATE, DELETE and TRUNCATE abort; the one exception is a
  fork switch's delete of a decided fork's losing branch, whole (migration 2).
- UNIQUE (origin, seq): a second entry for a seq already held is refused, whoever sends it.
- Every statement that appends entries is checked as a whole (a statement trigger on its
  transition table, one pass per origin it touches, so COPY stays cheap): for each origin,
  with its `heads` row locked FOR UPDATE, the new seqs must be exactly head+1 … head+n
  (no gap), each `hash` must be SHA-256 of its `raw`, whose JSON must name that origin and
  seq and, as `prev`, the hash of the entry before it (the head's for the first); then the
  head moves. Signatures stay the caller's to check (ingest verifies before it appends). A writer
  that loses a race waits on the lock or the unique index, then fails: it never moves the
  head past entries it did not write.
- `heads` moves only with the log (a row trigger refuses any change not made by the
  append trigger).
The city holds every log whole (DESIGN §1), so every origin's entries are 1 … head.

Entries are partitioned by HASH (origin) into `ENTRY_PARTITIONS` tables, not by month of
arrival: PostgreSQL enforces a UNIQUE constraint on a partitioned table only when it holds
the partition key, so UNIQUE (origin, seq) exists only when origin is that key; and every
per-origin read (a pull, a relay, `log show --origin`, an ingest's overlap check) then
touches one partition's (origin, seq) index instead of one per month. docs/postgresql.md
gives the figures.
"""

from __future__ import annotations

from typing import Any

from sync.pg import replica
from sync.protocol.errors import StoreError

ENTRY_PARTITIONS = 16
BYTE_ORDER = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})  # collations that compare bytes
MIGRATION_LOCK = 0x7A68_6962_616F  # "zhibao": the advisory lock migrations are taken under

_PARTITIONS = "\n".join(
    f"CREATE TABLE entries_p{n:02d} PARTITION OF entries "
    f"FOR VALUES WITH (MODULUS {ENTRY_PARTITIONS}, REMAINDER {n});"
    for n in range(ENTRY_PARTITIONS)
)

# Errors raised by the triggers below carry their own SQLSTATE (class ZB) and a JSON DETAIL
# with origin and seq, which sync.pg.store turns into the project's StoreError.
_V1_LOG_CORE = f"""
CREATE SEQUENCE entries_id_seq AS bigint;
CREATE TABLE entries (
    id bigint NOT NULL DEFAULT nextval('entries_id_seq'),
    origin text NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    sig bytea NOT NULL,
    raw bytea NOT NULL,
    type text NOT NULL,
    received_at text NOT NULL,
    CONSTRAINT entries_origin_seq UNIQUE (origin, seq)
) PARTITION BY HASH (origin);
ALTER SEQUENCE entries_id_seq OWNED BY entries.id;
{_PARTITIONS}
CREATE INDEX entries_id ON entries (id);

CREATE TABLE heads (
    origin text PRIMARY KEY, seq bigint NOT NULL, hash bytea NOT NULL
) WITH (fillfactor = 70);
CREATE TABLE forks (
    origin text NOT NULL, seq bigint NOT NULL, held_hash bytea NOT NULL,
    other_hash bytea NOT NULL, other_raw bytea NOT NULL, other_sig bytea NOT NULL,
    detected_at text NOT NULL, resolved bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, seq, other_hash)
);
CREATE TABLE fork_decisions (
    origin text NOT NULL, seq bigint NOT NULL, author text NOT NULL, author_seq bigint NOT NULL,
    kept_hash bytea NOT NULL, other_hash bytea NOT NULL, reason text NOT NULL, at text NOT NULL,
    PRIMARY KEY (origin, seq, author, author_seq)
);
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE receipts (
    issuer text NOT NULL, origin text NOT NULL, seq bigint NOT NULL, hash bytea NOT NULL,
    raw bytea NOT NULL, sig bytea NOT NULL, at text NOT NULL, PRIMARY KEY (issuer, origin)
);
CREATE TABLE nonces (
    node text NOT NULL, nonce text NOT NULL, seen bigint NOT NULL, PRIMARY KEY (node, nonce)
);
CREATE INDEX nonces_seen ON nonces (seen);
CREATE TABLE peers (
    node_id text PRIMARY KEY, last_contact text NOT NULL, skew_seconds bigint NOT NULL DEFAULT 0
);
CREATE TABLE quarantine (
    origin text NOT NULL, seq bigint NOT NULL, type text NOT NULL, reason text NOT NULL,
    params text NOT NULL, received_at text NOT NULL, PRIMARY KEY (origin, seq)
);
CREATE INDEX quarantine_received ON quarantine (received_at);
CREATE TABLE signed_tips (
    origin text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (origin, seq)
);

CREATE FUNCTION zhibao_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the log is append-only' USING ERRCODE = 'ZB003',
        DETAIL = json_build_object('table', TG_TABLE_NAME, 'op', TG_OP)::text;
END $$;
CREATE TRIGGER entries_no_update BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION zhibao_append_only();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION zhibao_append_only();

CREATE FUNCTION zhibao_entries_appended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run record;
    held_seq bigint;
    held_hash bytea;
    bad record;
BEGIN
    -- the hash column is the hash of the bytes
    SELECT origin, seq INTO bad FROM appended WHERE hash <> sha256(raw) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry %/% : its hash is not the SHA-256 of its bytes', bad.origin, bad.seq
            USING ERRCODE = 'ZB002',
            DETAIL = json_build_object('origin', bad.origin, 'seq', bad.seq)::text;
    END IF;
    FOR run IN
        SELECT origin, min(seq) AS lo, max(seq) AS hi, count(*) AS n
        FROM appended GROUP BY origin ORDER BY origin  -- one lock order for every writer
    LOOP
        SELECT seq, hash INTO held_seq, held_hash FROM heads WHERE origin = run.origin FOR UPDATE;
        IF NOT FOUND THEN
            held_seq := 0;
            held_hash := NULL;
        END IF;
        IF run.lo <> held_seq + 1 OR run.hi - run.lo + 1 <> run.n THEN
            RAISE EXCEPTION 'entries of % must follow seq % without a gap (got % to %)',
                run.origin, held_seq, run.lo, run.hi
                USING ERRCODE = 'ZB001',
                DETAIL = json_build_object('origin', run.origin, 'seq', held_seq + 1,
                                           'head', held_seq)::text;
        END IF;
        -- each entry's bytes name its origin and seq, and its prev is the hash of the one
        -- before it (the held head's for the first)
        SELECT a.seq INTO bad FROM (
            SELECT seq, body ->> 'origin' AS named_origin, body ->> 'seq' AS named_seq,
                   body ->> 'prev' AS prev,
                   coalesce(lag(hash) OVER (ORDER BY seq), held_hash) AS before
            -- (a \\u0000 escape read as U+FFFD: PostgreSQL refuses to read any field of a
            -- document holding one; the entry itself is kept as its bytes)
            FROM (SELECT seq, hash,
                         replace(convert_from(raw, 'UTF8'), '\\u0000', '\\ufffd')::json AS body
                  FROM appended WHERE origin = run.origin) parsed
        ) a
        WHERE a.prev IS DISTINCT FROM encode(a.before, 'hex')
           OR a.named_origin IS DISTINCT FROM run.origin
           OR a.named_seq IS DISTINCT FROM a.seq::text
        ORDER BY a.seq LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'entry %/% does not extend the chain held', run.origin, bad.seq
                USING ERRCODE = 'ZB002',
                DETAIL = json_build_object('origin', run.origin, 'seq', bad.seq)::text;
        END IF;
        INSERT INTO heads (origin, seq, hash)
            SELECT origin, seq, hash FROM appended WHERE origin = run.origin AND seq = run.hi
            ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_appended AFTER INSERT ON entries
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION zhibao_entries_appended();

CREATE FUNCTION zhibao_heads_follow_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN  -- not from zhibao_entries_appended
        RAISE EXCEPTION 'heads move only with the log' USING ERRCODE = 'ZB004',
            DETAIL = json_build_object('table', TG_TABLE_NAME, 'op', TG_OP)::text;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER heads_follow_log BEFORE INSERT OR UPDATE OR DELETE ON heads
    FOR EACH ROW EXECUTE FUNCTION zhibao_heads_follow_log();
"""

# A fork switch (sync.fork_switch: this node gives up its branch of a log for the one a
# fork decision keeps) is the one delete from `entries`. It names itself for its
# transaction, `SET LOCAL zhibao.switch = 'origin:seq'` (PgStore.drop_branch); a row of
# that origin at or above that seq may then go, and only while a fork decision for
# (origin, seq) is held. Anything else is refused as before (ZB003). After the statement,
# the branch must be gone whole (nothing of the origin left from its lowest seq dropped:
# ZB003), and the head goes back to the entry below it (or goes, at seq 1).
_V2_FORK_SWITCH = """
DROP TRIGGER entries_no_update ON entries;
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
    FOR EACH ROW EXECUTE FUNCTION zhibao_append_only();

CREATE FUNCTION zhibao_entries_switch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    switch text := current_setting('zhibao.switch', true);
    from_seq bigint;
BEGIN
    IF switch ~ '^[0-9]+:[0-9]+$' AND split_part(switch, ':', 1) = OLD.origin THEN
        from_seq := split_part(switch, ':', 2)::bigint;
        IF OLD.seq >= from_seq AND EXISTS (
            SELECT 1 FROM fork_decisions WHERE origin = OLD.origin AND seq = from_seq
        ) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'the log is append-only' USING ERRCODE = 'ZB003',
        DETAIL = json_build_object('table', TG_TABLE_NAME, 'op', TG_OP,
                                   'origin', OLD.origin, 'seq', OLD.seq)::text;
END $$;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION zhibao_entries_switch();

CREATE FUNCTION zhibao_entries_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run record;
    held_seq bigint;
BEGIN
    FOR run IN
        SELECT origin, min(seq) AS lo FROM dropped GROUP BY origin ORDER BY origin
    LOOP
        SELECT seq INTO held_seq FROM heads WHERE origin = run.origin FOR UPDATE;
        IF EXISTS (SELECT 1 FROM entries WHERE origin = run.origin AND seq >= run.lo) THEN
            RAISE EXCEPTION 'a fork switch drops the branch of % from seq % whole', run.origin,
                run.lo USING ERRCODE = 'ZB003',
                DETAIL = json_build_object('origin', run.origin, 'seq', run.lo)::text;
        END IF;
        IF run.lo = 1 THEN
            DELETE FROM heads WHERE origin = run.origin;
        ELSE
            UPDATE heads SET seq = run.lo - 1, hash = (
                SELECT hash FROM entries WHERE origin = run.origin AND seq = run.lo - 1
            ) WHERE origin = run.origin;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_switched AFTER DELETE ON entries
    REFERENCING OLD TABLE AS dropped
    FOR EACH STATEMENT EXECUTE FUNCTION zhibao_entries_dropped();
"""

# The append check reads the three fields it compares from each entry's JSON in one pass
# (json_to_record) instead of one pass each (`->>` re-reads a json value's text every
# time): the trigger's cost per entry about halves (bench/README.md "The append check in
# one pass"). What it refuses is unchanged: bytes that are not a JSON object name nothing
# (json_to_record would raise on them, so they are read as `{}`: JSON whitespace, then `{`,
# is an object, as ingest's parser reads it) — only bytes not beginning so, which failed
# as invalid JSON (22P02), are now refused as a broken chain (ZB002).
_V3_ONE_PASS = """
CREATE OR REPLACE FUNCTION zhibao_entries_appended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run record;
    held_seq bigint;
    held_hash bytea;
    bad record;
BEGIN
    -- the hash column is the hash of the bytes
    SELECT origin, seq INTO bad FROM appended WHERE hash <> sha256(raw) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry %/% : its hash is not the SHA-256 of its bytes', bad.origin, bad.seq
            USING ERRCODE = 'ZB002',
            DETAIL = json_build_object('origin', bad.origin, 'seq', bad.seq)::text;
    END IF;
    FOR run IN
        SELECT origin, min(seq) AS lo, max(seq) AS hi, count(*) AS n
        FROM appended GROUP BY origin ORDER BY origin  -- one lock order for every writer
    LOOP
        SELECT seq, hash INTO held_seq, held_hash FROM heads WHERE origin = run.origin FOR UPDATE;
        IF NOT FOUND THEN
            held_seq := 0;
            held_hash := NULL;
        END IF;
        IF run.lo <> held_seq + 1 OR run.hi - run.lo + 1 <> run.n THEN
            RAISE EXCEPTION 'entries of % must follow seq % without a gap (got % to %)',
                run.origin, held_seq, run.lo, run.hi
                USING ERRCODE = 'ZB001',
                DETAIL = json_build_object('origin', run.origin, 'seq', held_seq + 1,
                                           'head', held_seq)::text;
        END IF;
        -- each entry's bytes name its origin and seq, and its prev is the hash of the one
        -- before it (the held head's for the first); a \\u0000 escape is read as U+FFFD:
        -- PostgreSQL refuses to read any field of a document holding one
        SELECT a.seq INTO bad FROM (
            SELECT p.seq, named.origin, named.seq AS named_seq, named.prev,
                   coalesce(lag(p.hash) OVER (ORDER BY p.seq), held_hash) AS before
            FROM appended p, json_to_record(
                CASE WHEN substr(ltrim(p.raw, '\\x20090a0d'::bytea), 1, 1) = '\\x7b'::bytea
                THEN replace(convert_from(p.raw, 'UTF8'), '\\u0000', '\\ufffd')::json
                ELSE '{}' END
            ) AS named(origin text, seq text, prev text)
            WHERE p.origin = run.origin
        ) a
        WHERE a.prev IS DISTINCT FROM encode(a.before, 'hex')
           OR a.origin IS DISTINCT FROM run.origin
           OR a.named_seq IS DISTINCT FROM a.seq::text
        ORDER BY a.seq LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'entry %/% does not extend the chain held', run.origin, bad.seq
                USING ERRCODE = 'ZB002',
                DETAIL = json_build_object('origin', run.origin, 'seq', bad.seq)::text;
        END IF;
        INSERT INTO heads (origin, seq, hash)
            SELECT origin, seq, hash FROM appended WHERE origin = run.origin AND seq = run.hi
            ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
    END LOOP;
    RETURN NULL;
END $$;
"""

# (version, name, SQL): append only; a released migration is never edited
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "log core", _V1_LOG_CORE),
    (2, "fork switch", _V2_FORK_SWITCH),
    (3, "append check in one pass", _V3_ONE_PASS),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def check_collation(conn: Any) -> None:
    """Refuse a database that sorts text by a language's rules: ids are compared as ranges
    (`origin >= '330782001' AND origin < '330782001:'`) and listed in order, which holds
    only in byte order, as SQLite compares — collation C (or C.UTF-8)."""
    row = conn.execute(
        "SELECT to_jsonb(d) FROM pg_database d WHERE datname = current_database()"
    ).fetchone()
    found = row[0] if row is not None else {}
    if found.get("datlocprovider", "c") == "i":  # ICU (PostgreSQL 15+): its own rules
        raise StoreError("store.pg_collation", collation="ICU " + str(found.get("daticulocale")))
    if found.get("datcollate", "C") not in BYTE_ORDER:
        raise StoreError("store.pg_collation", collation=found["datcollate"])


def migrate(conn: Any) -> list[int]:
    """Bring the database of psycopg connection `conn` (not in a transaction) to
    SCHEMA_VERSION; the versions applied now (none when it was there already). On a
    standby nothing can be written: only checked (sync.pg.replica)."""
    if replica.in_recovery(conn):
        replica.check_schema(conn, SCHEMA_VERSION)
        return []
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        held = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        newer = sorted(v for v in held if v > SCHEMA_VERSION)
        if newer:
            raise StoreError("store.pg_newer", version=newer[-1], known=SCHEMA_VERSION)
        for version, name, sql in MIGRATIONS:
            if version in held:
                continue
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name)
            )
            applied.append(version)
    return applied


def version(conn: Any) -> int:
    """The highest migration applied to the database (0: none, not even the table)."""
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
