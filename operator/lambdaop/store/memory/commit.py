"""The in-memory store's commit path: a batch written all or nothing, as on MongoDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from lambdaop.store.contract import (
    Op,
    WriteOutcome,
    batch_conflicts,
    created_fences,
    run_key,
)
from lambdaop.store.memory.base import (
    _GONE,
    STALE,
    Tables,
    _bson,
    _name_key,
    _update_of,
    _updated,
    log,
)


class _Failed(Exception):
    """Ops of a batch that cannot be written, and why (or how to find out once the batch is undone)."""

    def __init__(self, failed: dict[int, WriteOutcome] | Callable[[], dict[int, WriteOutcome]]) -> None:
        self.failed = failed


class MemoryCommits(Tables):
    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[WriteOutcome]:
        """Batches all or nothing, as on MongoDB: written again without the ops at fault, or halved."""
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
                assert isinstance(exc.failed, dict)
                for local, why in exc.failed.items():
                    outcomes[pending[local]] = why
                pending = [i for j, i in enumerate(pending) if j not in exc.failed]
            except Exception as exc:  # a value the store cannot hold, or an update it refuses
                if len(pending) == 1:
                    log.error("object %s: cannot be written: %s", ops[pending[0]].id, exc)
                    outcomes[pending[0]] = WriteOutcome.ERROR
                else:
                    half = len(pending) // 2
                    first = self.commit([ops[i] for i in pending[:half]], owner, slot, now)
                    second = self.commit([ops[i] for i in pending[half:]], owner, slot, now)
                    for i, why in zip(pending, first + second, strict=True):
                        outcomes[i] = why
                pending = []
        return [o or WriteOutcome.CONFLICT for o in outcomes]

    def _commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> None:
        """One batch, undone in full when it fails (why it failed is read once it is undone)."""
        clash = batch_conflicts(ops)
        if clash:
            raise _Failed(clash)
        undo = self._undo = []
        try:
            self._write(ops, owner, slot, _bson(now))
        except BaseException as exc:
            for table, key, old in reversed(undo):
                if old is _GONE:
                    table.pop(key, None)
                else:
                    table[key] = old
            if isinstance(exc, _Failed) and callable(exc.failed):
                exc.failed = exc.failed()
            raise
        finally:
            self._undo = None

    def _write(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> None:
        """MongoDB's commit step by step: names, objects, claims, leases, guards, changes, history, counters."""
        inserts = [(i, op, op.doc) for i, op in enumerate(ops) if op.doc is not None]
        changes = [(i, op) for i, op in enumerate(ops) if op.doc is None]
        guards = [(i, op) for i, op in changes if op.guard]
        released = [(i, op) for i, op in changes if op.leased and op.release]
        kept = [(i, op) for i, op in changes if op.leased and not op.release]
        deltas: dict[tuple[str, str, str], int] = {}
        for op in [op for op in ops if op.old_state != op.new_state]:  # per owner, and for everybody ('*')
            for moved, n in [((who, op.kind, s), n) for who in (op.owner, "*") for s, n in ((op.old_state, -1), (op.new_state, 1)) if s is not None]:  # fmt: skip
                deltas[moved] = deltas.get(moved, 0) + n
        names = [(_name_key(d["owner"], d["kind"], d["name"]), d) for _, _, d in inserts]
        for (i, _, _), (key, d) in zip(inserts, names, strict=True):  # the name first: it must be unique
            if key in self._names:
                raise _Failed({i: WriteOutcome.EXISTS})
            self._put(self._names, key, {"_id": key, "o": d["_id"], "owner": d["owner"], "w": d["owner"], "k": d["kind"], "n": d["name"]})  # fmt: skip
        for _, _, d in inserts:
            if d["_id"] in self._objects or d["_id"] in self._listing:
                raise KeyError(f"duplicate key: {d['_id']!r}")
            stored = _bson(d)
            self._put(self._objects, d["_id"], {"_id": stored.pop("_id"), **stored})
            self._put(self._listing, d["_id"], d["kind"])
        for _, op, _ in inserts:
            if op.claim_until and op.id in self._leases:
                raise KeyError(f"duplicate key: {op.id!r}")
            if op.claim_until:
                self._put(self._leases, op.id, {"_id": op.id, "owner": owner, "until": _bson(op.claim_until)})
        if released:
            gone = [o for o in dict.fromkeys(op.id for _, op in released) if self._leased_by(o, owner)]
            for oid in gone:
                self._put(self._leases, oid)
            if len(gone) != len(released):
                raise _Failed(lambda: {i: STALE for i, op in released if not self._leased_by(op.id, owner)} or {released[-1][0]: STALE})  # fmt: skip
        for i, op in kept:  # the next step is due soon: the lease goes on
            if not self._leased_by(op.id, owner):
                raise _Failed({i: WriteOutcome.STALE})
            self._put(self._leases, op.id, {**self._leases[op.id], "until": _bson(op.until) if op.until else now})  # fmt: skip
        for i, op in guards:
            if op.id in self._leases:
                raise _Failed({i: WriteOutcome.HELD})
            self._put(self._leases, op.id, {"_id": op.id, "owner": owner, "until": now, "guard": True})
        updates = [(op, _update_of(op.change)) for _, op in changes]
        unmatched, refused = False, list[Exception]()  # an update the store refuses outweighs a moved fence
        for op, (sets, unsets, pushes) in updates:
            doc = self._objects.get(op.id)
            if doc is None or (not op.leased and doc.get("fence") != op.fence):  # a leased one: by id
                unmatched = True
                continue
            try:
                self._put(self._objects, op.id, _updated(doc, sets, unsets, pushes))
            except (TypeError, ValueError) as exc:
                refused.append(exc)
        if refused:
            raise refused[0]
        if unmatched:
            created = created_fences(ops)

            def stale(op: Op) -> bool:
                fence = (self._objects.get(op.id) or {}).get("fence", created.get(op.id))
                return fence is None if op.leased else fence != op.fence

            raise _Failed(lambda: {i: STALE for i, op in changes if stale(op)} or {changes[-1][0]: STALE})
        for _, op in guards:
            if self._leases.get(op.id, {}).get("guard") is True:
                self._put(self._leases, op.id)
        for op in ops:
            for r in op.attempts:
                self._sequence += 1
                record = _bson({"_id": self._sequence, **r, "o": op.id})
                self._put(self._attempts, op.id, [*self._attempts.get(op.id, []), (self._sequence, record)])
        for op in ops:
            if op.run is not None:
                key, _ = run_key(op.run)
                self._put(self._runs, key, _bson({**op.run, "_id": key}))
        for (who, kind, state), n in deltas.items():
            if n:
                self._count(f"{who}/{kind}/{state}@{slot}", f"{who}/{kind}", state, slot, n)
