"""The one transition path (MongoDB): every state change, insert and history record of a batch."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from lambdaop.core.labels import label_entries
from lambdaop.store.contract import Mutation, Op, WriteOutcome, batch_conflicts, created_fences
from lambdaop.store.mongo import directory
from lambdaop.store.mongo.base import Base, chunks, is_conflict, unavailable
from lambdaop.store.mongo.objects import listing_doc, name_doc
from lambdaop.store.mongo.runs import run_entry

log = logging.getLogger("lambdaop.store")


class _Failed(Exception):
    """Ops of a batch that cannot be written, and why; the rest are tried again."""

    def __init__(self, failed: dict[int, WriteOutcome]) -> None:
        super().__init__(failed)
        self.failed = failed


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


def update_of(change: Mutation | None) -> dict[str, Any]:
    """The MongoDB update of a change, with the fence moved on."""
    update: dict[str, Any] = {"$inc": {"fence": 1}}
    if change is None:
        return update
    sets = change.sets()
    if sets:
        update["$set"] = sets
    unsets = change.unsets()
    if unsets:
        update["$unset"] = dict.fromkeys(unsets, "")
    pushes = change.pushes()
    if pushes:
        update["$push"] = {name: {"$each": items, "$slice": -keep} for name, (items, keep) in pushes.items()}
    return update


def _filter(op: Op) -> dict[str, Any]:
    """Which stored object a change writes. A write of the loop under its lease goes by id alone:
    the lease excludes every other writer, the loop writes one object's changes one at a time, and
    the embedded server plans a filter of `_id` alone in a third less time."""
    return {"_id": op.id} if op.leased else {"_id": op.id, "fence": op.fence}


class Commits(Base):
    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[WriteOutcome]:
        """Write state transitions in one transaction each batch; answers one outcome per op.

        Failing ops never affect the others: the batch is written again without them;
        a batch that fails as a whole is halved until the op at fault is found.
        """
        outcomes: list[WriteOutcome | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        for _ in range(len(ops) + 2):
            if not pending:
                break
            try:
                self._commit([ops[i] for i in pending], owner, slot, now)
                for i in pending:
                    outcomes[i] = WriteOutcome.OK
                pending = []
            except _Failed as exc:
                for local, why in exc.failed.items():
                    outcomes[pending[local]] = why
                pending = [i for j, i in enumerate(pending) if j not in exc.failed]
            except Exception as exc:  # a store error, or a value BSON cannot hold
                if len(pending) == 1:
                    outcomes[pending[0]] = self._single_failure(ops[pending[0]], exc)
                else:  # find the op at fault: halves, each on its own
                    half = len(pending) // 2
                    first = self.commit([ops[i] for i in pending[:half]], owner, slot, now)
                    second = self.commit([ops[i] for i in pending[half:]], owner, slot, now)
                    for i, why in zip(pending, first + second, strict=True):
                        outcomes[i] = why
                pending = []
        return [o or WriteOutcome.CONFLICT for o in outcomes]

    @staticmethod
    def _single_failure(op: Op, exc: Exception) -> WriteOutcome:
        if isinstance(exc, PyMongoError) and (is_conflict(exc) or unavailable(exc)):
            return WriteOutcome.CONFLICT  # tried again while its deadline lasts
        if isinstance(exc, PyMongoError):
            log.error("object %s: the store refused the write: %s", op.id, exc)
        else:
            log.error("object %s: cannot be written: %s", op.id, exc)
        return WriteOutcome.ERROR

    def _commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> None:
        clash = batch_conflicts(ops)
        if clash:
            raise _Failed(clash)
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
                    self.names.insert_many([name_doc(op.doc) for _, op in inserts if op.doc], ordered=True, session=s)  # fmt: skip
                except BulkWriteError as exc:
                    first = exc.details["writeErrors"][0]
                    why = WriteOutcome.EXISTS if first.get("code") == 11000 else WriteOutcome.ERROR
                    raise _Failed({inserts[first["index"]][0]: why}) from None
                self.objects.insert_many([op.doc for _, op in inserts], ordered=True, session=s)  # type: ignore[misc]
                self.listing.insert_many([listing_doc(op.doc) for _, op in inserts if op.doc], session=s)
                self.directory.bulk_write(directory.updates((op.doc for _, op in inserts if op.doc), slot), ordered=False, session=s)  # fmt: skip
                if claims:
                    self.leases.insert_many(claims, ordered=False, session=s)
            if released:
                ids = [op.id for _, op in released]
                ended = sum(self.leases.delete_many({"_id": {"$in": part}, "owner": owner}, session=s).deleted_count for part in chunks(ids))  # fmt: skip
                if ended != len(ids):
                    raise _Failed(self._lost(released, owner))
            for i, op in kept:  # the next step is due soon: the lease goes on
                until = op.until or now
                if self.leases.update_one({"_id": op.id, "owner": owner}, {"$set": {"until": until}}, session=s).matched_count != 1:  # fmt: skip
                    raise _Failed({i: WriteOutcome.STALE})
            if guards:
                try:
                    self.leases.insert_many(
                        [{"_id": op.id, "owner": owner, "until": now, "guard": True} for _, op in guards],
                        ordered=True,
                        session=s,
                    )
                except BulkWriteError as exc:
                    first = exc.details["writeErrors"][0]
                    raise _Failed({guards[first["index"]][0]: WriteOutcome.HELD}) from None
            if changes:
                writes = [UpdateOne(_filter(op), update_of(op.change)) for _, op in changes]
                result = self.objects.bulk_write(writes, ordered=False, session=s)
                if result.matched_count != len(changes):
                    raise _Failed(self._stale(changes, created_fences(ops)))
            relabelled = [(op.id, sets["labels"]) for _, op in changes if op.change is not None and "labels" in (sets := op.change.sets())]  # fmt: skip
            for oid, labels in relabelled:  # the label index of the lists follows
                entries = label_entries(labels)
                self.listing.update_one({"_id": oid}, {"$set": {"l": entries}} if entries else {"$unset": {"l": ""}}, session=s)  # fmt: skip
            if guards:
                for part in chunks([op.id for _, op in guards]):
                    self.leases.delete_many({"_id": {"$in": part}, "guard": True}, session=s)
            if records:
                self.attempts.insert_many(records, ordered=False, session=s)
            runs = [run_entry(op.run) for op in ops if op.run is not None]
            if runs:  # the runs list shows a run as soon as its end is stored
                self.runs.insert_many(runs, ordered=False, session=s)
            counter_ops = counts.ops(slot)
            if counter_ops:
                self.counters.bulk_write(counter_ops, ordered=False, session=s)

    def _lost(self, released: list[tuple[int, Op]], owner: str) -> dict[int, WriteOutcome]:
        """Which of these leases are no longer the writer's (read after the transaction failed)."""
        ids = [op.id for _, op in released]
        mine = {d["_id"] for part in chunks(ids) for d in self.leases.find({"_id": {"$in": part}, "owner": owner}, {"_id": 1})}  # fmt: skip
        failed = {i: WriteOutcome.STALE for i, op in released if op.id not in mine}
        return failed or {released[-1][0]: WriteOutcome.STALE}

    def _stale(self, changes: list[tuple[int, Op]], created: dict[str, int]) -> dict[int, WriteOutcome]:
        """Which changes expected another fence (read after the transaction failed: an object this
        batch creates is not there yet, and starts at its inserted fence)."""
        fences: dict[str, Any] = dict(created)
        ids = [op.id for _, op in changes]
        fences.update({d["_id"]: d.get("fence") for part in chunks(ids) for d in self.objects.find({"_id": {"$in": part}}, {"fence": 1})})  # fmt: skip
        failed = {
            i: WriteOutcome.STALE
            for i, op in changes
            if (op.id not in fences if op.leased else fences.get(op.id) != op.fence)
        }
        return failed or {changes[-1][0]: WriteOutcome.STALE}
