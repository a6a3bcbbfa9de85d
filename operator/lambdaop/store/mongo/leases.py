"""The loop's reads and its leases (MongoDB): due work, claims, renewals, releases, the sweep;
and the dashboard's reads of what is due and what is paused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.errors import BulkWriteError, PyMongoError

from lambdaop.store.contract import Due, DueEntry, Lease
from lambdaop.store.mongo.base import Base, chunks, is_conflict

_T = TypeVar("_T")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PAUSED_READ = 300  # entries one read of the paused index returns at most


def _due_entry(doc: dict[str, Any]) -> DueEntry:
    """An upcoming entry: identity, name, due, and whether it recurs (its runs need it whole)."""
    spec = doc.get("spec")
    recurring = isinstance(spec, dict) and "schedule" in spec
    return DueEntry(doc["_id"], doc["kind"], doc["name"], doc["due"], recurring, doc.get("display"))


def _lease(doc: dict[str, Any]) -> Lease:
    return Lease(doc["_id"], str(doc.get("owner")), doc["until"], bool(doc.get("guard")))


class Leases(Base):
    def due_between(self, after: dt.datetime | None, until: dt.datetime, limit: int) -> list[Due]:
        """Objects waiting for a call due in (after, until], earliest first: id, due and fence only."""
        rng: dict[str, Any] = {"$lte": until}
        if after is not None:
            rng["$gt"] = after
        found = self.objects.find({"due": rng}, {"due": 1, "fence": 1}).sort("due", ASCENDING).limit(limit)
        return [Due(d["_id"], d["due"], d.get("fence", 0)) for d in found]

    def upcoming(
        self,
        owner: str,
        after: dt.datetime,
        until: dt.datetime,
        limit: int,
        examine: int = 1000,
        widest: dt.timedelta | None = None,
        latest_first: bool = False,
    ) -> tuple[list[DueEntry], bool]:
        """The owner's objects due in (after, until], read as windows of the due index: from one
        second, four times wider after a window that held few, narrower after one that held many,
        never wider than `widest`; until `limit` are found or about `examine` were read. The
        embedded server reads every entry of a range, so a window costs what it holds: `widest`
        keeps one window from taking in all that is due in the hour at once. `latest_first`
        reads back from `until` (late calls: the crowd of them is the most recent)."""
        fields = {"owner": 1, "kind": 1, "name": 1, "display": 1, "due": 1, "spec.schedule": 1}
        out: list[DueEntry] = []
        read, width = 0, dt.timedelta(seconds=1)
        edge = until if latest_first else after  # how far the windows have come
        while after < edge if latest_first else edge < until:
            if len(out) >= limit or read >= examine:
                break
            lo, hi = (max(after, edge - width), edge) if latest_first else (edge, min(until, edge + width))
            found = list(self.objects.find({"due": {"$gt": lo, "$lte": hi}}, fields))
            read += len(found)
            mine = (_due_entry(d) for d in found if d.get("owner") == owner)
            out += sorted(mine, key=lambda e: e.due, reverse=latest_first)
            edge = lo if latest_first else hi
            wanted = max(1, limit - len(out))
            grow = 4.0 if len(found) * 4 <= wanted else max(0.25, wanted / len(found))
            width = max(dt.timedelta(seconds=1), width * grow)
            if widest is not None:
                width = min(widest, width)
        reached = edge <= after if latest_first else edge >= until
        return out[:limit], reached and len(out) <= limit

    def paused(self, owner: str, now: dt.datetime, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The owner's suspended objects, read as windows of the `paused` index going back from
        `now` (an hour, a day, a month, then all before), each bounded to a few hundred entries:
        a read costs what the window holds, however many objects are stored."""
        fields = {"owner": 1, "kind": 1, "name": 1, "display": 1, "progress": 1, "paused": 1}
        edges = [now + dt.timedelta(days=1), now - dt.timedelta(hours=1), now - dt.timedelta(days=1), now - dt.timedelta(days=30), EPOCH]  # fmt: skip
        out: list[dict[str, Any]] = []
        more = False
        for hi, lo in zip(edges, edges[1:], strict=False):
            found = list(self.objects.find({"paused": {"$gte": lo, "$lt": hi}}, fields).limit(PAUSED_READ))
            mine = sorted((d for d in found if d.get("owner") == owner), key=lambda d: (d["paused"], d["_id"]), reverse=True)  # fmt: skip
            out += mine
            if len(found) >= PAUSED_READ:  # a window fuller than one read: more may be in it
                more = True
                break
            if len(out) > limit:
                break
        return out[:limit], more or len(out) > limit

    def holders(self, ids: Iterable[str]) -> dict[str, Lease]:
        """The lease of each of these objects (those nobody holds are left out)."""
        ids = list(ids)
        out: dict[str, Lease] = {}
        for part in chunks(ids):
            for doc in self.leases.find({"_id": {"$in": part}}):
                out[doc["_id"]] = _lease(doc)
        return out

    def claim(self, owner: str, until: dt.datetime, ids: list[str]) -> set[str]:
        """Hold these objects until `until`; answers those now held.

        Objects another lease holds are left out. One that an unfinished
        transaction is writing (a conflict) is left for a later claim.
        """
        held: set[str] = set()
        todo = [list(dict.fromkeys(ids))]
        while todo:
            part = todo.pop()
            for _ in range(3):
                if not part:
                    break
                try:
                    with self._txn() as s:
                        self.leases.insert_many(
                            [{"_id": i, "owner": owner, "until": until} for i in part],
                            ordered=True,
                            session=s,
                        )
                    held.update(part)
                    break
                except BulkWriteError:
                    taken = self.holders(part)
                    part = [i for i in part if i not in taken]
                except PyMongoError as exc:
                    if not is_conflict(exc):
                        raise
                    if len(part) > 1:  # find the objects an open transaction holds: split
                        half = len(part) // 2
                        todo += [part[:half], part[half:]]
                    break
        return held

    def release(self, owner: str, ids: list[str]) -> None:
        """End this owner's leases of these objects (they are free to claim again)."""
        with self._txn() as s:
            for part in chunks(ids):
                self.leases.delete_many({"_id": {"$in": part}, "owner": owner}, session=s)

    def _in_parts(
        self, ids: list[str], write: Callable[[list[str], ClientSession | None], _T]
    ) -> Iterator[tuple[list[str], _T]]:
        """Run `write` on parts of at most IN_CHUNK ids, each in a transaction of its own.

        A part that meets a conflict (a transaction is writing one of its documents)
        is halved and tried again; a single id still in conflict is left out, for the
        next pass of whatever called.
        """
        todo = chunks(ids)
        while todo:
            part = todo.pop()
            try:
                with self._txn() as s:
                    value = write(part, s)
            except PyMongoError as exc:
                if not is_conflict(exc):
                    raise
                if len(part) > 1:
                    todo += [part[: len(part) // 2], part[len(part) // 2 :]]
                continue
            yield part, value

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> set[str]:
        """Extend this owner's leases; answers the objects whose lease is gone (taken over).

        A lease in conflict is not reported lost: the next renewal tries it again.
        """

        def extend(part: list[str], s: ClientSession | None) -> int:
            query = {"_id": {"$in": part}, "owner": owner}
            return self.leases.update_many(query, {"$set": {"until": until}}, session=s).matched_count

        lost: set[str] = set()
        for part, matched in self._in_parts(ids, extend):
            if matched != len(part):
                mine = {
                    d["_id"] for d in self.leases.find({"_id": {"$in": part}, "owner": owner}, {"_id": 1})
                }
                lost.update(set(part) - mine)
        return lost

    def expired_leases(self, now: dt.datetime, limit: int = 5000) -> list[Lease]:
        return [_lease(d) for d in self.leases.find({"until": {"$lt": now}}).limit(limit)]

    def drop_leases(self, holder: str, ids: list[str], now: dt.datetime) -> set[str]:
        """Remove these expired leases of `holder` (their objects are free to claim).

        Answers the ids removed: a lease that was renewed or taken meanwhile stays, and
        one in conflict waits for the next sweep.
        """

        def drop(part: list[str], s: ClientSession | None) -> list[str]:
            query = {"_id": {"$in": part}, "owner": holder, "until": {"$lt": now}}
            found = [d["_id"] for d in self.leases.find(query, {"_id": 1}, session=s)]
            if found:
                self.leases.delete_many({**query, "_id": {"$in": found}}, session=s)
            return found

        return {i for _, found in self._in_parts(ids, drop) for i in found}

    def drop_leases_of_others(self, owner: str) -> list[str]:
        """At the start of the only process on an embedded store: every other lease is stale."""
        ids = [d["_id"] for d in self.leases.find({"owner": {"$ne": owner}}, {"_id": 1})]
        if ids:
            with self._txn() as s:
                for part in chunks(ids):
                    self.leases.delete_many({"_id": {"$in": part}, "owner": {"$ne": owner}}, session=s)
        return ids
