"""The places of limit keys (MongoDB): one small document per place, taken by a conditional write on `_id`.

`limits` holds, for a key K (`owner␟KEY`):

- `K␟c0004`, `K␟r0012`: a concurrency or rate place, `{holder, until, expires}`; free when
  `until` is at or before the time asked about. A take is `update_one({_id, until: {$lte: now}},
  {$set: …}, upsert=True)`: a free place matches and is written, a place nobody ever took is
  inserted, and a taken one makes the upsert insert a second document with its `_id`, which the
  unique `_id` refuses (E11000): exactly one of two takers wins, in any process.
- `K␟wc␟HOLDER`: how many calls of a process wait for K's concurrency places (`wr`: rate places),
  and the due time of the earliest.

A key's documents are one range of `_id` (`K␟` to `K␟\\x7f`), so `key_state` is one bounded read.
`expires` (a TTL index) drops a place an hour after it was last free and a waiting entry an hour
after it went stale: a dropped place reads as free, as it was. The collection is never written
inside a transaction (no commit touches it), so its unordered bulk writes never meet one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import DeleteOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError

from lambdaop.store.contract import MAX_PLACES, KeyState, LimitType, Place, Waiter
from lambdaop.store.mongo.base import Base, chunks

SEP = "\x1f"
KEPT = dt.timedelta(hours=1)  # a free place or a stale waiting entry is dropped this long after


def place_id(key: str, kind: LimitType, number: int) -> str:
    return f"{key}{SEP}{kind.value}{number:04d}"


def waiter_id(key: str, kind: LimitType, holder: str) -> str:
    return f"{key}{SEP}w{kind.value}{SEP}{holder}"


class Places(Base):
    def key_state(self, key: str) -> KeyState:
        rng = {"$gte": key + SEP, "$lt": key + SEP + "\x7f"}
        places: list[Place] = []
        waiters: list[Waiter] = []
        for doc in self.limits.find({"_id": rng}, {"expires": 0}).sort("_id", 1).limit(2 * MAX_PLACES + 1000):
            tail = str(doc["_id"])[len(key) + 1 :]
            if tail[:1] == "w":
                kind = LimitType(tail[1])
                waiters.append(Waiter(kind, tail[3:], doc["first"], int(doc.get("calls", 0)), doc["until"]))
            else:
                places.append(Place(LimitType(tail[0]), int(tail[1:]), doc.get("holder"), doc["until"]))
        return KeyState(places, waiters)

    def take_places(
        self, key: str, kind: LimitType, holder: str, asks: list[tuple[int, dt.datetime]], now: dt.datetime
    ) -> list[int]:
        ops: list[Any] = [
            UpdateOne(
                {"_id": place_id(key, kind, number), "until": {"$lte": now}},
                {"$set": {"holder": holder, "until": until, "expires": until + KEPT}},
                upsert=True,
            )
            for number, until in asks
        ]
        if not ops:
            return []
        refused: set[int] = set()
        try:
            self.limits.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):  # only a taken place's E11000 is an answer
                raise
            refused = {int(e["index"]) for e in errors}
        return [number for i, (number, _) in enumerate(asks) if i not in refused]

    def release_places(self, key: str, holder: str, numbers: list[int], now: dt.datetime) -> int:
        query = {"_id": {"$in": [place_id(key, LimitType.CONCURRENCY, i) for i in numbers]}, "holder": holder}
        update = {"$set": {"until": now, "expires": now + KEPT}, "$unset": {"holder": ""}}
        return self.limits.bulk_write([UpdateMany(query, update)]).matched_count if numbers else 0

    def settle_places(self, key: str, holder: str, settles: list[tuple[int, dt.datetime]]) -> int:
        by_until: dict[dt.datetime, list[str]] = {}  # (one write for the places settled to one time)
        for n, until in settles:
            by_until.setdefault(until, []).append(place_id(key, LimitType.RATE, n))
        ops = [
            UpdateMany(
                {"_id": {"$in": part}, "holder": holder, "until": {"$gt": until}},
                {"$set": {"until": until, "expires": until + KEPT}},
            )
            for until, ids in by_until.items()
            for part in chunks(ids)
        ]
        return self.limits.bulk_write(ops, ordered=False).modified_count if ops else 0

    def renew_places(
        self, holder: str, places: list[tuple[str, int]], until: dt.datetime
    ) -> set[tuple[str, int]]:
        by_id = {place_id(key, LimitType.CONCURRENCY, i): (key, i) for key, i in places}
        kept: set[str] = set()
        for part in chunks(list(by_id)):
            query = {"_id": {"$in": part}, "holder": holder}
            update = {"$set": {"until": until, "expires": until + KEPT}}
            matched = self.limits.bulk_write([UpdateMany(query, update)]).matched_count
            if matched == len(part):
                kept.update(part)
            else:
                kept.update(d["_id"] for d in self.limits.find(query, {"_id": 1}))
        return {place for pid, place in by_id.items() if pid not in kept}

    def put_waiting(
        self,
        key: str,
        kind: LimitType,
        holder: str,
        first: dt.datetime | None,
        calls: int,
        until: dt.datetime,
    ) -> None:
        wid = waiter_id(key, kind, holder)
        if first is None:
            self.limits.bulk_write([DeleteOne({"_id": wid})])
            return
        entry = {"first": first, "calls": calls, "until": until, "expires": until + KEPT}
        self.limits.update_one({"_id": wid}, {"$set": entry}, upsert=True)
