"""Why the loop's hot writes look as they do: what one call costs the embedded store, by layout.

The embedded engine rewrites every index entry of a document on every update
(and plans each update through every index), while an inserted document costs
little. For 2,000 objects among 20,000 stored, on a fresh embedded server
(--sync-on-commit, as lambdaop runs it), this prints the claim + result cost
of one call:

  earlier engine: the claim and the result each update `objects`, which carries
      six indexes (unique key, by_state, by_kind, due, lease_until);
  this engine: the claim inserts a lease document per object (one transaction
      per batch); the result, 64 to a transaction, updates `objects` (by_state
      and due only), deletes the lease, appends the call to `attempts` and moves
      the counters.

Also prints the update cost by the number of secondary indexes on the collection.

Usage: python benchmarks/store_indexes.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import pymongo
from pymongo import UpdateOne

from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import start_embedded

N, CALLS = 20000, 2000
NOW = dt.datetime.now(dt.UTC)
RECORD = {"step": "task", "attempt": 1, "at": NOW, "duration_ms": 1.2, "status": 200, "ok": True, "response": '{"ok": true}'}  # fmt: skip


def doc(i: int) -> dict[str, Any]:
    return {
        "_id": f"x{i:07}", "owner": "a", "kind": "Task", "name": f"n{i}", "state": "scheduled", "due": NOW, "fence": 0,
        "spec": {"invoke": {"url": f"https://example.com/ok?i={i}"}}, "progress": {"phase": "scheduled", "step": "task"},
    }  # fmt: skip


def fill(objects: Any) -> None:
    for b in range(0, N, 5000):
        objects.insert_many([doc(i) for i in range(b, b + 5000)])


def in_txns(client: pymongo.MongoClient, ids: list[str], size: int, write: Any) -> float:
    t0 = time.perf_counter()
    for b in range(0, len(ids), size):
        with client.start_session() as s, s.start_transaction():
            write(ids[b : b + size], s)
    return time.perf_counter() - t0


def earlier(client: pymongo.MongoClient) -> float:
    db = client.earlier
    objects = db.objects
    objects.create_index([("owner", 1), ("kind", 1), ("name", 1)], unique=True)
    objects.create_index([("owner", 1), ("kind", 1), ("state", 1), ("_id", -1)])
    objects.create_index([("kind", 1), ("_id", -1)])
    objects.create_index("due", sparse=True)
    objects.create_index("lease_until", sparse=True)
    fill(objects)
    ids = [f"x{i:07}" for i in range(CALLS)]
    claims = in_txns(client, ids, 200, lambda part, s: objects.bulk_write([UpdateOne(
        {"_id": i, "fence": 0},
        {"$set": {"lease_owner": "me", "lease_until": NOW, "state": "running"}, "$unset": {"due": ""}, "$inc": {"fence": 1}},
    ) for i in part], ordered=False, session=s))  # fmt: skip
    results = in_txns(client, ids, 200, lambda part, s: objects.bulk_write([UpdateOne(
        {"_id": i, "fence": 1, "lease_owner": "me"},
        {"$set": {"state": "completed", "last": RECORD}, "$unset": {"lease_owner": "", "lease_until": ""},
         "$push": {"attempts": {"$each": [RECORD], "$slice": -200}}, "$inc": {"fence": 1}},
    ) for i in part], ordered=False, session=s))  # fmt: skip
    return (claims + results) / CALLS


def this_engine(client: pymongo.MongoClient) -> tuple[float, float, float]:
    db = client.current
    objects, leases, attempts, counters = db.objects, db.leases, db.attempts, db.counters
    objects.create_index([("owner", 1), ("kind", 1), ("state", 1), ("_id", -1)])
    objects.create_index("due", sparse=True)
    attempts.create_index([("o", 1), ("_id", 1)])
    counters.create_index("p")
    fill(objects)
    ids = [f"x{i:07}" for i in range(CALLS)]
    claims = in_txns(client, ids, 500, lambda part, s: leases.insert_many(
        [{"_id": i, "owner": "me", "until": NOW} for i in part], session=s))  # fmt: skip
    t0 = time.perf_counter()
    for b in range(0, CALLS, 500):
        list(objects.find({"_id": {"$in": ids[b : b + 500]}}))  # the read after a claim
    reads = time.perf_counter() - t0

    def result(part: list[str], s: Any) -> None:
        leases.delete_many({"_id": {"$in": part}, "owner": "me"}, session=s)
        objects.bulk_write([UpdateOne(
            {"_id": i, "fence": 0},
            {"$set": {"state": "completed", "last": RECORD, "progress": {"phase": "completed"}}, "$unset": {"due": ""}, "$inc": {"fence": 1}},
        ) for i in part], ordered=False, session=s)  # fmt: skip
        attempts.insert_many([{**RECORD, "o": i} for i in part], session=s)
        counters.bulk_write([UpdateOne({"_id": k}, {"$inc": {"n": 1}, "$setOnInsert": {"p": "a/Task"}}, upsert=True)
                             for k in ("a/Task/completed@s", "a/Task/scheduled@s", "*/Task/completed@s", "*/Task/scheduled@s")], session=s)  # fmt: skip

    results = in_txns(client, ids, 64, result)
    return claims / CALLS, reads / CALLS, results / CALLS


def by_index_count(client: pymongo.MongoClient) -> None:
    specs = [
        [("owner", 1), ("kind", 1), ("state", 1), ("_id", -1)],
        [("due", 1)],
        [("kind", 1), ("_id", -1)],
        [("owner", 1), ("kind", 1), ("name", 1)],
        [("lease_until", 1)],
    ]
    for count in (0, 1, 2, 3, 5):
        objects = client.counting[f"objects{count}"]
        for keys in specs[:count]:
            objects.create_index(keys)
        fill(objects)
        ids = [f"x{i:07}" for i in range(CALLS)]
        took = in_txns(client, ids, 64, lambda part, s, objects=objects: objects.bulk_write(
            [UpdateOne({"_id": i}, {"$set": {"state": "completed", "last": RECORD}}) for i in part], ordered=False, session=s))  # fmt: skip
        print(f"  update of a document with {count} secondary index(es): {took / CALLS * 1000:.2f} ms")


def main() -> None:
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="lambdaop-bench-")))
    start_embedded(server)
    try:
        client: pymongo.MongoClient = pymongo.MongoClient(server.uri, retryWrites=False, tz_aware=True)
        old = earlier(client)
        claim, read, result = this_engine(client)
        new = claim + read + result
        print(f"earlier engine (claim and result update objects, 6 indexes): {old * 1000:.2f} ms per call -> {1 / old:.0f} calls/s")  # fmt: skip
        print(f"this engine: claim {claim * 1000:.2f} + read back {read * 1000:.2f} + result {result * 1000:.2f} = "
              f"{new * 1000:.2f} ms per call -> {1 / new:.0f} calls/s")  # fmt: skip
        by_index_count(client)
        client.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
