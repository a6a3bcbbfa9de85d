"""The only module that talks to MongoDB (pymongo): every query and write lambdaop makes.

Collections and why they look as they do (the embedded engine rewrites every
index entry of a document on every update, ~1-3 ms per update, while an
inserted index entry costs ~0.1 ms; measured in benchmarks/store_indexes.py):

- `objects`: one document per Task or TaskSet: identity, spec, `state`,
  `progress`, the last call, `due` while it waits for a call, and `fence`,
  which every write increments. Indexes: `by_state` for the lists and `due`
  (sparse) for the loop, nothing else: the hot path writes a document once
  per call (its result), and every index costs ~0.5 ms on that write.
- `names` (`_id` = owner, kind and name) and `listing` (`_id` = object id,
  indexed by kind): written once when an object is created, never updated.
  They keep names unique and page everybody's objects without burdening
  the updates of `objects`.
- `leases`: which process holds which object, `{_id: object id, owner,
  until}`: at most one lease per object, by construction. Claiming ahead
  inserts lease documents (~0.1 ms each; no secondary index, the collection
  only ever holds the work of the next seconds), so it never rewrites `objects`.
- `attempts`: the call history, one small document per call (`o` = object id).
- `counters`: objects per state, per owner and kind, in one slot per process
  (so no two processes ever write the same counter document), folded into
  slot "0" when a process is gone (`processes` holds the heartbeats).
- `users`.

Rules every writer follows (several processes may share one database):

1. A claim is one transaction inserting lease documents; whatever it holds is
   read back afterwards, so the loop never acts on a version older than its claim.
2. Every state change goes through `commit`: one transaction per batch that
   writes each object conditionally on `{_id, fence}`, moves the counters in
   the writer's own slot, appends history, and proves the writer still holds
   its lease (by deleting or updating its lease document). A change from
   outside the loop (`guard`) inserts and removes a lease for the object in
   the same transaction, so it can never slip between another process's
   claim and its call.
3. Transactions never wait: a write conflict (another transaction holds the
   document, perhaps one of a process that died) is answered at once and
   retried later, so a dead process never stalls the living.
4. Filters put `_id` first; no `find_one_and_update`; no counts over collections.
5. A write of several documents to a collection that transactions write runs in a
   transaction of its own. Outside one, the embedded server retries a conflicting
   multi-document write without end while holding the collection, and the
   transaction it waits for can then never finish: the whole store stops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, DeleteOne, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from lambdaop.core.errors import Conflict, StoreUnavailable
from lambdaop.store.embedded import EmbeddedServer

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ATTEMPTS_KEPT = 200
STATES = ("scheduled", "running", "completed", "failed", "cancelled")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
BASE_SLOT = "0"


def new_id() -> str:
    """A new object id: time-ordered, so newest-first lists page on `_id`."""
    return str(ObjectId())


# --------------------------------------------------------------------------- one transition


@dataclass
class Op:
    """One state transition for `Store.commit`.

    An insert carries `doc`; a change carries `update` (`$set`/`$unset`, the
    fence increment is added) and the `fence` it expects. `lease` names the
    writer's lease when the loop writes a result (`release` drops the object
    from it); `claim` creates a lease holding a new object; `guard` makes a
    change from outside the loop exclusive with every claim.
    """

    id: str
    owner: str
    kind: str
    old_state: str | None
    new_state: str | None
    fence: int | None = None
    update: dict[str, Any] | None = None
    doc: dict[str, Any] | None = None
    leased: bool = False
    release: bool = False
    until: dt.datetime | None = None
    claim_until: dt.datetime | None = None
    guard: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)


# outcomes of an op
OK, STALE, HELD, EXISTS, CONFLICT, ERROR = "ok", "stale", "held", "exists", "conflict", "error"


class _Failed(Exception):
    """Ops of a batch that cannot be written, and why; the rest are tried again."""

    def __init__(self, failed: dict[int, str]) -> None:
        super().__init__(failed)
        self.failed = failed


def _is_conflict(exc: PyMongoError) -> bool:
    if isinstance(exc, OperationFailure) and exc.code in (112, 251, 244, 246, 24):
        return True
    return hasattr(exc, "has_error_label") and exc.has_error_label("TransientTransactionError")


@dataclass
class Counts:
    """Moves of objects between states, kept per owner and for everybody ('*')."""

    deltas: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def move(self, owner: str, kind: str, old: str | None, new: str | None) -> None:
        if old == new:
            return
        for who in (owner, "*"):
            if old is not None:
                self.deltas[(who, kind, old)] = self.deltas.get((who, kind, old), 0) - 1
            if new is not None:
                self.deltas[(who, kind, new)] = self.deltas.get((who, kind, new), 0) + 1

    def ops(self, slot: str) -> list[UpdateOne]:
        return [
            UpdateOne(
                {"_id": f"{who}/{kind}/{state}@{slot}"},
                {"$inc": {"n": n}, "$setOnInsert": {"p": f"{who}/{kind}", "s": state, "slot": slot}},
                upsert=True,
            )
            for (who, kind, state), n in self.deltas.items()
            if n
        ]


# --------------------------------------------------------------------------- the store


class Store:
    """Every MongoDB query lambdaop makes. Thread-safe (pymongo's client is)."""

    def __init__(
        self,
        uri: str,
        database: str = "lambdaop",
        embedded: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        options: dict[str, Any] = {"tz_aware": True, "serverSelectionTimeoutMS": 10000, "appname": "lambdaop"}
        if embedded:
            # retryable writes make the embedded server rebuild a retry table on every write
            options["retryWrites"] = False
        else:
            options["w"] = "majority"
        if username:
            options.update(username=username, password=password, authSource="admin")
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, **options)
        self.db = self.client[database]
        self.objects = self.db["objects"]
        self.leases = self.db["leases"]
        self.attempts = self.db["attempts"]
        self.counters = self.db["counters"]
        self.processes = self.db["processes"]
        self.users = self.db["users"]
        self.sessions = self.db["sessions"]
        self.names = self.db["names"]
        self.listing = self.db["listing"]
        self.embedded = embedded
        self._transactions = True
        self._local = threading.local()
        self._process = ""

    # ----- lifecycle

    def ping(self) -> bool:
        try:
            self.client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.client.admin.command("ping")
                return
            except PyMongoError as exc:
                last = exc
                time.sleep(0.1)
        raise StoreUnavailable(f"the store does not answer: {last}")

    def ensure_indexes(self) -> None:
        objects = self.objects
        # lists page newest first on _id within an equality prefix (filter keys in index order)
        objects.create_index(
            [("owner", ASCENDING), ("kind", ASCENDING), ("state", ASCENDING), ("_id", DESCENDING)],
            name="by_state",
        )
        self.names.create_index([("owner", ASCENDING)], name="by_owner")
        self.listing.create_index([("kind", ASCENDING), ("_id", DESCENDING)], name="by_kind")
        objects.create_index([("due", ASCENDING)], name="due", sparse=True)
        self.attempts.create_index([("o", ASCENDING), ("_id", ASCENDING)], name="by_object")
        self.counters.create_index([("p", ASCENDING)], name="by_prefix")
        self.sessions.create_index([("expires", ASCENDING)], name="expires", expireAfterSeconds=0)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database written by an earlier version up to date (idempotent)."""
        names = {i["name"] for i in self.objects.list_indexes()}
        if "lease_until" in names:
            # calls claimed by the earlier engine were in flight: they become due again now
            now = dt.datetime.now(dt.UTC)
            for doc in self.objects.find({"lease_until": {"$gt": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}}):
                self.objects.update_one(
                    {"_id": doc["_id"]},
                    {
                        "$set": {"due": now, "progress.in_flight": False, "progress.due": now},
                        "$unset": {"lease_owner": "", "lease_until": ""},
                        "$inc": {"fence": 1},
                    },
                )
            self.objects.drop_index("lease_until")
        if "key" in names:  # names and the everybody list moved to their own insert-only collections
            for doc in self.objects.find({"_id": {"$gt": ""}}, {"owner": 1, "kind": 1, "name": 1}):
                with contextlib.suppress(DuplicateKeyError):
                    self.names.insert_one(_name_doc(doc))
                with contextlib.suppress(DuplicateKeyError):
                    self.listing.insert_one({"_id": doc["_id"], "kind": doc["kind"]})
        for retired in ("by_owner", "by_folder", "key", "by_kind"):
            if retired in names:
                self.objects.drop_index(retired)
        if "ids" in {i["name"] for i in self.leases.list_indexes()}:  # an earlier lease layout
            self.leases.drop_index("ids")
        for doc in self.counters.find({"p": {"$exists": False}}):
            parts = str(doc["_id"]).split("/")
            if len(parts) == 3:
                self.counters.update_one(
                    {"_id": doc["_id"]},
                    {"$set": {"p": f"{parts[0]}/{parts[1]}", "s": parts[2], "slot": BASE_SLOT}},
                )

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            with contextlib.suppress(PyMongoError):
                session.end_session()
        self.client.close()

    def identify(self, process: str) -> None:
        """Name this process: its transaction sessions are listed under it, so others can end
        them if it dies inside a transaction (`end_sessions_of`)."""
        self._process = process

    def _session(self) -> ClientSession:
        """This thread's own session (one per thread, reused by every transaction it runs)."""
        session: ClientSession | None = getattr(self._local, "session", None)
        if session is None or session.has_ended:
            session = self.client.start_session()
            self._local.session = session
            if self._process:
                self.processes.update_one(
                    {"_id": self._process}, {"$addToSet": {"sessions": session.session_id}}, upsert=True
                )
        return session

    @contextlib.contextmanager
    def _txn(self) -> Iterator[ClientSession | None]:
        """A transaction, or plain statements on a server without them (logged once)."""
        if not self._transactions:
            yield None
            return
        session = self._session()
        try:
            with session.start_transaction():
                yield session
        except OperationFailure as exc:
            if exc.code == 20 or "Transaction numbers" in str(exc):
                log.error("the store does not support transactions (use a replica set); writing without them")
                self._transactions = False
            raise
        except BaseException:
            if session.in_transaction:
                with contextlib.suppress(PyMongoError):
                    session.abort_transaction()
            raise

    # ----- objects

    def get(self, object_id: str) -> dict[str, Any] | None:
        if not isinstance(object_id, str) or not OBJECT_ID.match(object_id):
            return None  # not an id lambdaop ever made
        return self.objects.find_one({"_id": object_id})

    def fetch(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Whole objects by id (the loop's read after a claim), without a legacy history array."""
        ids = list(ids)
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), 500):
            out += self.objects.find({"_id": {"$in": ids[i : i + 500]}}, {"attempts": 0})
        return out

    def find_by_name(self, owner: str, kind: str, name: str) -> dict[str, Any] | None:
        entry = self.names.find_one({"_id": _name_key(owner, kind, name)})
        return self.objects.find_one({"_id": entry["o"]}) if entry else None

    def find_by_names(self, owner: str, kind: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """Objects of one owner and kind by name, in bounded chunks."""
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(names), 500):
            keys = [_name_key(owner, kind, n) for n in names[i : i + 500]]
            ids = [e["o"] for e in self.names.find({"_id": {"$in": keys}}, {"o": 1})]
            for doc in self.fetch(ids):
                found[doc["name"]] = doc
        return found

    def objects_from_folder(self, folder: str, owners: Iterable[str]) -> list[dict[str, Any]]:
        """Every object these owners applied from a specs folder (start-up convergence)."""
        fields = {
            "owner": 1, "kind": 1, "name": 1, "source": 1, "annotations": 1, "pruned": 1, "state": 1, "manager": 1,
        }  # fmt: skip
        out = []
        for owner in sorted(set(owners)):
            ids = [e["o"] for e in self.names.find({"owner": owner}, {"o": 1})]
            for i in range(0, len(ids), 500):
                for doc in self.objects.find({"_id": {"$in": ids[i : i + 500]}}, fields):
                    if (doc.get("source") or {}).get("folder") == folder:
                        out.append(doc)
        return out

    def history(self, doc: dict[str, Any], limit: int = ATTEMPTS_KEPT) -> list[dict[str, Any]]:
        """An object's calls, oldest first (an earlier version kept them in the object itself)."""
        newest = list(self.attempts.find({"o": doc["_id"]}, {"o": 0}).sort("_id", DESCENDING).limit(limit))
        newest.reverse()
        legacy = doc.get("attempts") or []
        if legacy and "attempts" in doc:
            return (legacy + newest)[-limit:]
        return newest

    def prune_history(self, object_ids: Iterable[str], keep: int = ATTEMPTS_KEPT) -> int:
        """Delete all but the newest `keep` calls of each object; answers how many went."""
        removed = 0
        for oid in object_ids:
            old = list(
                self.attempts.find({"o": oid}, {"_id": 1}).sort("_id", DESCENDING).skip(keep).limit(5000)
            )
            if old:
                with self._txn() as s:
                    ids = [d["_id"] for d in old]
                    removed += self.attempts.delete_many({"_id": {"$in": ids}}, session=s).deleted_count
        return removed

    # ----- the loop's reads

    def due_between(self, after: dt.datetime | None, until: dt.datetime, limit: int) -> list[dict[str, Any]]:
        """Objects waiting for a call due in (after, until], earliest first: id, due and fence only."""
        rng: dict[str, Any] = {"$lte": until}
        if after is not None:
            rng["$gt"] = after
        return list(
            self.objects.find({"due": rng}, {"due": 1, "fence": 1}).sort("due", ASCENDING).limit(limit)
        )

    def holders(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The lease of each of these objects (those nobody holds are left out)."""
        ids = list(ids)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            for lease in self.leases.find({"_id": {"$in": ids[i : i + 500]}}):
                out[lease["_id"]] = lease
        return out

    # ----- leases

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
                    if not _is_conflict(exc):
                        raise
                    if len(part) > 1:  # find the objects an open transaction holds: split
                        half = len(part) // 2
                        todo += [part[:half], part[half:]]
                    break
        return held

    def release(self, owner: str, ids: list[str]) -> None:
        """End this owner's leases of these objects (they are free to claim again)."""
        with self._txn() as s:
            self.leases.delete_many({"_id": {"$in": ids}, "owner": owner}, session=s)

    def _in_parts(
        self, ids: list[str], write: Callable[[list[str], ClientSession | None], _T]
    ) -> Iterator[tuple[list[str], _T]]:
        """Run `write` on parts of at most 500 ids, each in a transaction of its own.

        A part that meets a conflict (a transaction is writing one of its documents)
        is halved and tried again; a single id still in conflict is left out, for the
        next pass of whatever called.
        """
        todo = [ids[i : i + 500] for i in range(0, len(ids), 500)]
        while todo:
            part = todo.pop()
            try:
                with self._txn() as s:
                    value = write(part, s)
            except PyMongoError as exc:
                if not _is_conflict(exc):
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

    def expired_leases(self, now: dt.datetime, limit: int = 5000) -> list[dict[str, Any]]:
        return list(self.leases.find({"until": {"$lt": now}}).limit(limit))

    def drop_leases(self, holder: Any, ids: list[str], now: dt.datetime) -> set[str]:
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
                self.leases.delete_many({"_id": {"$in": ids}, "owner": {"$ne": owner}}, session=s)
        return ids

    # ----- the one transition path

    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[str]:
        """Write state transitions in one transaction each batch; answers one outcome per op.

        OK, or STALE (the fence moved, or the writer's lease is gone), HELD (a
        guarded change of an object a lease holds), EXISTS (an insert whose
        name is taken), CONFLICT (an open transaction holds the object: try
        again later), ERROR (the store refused the value). Failing ops never
        affect the others: the batch is written again without them.
        """
        outcomes: list[str | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        for _ in range(len(ops) + 2):
            if not pending:
                break
            try:
                self._commit([ops[i] for i in pending], owner, slot, now)
                for i in pending:
                    outcomes[i] = OK
                pending = []
            except _Failed as exc:
                for local, why in exc.failed.items():
                    outcomes[pending[local]] = why
                pending = [i for j, i in enumerate(pending) if j not in exc.failed]
            except PyMongoError as exc:
                if len(pending) == 1:
                    outcomes[pending[0]] = CONFLICT if _is_conflict(exc) else ERROR
                    if not _is_conflict(exc):
                        log.error("object %s: the store refused the write: %s", ops[pending[0]].id, exc)
                    pending = []
                else:  # find the op at fault: halves, each on its own
                    half = len(pending) // 2
                    first = self.commit([ops[i] for i in pending[:half]], owner, slot, now)
                    second = self.commit([ops[i] for i in pending[half:]], owner, slot, now)
                    for i, why in zip(pending, first + second, strict=True):
                        outcomes[i] = why
                    pending = []
            except Exception as exc:  # a value BSON cannot hold, and the like
                if len(pending) == 1:
                    log.error("object %s: cannot be written: %s", ops[pending[0]].id, exc)
                    outcomes[pending[0]] = ERROR
                    pending = []
                else:
                    half = len(pending) // 2
                    first = self.commit([ops[i] for i in pending[:half]], owner, slot, now)
                    second = self.commit([ops[i] for i in pending[half:]], owner, slot, now)
                    for i, why in zip(pending, first + second, strict=True):
                        outcomes[i] = why
                    pending = []
        return [o or CONFLICT for o in outcomes]

    def _commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> None:
        inserts = [(i, op) for i, op in enumerate(ops) if op.doc is not None]
        changes = [(i, op) for i, op in enumerate(ops) if op.doc is None]
        guards = [(i, op) for i, op in changes if op.guard]
        counts = Counts()
        for op in ops:
            counts.move(op.owner, op.kind, op.old_state, op.new_state)
        records = [{**r, "o": op.id} for op in ops for r in op.attempts]
        released = [(i, op) for i, op in changes if op.leased and op.release]
        kept = [(i, op) for i, op in changes if op.leased and not op.release]
        claims = [
            {"_id": op.id, "owner": owner, "until": op.claim_until} for _, op in inserts if op.claim_until
        ]
        with self._txn() as s:
            if inserts:
                try:  # the name first: it is what must be unique
                    self.names.insert_many([_name_doc(op.doc) for _, op in inserts if op.doc], ordered=True, session=s)  # fmt: skip
                except BulkWriteError as exc:
                    first = exc.details["writeErrors"][0]
                    raise _Failed({inserts[first["index"]][0]: EXISTS if first.get("code") == 11000 else ERROR}) from None  # fmt: skip
                self.objects.insert_many([op.doc for _, op in inserts], ordered=True, session=s)  # type: ignore[misc]
                self.listing.insert_many([{"_id": op.doc["_id"], "kind": op.doc["kind"]} for _, op in inserts if op.doc], session=s)  # fmt: skip
                if claims:
                    self.leases.insert_many(claims, ordered=False, session=s)
            if released:
                ids = [op.id for _, op in released]
                if self.leases.delete_many(
                    {"_id": {"$in": ids}, "owner": owner}, session=s
                ).deleted_count != len(ids):
                    raise _Failed(self._lost(released, owner))
            for i, op in kept:  # the next step is due soon: the lease goes on
                until = op.until or now
                if self.leases.update_one({"_id": op.id, "owner": owner}, {"$set": {"until": until}}, session=s).matched_count != 1:  # fmt: skip
                    raise _Failed({i: STALE})
            if guards:
                try:
                    self.leases.insert_many(
                        [{"_id": op.id, "owner": owner, "until": now, "guard": True} for _, op in guards],
                        ordered=True,
                        session=s,
                    )
                except BulkWriteError as exc:
                    first = exc.details["writeErrors"][0]
                    raise _Failed({guards[first["index"]][0]: HELD}) from None
            if changes:
                writes = [UpdateOne({"_id": op.id, "fence": op.fence}, _with_fence_inc(op.update or {})) for _, op in changes]  # fmt: skip
                result = self.objects.bulk_write(writes, ordered=False, session=s)
                if result.matched_count != len(changes):
                    raise _Failed(self._stale([(i, op) for i, op in changes]))
            if guards:
                self.leases.delete_many(
                    {"_id": {"$in": [op.id for _, op in guards]}, "guard": True}, session=s
                )
            if records:
                self.attempts.insert_many(records, ordered=False, session=s)
            counter_ops = counts.ops(slot)
            if counter_ops:
                self.counters.bulk_write(counter_ops, ordered=False, session=s)

    def _lost(self, released: list[tuple[int, Op]], owner: str) -> dict[int, str]:
        """Which of these leases are no longer the writer's (read after the transaction failed)."""
        mine = {d["_id"] for d in self.leases.find({"_id": {"$in": [op.id for _, op in released]}, "owner": owner}, {"_id": 1})}  # fmt: skip
        failed = {i: STALE for i, op in released if op.id not in mine}
        return failed or {released[0][0]: STALE}

    def _stale(self, changes: list[tuple[int, Op]]) -> dict[int, str]:
        fences = {d["_id"]: d.get("fence") for d in self.objects.find({"_id": {"$in": [op.id for _, op in changes]}}, {"fence": 1})}  # fmt: skip
        failed = {i: STALE for i, op in changes if fences.get(op.id) != op.fence}
        return failed or {changes[0][0]: STALE}

    # ----- counters and processes

    def heartbeat(self, slot: str, until: dt.datetime, info: dict[str, Any]) -> None:
        self.processes.update_one({"_id": slot}, {"$set": {"until": until, **info}}, upsert=True)

    def lapsed(self, now: dt.datetime) -> list[str]:
        """Processes whose heartbeat stopped while they had transaction sessions."""
        query = {"until": {"$lt": now}, "sessions.0": {"$exists": True}}
        return [str(d["_id"]) for d in self.processes.find(query, {"_id": 1})]

    def end_sessions_of(self, process: str, now: dt.datetime) -> bool:
        """Abort the open transactions of a process whose heartbeat stopped (it died inside one,
        holding what that transaction wrote); answers whether it did. Without this the store
        keeps them until its transaction lifetime (60 s by default) runs out."""
        doc = self.processes.find_one({"_id": process})
        if doc is None or doc.get("until", now) >= now or not doc.get("sessions"):
            return False
        with contextlib.suppress(PyMongoError):
            self.client.admin.command("killSessions", [{"id": s["id"]} for s in doc["sessions"]])
        self.processes.update_one({"_id": process}, {"$set": {"sessions": []}})
        log.warning("ended the open transactions of stopped process %s", process)
        return True

    def fold_slots(self, now: dt.datetime, keep: str, everyone_else: bool = False) -> int:
        """Fold the counter slots of processes gone for 2 minutes (or of everyone but `keep`) into slot 0.

        Answers how many slots were folded. A slot still written by an open
        transaction is left for a later pass.
        """
        if everyone_else:
            dead = {d["_id"] for d in self.processes.find({"_id": {"$ne": keep}}, {"_id": 1})}
            dead |= {d["slot"] for d in self.counters.find({"slot": {"$nin": [keep, BASE_SLOT]}}, {"slot": 1}) if d.get("slot")}  # fmt: skip
        else:
            cutoff = now - dt.timedelta(minutes=2)
            dead = {d["_id"] for d in self.processes.find({"until": {"$lt": cutoff}}, {"_id": 1})}
        folded = 0
        for slot in sorted(dead - {keep, BASE_SLOT}):
            try:
                with self._txn() as s:
                    docs = list(self.counters.find({"slot": slot}, session=s))
                    ops: list[Any] = [
                        UpdateOne(
                            {"_id": f"{d['p']}/{d['s']}@{BASE_SLOT}"},
                            {"$inc": {"n": d.get("n", 0)}, "$setOnInsert": {"p": d["p"], "s": d["s"], "slot": BASE_SLOT}},
                            upsert=True,
                        )
                        for d in docs
                        if d.get("n")
                    ]  # fmt: skip
                    ops += [DeleteOne({"_id": d["_id"]}) for d in docs]
                    if ops:
                        self.counters.bulk_write(ops, ordered=True, session=s)
                    self.processes.delete_one({"_id": slot}, session=s)
                folded += 1
            except PyMongoError as exc:
                if not _is_conflict(exc):
                    raise
        return folded

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        """Objects per state, from the maintained counters (never a collection count)."""
        out: dict[str, int] = {}
        for doc in self.counters.find({"p": f"{owner or '*'}/{kind}"}, {"s": 1, "n": 1}):
            out[doc["s"]] = out.get(doc["s"], 0) + int(doc.get("n", 0))
        return {k: max(0, v) for k, v in out.items()}

    # ----- users

    def get_user(self, name: str) -> dict[str, Any] | None:
        return self.users.find_one({"_id": name})

    def insert_user(self, doc: dict[str, Any]) -> None:
        try:
            self.users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"user {doc['_id']!r} already exists") from None

    def update_user(self, name: str, update: dict[str, Any]) -> bool:
        return self.users.update_one({"_id": name}, update).matched_count == 1

    def delete_user(self, name: str) -> bool:
        return self.users.delete_one({"_id": name}).deleted_count == 1

    def list_users(self, limit: int = 1000) -> list[dict[str, Any]]:
        return list(
            self.users.find({"_id": {"$gt": ""}}, {"password": 0}).sort("_id", ASCENDING).limit(limit)
        )

    def any_user(self) -> bool:
        return self.users.find_one({"_id": {"$gt": ""}}, {"_id": 1}) is not None

    # ----- lists

    def list_objects(
        self, kind: str, owner: str | None, state: str | None, before: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Newest first, one page; `before` is the last id of the previous page.

        One owner's objects in every state are the newest of one bounded page per state.
        """
        if owner is not None and state is None:
            merged = [d for s in STATES for d in self.list_objects(kind, owner, s, before, limit)]
            return sorted(merged, key=lambda d: d["_id"], reverse=True)[:limit]
        if owner is None:  # everybody's: the insert-only listing, newest first
            if state is not None:
                raise ValueError("a state filter needs an owner")
            flt: dict[str, Any] = {"kind": kind}
            if before:
                flt["_id"] = {"$lt": before}
            ids = [d["_id"] for d in self.listing.find(flt, {"_id": 1}).sort("_id", DESCENDING).limit(limit)]
            return sorted(self.fetch(ids), key=lambda d: d["_id"], reverse=True)
        flt = {"owner": owner, "kind": kind, "state": state}
        if before:
            flt["_id"] = {"$lt": before}
        return list(self.objects.find(flt, {"attempts": 0}).sort("_id", DESCENDING).limit(limit))


def _name_key(owner: str, kind: str, name: str) -> str:
    return f"{owner}\x1f{kind}\x1f{name}"


def _name_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {"_id": _name_key(doc["owner"], doc["kind"], doc["name"]), "o": doc["_id"], "owner": doc["owner"]}


def _with_fence_inc(update: dict[str, Any]) -> dict[str, Any]:
    update = dict(update)
    inc = dict(update.get("$inc", {}))
    inc["fence"] = 1
    update["$inc"] = inc
    return update


def start_embedded(server: EmbeddedServer) -> str:
    """Start the embedded server with authentication; at its first start (or on data an earlier
    version kept without it) make its credential first: the user is created while the server
    runs without authentication for a moment, on a random port only this process knows."""
    if server.credential() is None:
        server.start(auth=False)
        try:
            user, password = server.new_credential()
            client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                server.anonymous_uri, retryWrites=False, serverSelectionTimeoutMS=10000
            )
            try:
                try:
                    client.admin.command("createUser", user, pwd=password, roles=["root"])
                except OperationFailure as exc:
                    if exc.code != 51003:  # the user exists (a start interrupted before): new password
                        raise
                    client.admin.command("updateUser", user, pwd=password)
            finally:
                client.close()
            server.save_credential()
        finally:
            server.stop()
    return server.start(auth=True)


def connect(
    uri: str,
    database: str = "lambdaop",
    embedded: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Store:
    """A ready store on `uri` with its indexes in place."""
    store = Store(uri, database, embedded=embedded, username=username, password=password)
    try:
        store.wait_ready()
        store.ensure_indexes()
    except Exception:
        store.close()
        raise
    return store
