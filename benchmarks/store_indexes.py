"""Why the loop keeps few indexes on `objects`: the embedded server's cost per update grows with
the number of indexes on the collection, whichever fields the update touches.

For 1, 3, 6 and 8 indexes, claims then results of 1,000 documents (batches of 200 in one
transaction, the loop's own write shapes) on a fresh embedded server; prints updates/s.

Usage: python benchmarks/store_indexes.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
from pymongo import UpdateOne

from lambdaop.embedded import EmbeddedServer

INDEXES = [
    ([("due", 1)], True),
    ([("lease_until", 1)], True),
    ([("owner", 1), ("kind", 1), ("name", 1)], False),
    ([("owner", 1), ("kind", 1), ("state", 1), ("_id", -1)], False),
    ([("kind", 1), ("_id", -1)], False),
    ([("owner", 1), ("kind", 1), ("_id", -1)], False),
    ([("source.folder", 1)], True),
]


def batches(
    client: pymongo.MongoClient, objects: Any, ids: list[str], make: Callable[[str], UpdateOne]
) -> float:
    """Updates/s writing `make(id)` for every id, 200 to a transaction."""
    t0 = time.perf_counter()
    for b in range(0, len(ids), 200):
        with client.start_session() as session, session.start_transaction():
            objects.bulk_write([make(i) for i in ids[b : b + 200]], ordered=False, session=session)
    return len(ids) / (time.perf_counter() - t0)


def main() -> None:
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="lambdaop-bench-")))
    server.start()
    try:
        client: pymongo.MongoClient = pymongo.MongoClient(server.uri, retryWrites=False, tz_aware=True)
        now = dt.datetime.now(dt.UTC)
        record = {
            "step": "task",
            "attempt": 1,
            "at": now,
            "duration_ms": 1.2,
            "status": 200,
            "ok": True,
            "response": '{"ok": true}',
        }
        for count in (1, 3, 6, 8):
            objects = client.bench[f"objects{count}"]
            for keys, sparse in INDEXES[: count - 1]:
                objects.create_index(keys, sparse=sparse)
            objects.insert_many(
                [{"_id": f"x{i:05}", "owner": "a", "kind": "Task", "name": f"n{i}", "state": "scheduled", "due": now,
                  "fence": 0, "progress": {"phase": "scheduled"}, "attempts": []} for i in range(5000)]
            )  # fmt: skip
            ids = [f"x{i:05}" for i in range(1000)]

            claims = batches(client, objects, ids, lambda i: UpdateOne(
                {"_id": i, "fence": 0},
                {"$set": {"lease_owner": "me", "lease_until": now, "state": "running"}, "$unset": {"due": ""}, "$inc": {"fence": 1}},
            ))  # fmt: skip
            results = batches(client, objects, ids, lambda i: UpdateOne(
                {"_id": i, "fence": 1, "lease_owner": "me"},
                {"$set": {"state": "completed", "last": record}, "$unset": {"lease_owner": "", "lease_until": ""},
                 "$push": {"attempts": {"$each": [record], "$slice": -200}}, "$inc": {"fence": 1}},
            ))  # fmt: skip
            both = 1 / (1 / claims + 1 / results)
            print(
                f"{count} indexes: claims {claims:5.0f}/s, results {results:5.0f}/s -> {both:4.0f} claim+result pairs/s"
            )
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
