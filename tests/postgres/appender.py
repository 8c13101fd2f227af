"""A second writer, as its own process: `python -m tests.postgres.appender JOB` appends one
origin's chain to a PostgreSQL store the way a `serve` front would, and prints what it won.

JOB is JSON: {"url", "origin", "count", "tag", "seed", "mode"}. It connects, prints
"ready", and waits for a line on stdin before it writes (so two start together).
- mode "race": until the head reaches `count`, read the head, append the next 1-8 entries
  of its chain (sizes from `seed`) in one transaction; when the database refuses (another
  writer took the seqs, moved the head, or holds another history), count it and read again.
- mode "hold": append entries `first`…`last` (1-based) in one transaction, print "held",
  and commit only on a second line from stdin.
Prints one JSON line: {"won": [seqs it appended], "refused": {reason key: count}}.
"""

from __future__ import annotations

import json
import random
import sys

from sync.pg import PgStore
from sync.protocol.errors import StoreError
from tests.postgres.chains import chain, signer_for

NOW = "2025-10-13T09:00:00+08:00"


def main(job: dict[str, object]) -> dict[str, object]:
    origin, count = str(job["origin"]), int(str(job["count"]))
    entries = chain(signer_for(origin), origin, count, tag=str(job.get("tag", "")))
    won: list[int] = []
    refused: dict[str, int] = {}
    with PgStore(str(job["url"])) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        if job["mode"] == "hold":
            first, last = int(str(job["first"])), int(str(job["last"]))
            try:
                with store.transaction():
                    store.insert(entries[first - 1 : last], NOW)
                    print("held", flush=True)
                    sys.stdin.readline()
                won.extend(range(first, last + 1))
            except StoreError as exc:
                refused[exc.key] = refused.get(exc.key, 0) + 1
            return {"won": won, "refused": refused}
        sizes = random.Random(int(str(job["seed"])))
        while True:
            held, _ = store.head(origin)
            if held >= count:
                break
            batch = entries[held : held + sizes.randint(1, 8)]
            try:
                with store.transaction():
                    store.insert(batch, NOW)
                won.extend(e.seq for e in batch)
            except StoreError as exc:
                refused[exc.key] = refused.get(exc.key, 0) + 1
    return {"won": won, "refused": refused}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
