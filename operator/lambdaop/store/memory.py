"""The in-memory implementation of the store contract: everything in this process's dicts.

`MemoryStore` answers every method of `contract.Store` as the MongoDB store
does (same answers, outcomes, order and limits: tests/contract runs one suite
against both). Used by the loop's unit tests, and by anyone who wants a quick
look at lambdaop without a server. Nothing is kept when the process ends.

One `threading.RLock` is held around every method; a "transaction" is the lock
held while a batch of `commit` is written step by step as on MongoDB, journalled
and undone when the batch fails (then written again without the op at fault).
Values are kept as BSON keeps them (copied in and out, datetimes aware UTC
truncated to milliseconds; one it cannot hold makes the op `ERROR`); updates
write whole top-level fields. No other transaction exists: never `CONFLICT`, no
transaction sessions (`lapsed` finds none), no background expiry of web sessions.

May import: the standard library, lambdaop.store.contract and lambdaop.core.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lambdaop.core.errors import Conflict
from lambdaop.core.labels import Selector
from lambdaop.store.contract import (
    ATTEMPTS_KEPT,
    Doc,
    Due,
    Lease,
    Mutation,
    Op,
    Page,
    WriteOutcome,
    batch_conflicts,
    created_fences,
)
from lambdaop.store.ids import OBJECT_ID

log = logging.getLogger("lambdaop.store")

STALE = WriteOutcome.STALE
BASE_SLOT = "0"
FOLDER_FIELDS = ("_id", "owner", "kind", "name", "source", "annotations", "pruned", "state", "manager")
_GONE = object()
Pushes = dict[str, tuple[list[Any], int]]


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


def _bson(value: Any) -> Any:
    """The value as MongoDB keeps and answers it (a copy); TypeError or OverflowError if it cannot."""
    if value is None or isinstance(value, bool | float | bytes):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        return int(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dt.datetime):
        utc = value.replace(tzinfo=None) - (value.utcoffset() or dt.timedelta(0))
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000, tzinfo=dt.UTC)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("documents must have only string keys")
        return {k: _bson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bson(v) for v in value]
    raise TypeError(f"cannot store an object of type {type(value).__name__}")


def _copy(value: Any, leave_out: tuple[str, ...] = ()) -> Any:
    """A stored value handed out (callers may change what they get), without these top-level fields."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items() if k not in leave_out}
    return [_copy(v) for v in value] if isinstance(value, list) else value


def _limit(items: list[Any], limit: int) -> list[Any]:
    """A cursor's `.limit(n)`: 0 means no limit, a negative n is -n."""
    return items if limit == 0 else items[: abs(limit)]


def _before(value: Any, when: dt.datetime) -> bool:  # MongoDB compares a date only with dates
    return isinstance(value, dt.datetime) and value < when


def _name_key(owner: str, kind: str, name: str) -> str:
    return f"{owner}\x1f{kind}\x1f{name}"


def _update_of(change: Mutation | None) -> tuple[Doc, list[str], Pushes]:
    """A change as MongoDB's update of it, refused as MongoDB refuses it (a field written twice)."""
    if change is None:
        return {}, [], {}
    sets = {k: _bson(v) for k, v in change.sets().items()}
    unsets = list(change.unsets())
    pushes = {k: (_bson(list(items)), int(keep)) for k, (items, keep) in change.pushes().items()}
    paths = ["fence", *sets, *unsets, *pushes]  # the fence is incremented
    if len(set(paths)) != len(paths) or any(not p or "." in p for p in paths):  # no field inside another
        raise ValueError(f"an update that writes a field twice, or a field inside another: {paths}")
    return sets, unsets, pushes


def _updated(doc: Doc, sets: Doc, unsets: list[str], pushes: Pushes) -> Doc:
    """The document after `$inc fence`, `$set`, `$unset` and `$push` with `$each` and `$slice: -keep`."""
    if "_id" in unsets or "_id" in pushes or sets.get("_id", doc["_id"]) != doc["_id"]:
        raise ValueError("the field '_id' is immutable")
    new = {**doc, "fence": doc.get("fence", 0) + 1, **sets}
    for path in unsets:
        new.pop(path, None)
    for path, (items, keep) in pushes.items():
        if not isinstance(new.get(path, []), list):
            raise TypeError(f"the field {path!r} must be an array")
        both = [*new.get(path, []), *items]
        new[path] = [] if keep == 0 else both[-keep:] if keep > 0 else both[:-keep]
    return new


class _Failed(Exception):
    """Ops of a batch that cannot be written, and why (or how to find out once the batch is undone)."""

    def __init__(self, failed: dict[int, WriteOutcome] | Callable[[], dict[int, WriteOutcome]]) -> None:
        self.failed = failed


class MemoryStore:
    """The whole store contract in this process's memory. Thread-safe (one lock)."""

    embedded = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[str, Doc] = {}
        self._names: dict[str, Doc] = {}  # name key -> {_id, o, owner}
        self._listing: dict[str, str] = {}  # object id -> kind
        self._leases: dict[str, Doc] = {}  # object id -> {_id, owner, until[, guard]}
        self._attempts: dict[str, list[tuple[int, Doc]]] = {}  # object id -> (sequence, record), oldest first
        self._counters: dict[str, Doc] = {}  # "owner/kind/state@slot" -> {_id, n, p, s, slot}
        self._processes: dict[str, Doc] = {}
        self._users: dict[str, Doc] = {}
        self._sessions: dict[str, Doc] = {}
        self._sequence = 0  # history records' ids, increasing as MongoDB's ObjectIds do
        self._undo: list[tuple[dict[Any, Any], Any, Any]] | None = None  # the open batch's journal
        self._process = ""

    def _put(self, table: dict[Any, Any], key: Any, value: Any = _GONE) -> None:
        """Write an entry (no value: delete it), in the journal of the open batch."""
        if self._undo is not None:
            self._undo.append((table, key, table.get(key, _GONE)))
        if value is _GONE:
            del table[key]
        else:
            table[key] = value

    def _leased_by(self, object_id: str, owner: str) -> bool:
        return object_id in self._leases and self._leases[object_id].get("owner") == owner

    def ping(self, deadline: float = 0.8) -> bool:
        return True

    def probe(self, deadline: float = 0.8) -> str | None:
        return None

    def deadline(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # memory always answers at once

    def identify(self, process: str) -> None:
        self._process = process

    def close(self) -> None:
        pass

    # ----- ObjectReads

    def get(self, object_id: str) -> Doc | None:
        if not isinstance(object_id, str) or not OBJECT_ID.match(object_id):
            return None  # not an id lambdaop ever made
        return _copy(self._objects.get(object_id))

    def fetch(self, ids: Iterable[str], due: tuple[dt.datetime, dt.datetime] | None = None) -> list[Doc]:
        return [_copy(self._objects[i], ("attempts",)) for i in dict.fromkeys(ids) if i in self._objects]

    def find_by_name(self, owner: str, kind: str, name: str) -> Doc | None:
        entry = self._names.get(_name_key(owner, kind, name))
        return _copy(self._objects.get(entry["o"])) if entry else None

    def find_by_names(self, owner: str, kind: str, names: list[str]) -> dict[str, Doc]:
        entries = [self._names.get(_name_key(owner, kind, n)) for n in names]
        return {doc["name"]: doc for doc in self.fetch(e["o"] for e in entries if e)}

    def objects_from_folder(self, folder: str, owners: Iterable[str]) -> list[Doc]:
        out = []
        for owner in sorted(set(owners)):
            for doc in [self._objects.get(e["o"]) for e in self._names.values() if e["owner"] == owner]:
                if doc is not None and (doc.get("source") or {}).get("folder") == folder:
                    out.append({k: _copy(v) for k, v in doc.items() if k in FOLDER_FIELDS})
        return out

    def list_objects(
        self,
        kind: str,
        owner: str | None,
        state: str | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        prefix: str | None = None,
    ) -> Page:
        def wanted(d: Doc) -> bool:
            return (state is None or d.get("state") == state) and (selector is None or selector.matches(d.get("labels")))  # fmt: skip

        if prefix is not None:
            if owner is None:
                raise ValueError("a name search needs an owner")
            entries = sorted(
                (e["n"], e["o"]) for e in self._names.values()
                if e["w"] == owner and e["k"] == kind and e["n"].startswith(prefix) and (before is None or e["n"] > before)
            )  # fmt: skip
            named = [
                (n, self._objects[o]) for n, o in entries if o in self._objects and wanted(self._objects[o])
            ]
            return Page([_copy(d, ("attempts",)) for _, d in named[:limit]], named[limit - 1][0] if len(named) > limit else None)  # fmt: skip
        if owner is None and state is not None:
            raise ValueError("a state filter needs an owner")
        listed = self._listing if owner is None else {i: d.get("kind") for i, d in self._objects.items() if d.get("owner") == owner}  # fmt: skip
        ids = sorted((i for i, k in listed.items() if k == kind and (not before or i < before)), reverse=True)
        docs = [d for d in (self._objects.get(i) for i in ids) if d is not None and wanted(d)]
        page = [_copy(d, ("attempts",)) for d in docs[:limit]]
        return Page(page, page[-1]["_id"] if len(docs) > limit else None)

    def upcoming(
        self, owner: str, after: dt.datetime, until: dt.datetime, limit: int, examine: int = 1000
    ) -> tuple[list[Doc], bool]:
        due = sorted(
            (d for d in self._objects.values() if d.get("owner") == owner and d.get("due") is not None and after < d["due"] <= until),
            key=lambda d: d["due"],
        )  # fmt: skip
        fields = ("_id", "owner", "kind", "name", "display", "due")
        return [{k: d[k] for k in fields if k in d} for d in due[:limit]], len(due) <= limit

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in self._counters.values():
            if doc["p"] == f"{owner or '*'}/{kind}":
                out[doc["s"]] = out.get(doc["s"], 0) + int(doc.get("n", 0))
        return {k: max(0, v) for k, v in out.items()}

    def history(self, object_id: str, limit: int = ATTEMPTS_KEPT) -> list[Doc]:
        newest = _limit(self._attempts.get(object_id, [])[::-1], limit)
        return [_copy(r, ("o",)) for _, r in reversed(newest)]

    def prune_history(self, object_ids: Iterable[str], keep: int = ATTEMPTS_KEPT) -> int:
        if keep < 0:
            raise ValueError("skip must be >= 0")
        removed = 0
        for oid in object_ids:
            records = self._attempts.get(oid, [])
            old = {seq for seq, _ in _limit(records[::-1][keep:], 5000)}  # at most 5000 a pass
            if old:
                self._attempts[oid] = [(seq, r) for seq, r in records if seq not in old]
                removed += len(old)
        return removed

    # ----- LoopStore

    def due_between(self, after: dt.datetime | None, until: dt.datetime, limit: int) -> list[Due]:
        after, until = _bson(after), _bson(until)
        found = [
            d for d in self._objects.values()
            if isinstance(d.get("due"), dt.datetime) and d["due"] <= until and (after is None or d["due"] > after)
        ]  # fmt: skip
        found.sort(key=lambda d: d["due"])
        return [Due(d["_id"], d["due"], d.get("fence", 0)) for d in _limit(found, limit)]

    def holders(self, ids: Iterable[str]) -> dict[str, Lease]:
        docs = [self._leases[i] for i in ids if i in self._leases]
        return {d["_id"]: Lease(d["_id"], str(d.get("owner")), d["until"], bool(d.get("guard"))) for d in docs}  # fmt: skip

    def claim(self, owner: str, until: dt.datetime, ids: list[str]) -> set[str]:
        held = [i for i in dict.fromkeys(ids) if i not in self._leases]  # a held object: left out
        for i in held:
            self._leases[i] = {"_id": i, "owner": owner, "until": _bson(until)}
        return set(held)

    def release(self, owner: str, ids: list[str]) -> None:
        for i in [i for i in dict.fromkeys(ids) if self._leased_by(i, owner)]:
            del self._leases[i]

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> set[str]:
        for i in [i for i in ids if self._leased_by(i, owner)]:
            self._leases[i] = {**self._leases[i], "until": _bson(until)}
        return {i for i in ids if not self._leased_by(i, owner)}

    def expired_leases(self, now: dt.datetime, limit: int = 5000) -> list[Lease]:
        now = _bson(now)
        expired = [i for i, d in self._leases.items() if _before(d.get("until"), now)]
        return list(self.holders(_limit(expired, limit)).values())

    def drop_leases(self, holder: str, ids: list[str], now: dt.datetime) -> set[str]:
        now = _bson(now)
        dropped = {i for i in ids if self._leased_by(i, holder) and _before(self._leases[i].get("until"), now)}  # fmt: skip
        for i in dropped:
            del self._leases[i]
        return dropped

    def drop_leases_of_others(self, owner: str) -> list[str]:
        ids = [i for i, d in self._leases.items() if d.get("owner") != owner]
        for i in ids:
            del self._leases[i]
        return ids

    def heartbeat(self, slot: str, until: dt.datetime, info: Mapping[str, Any]) -> None:
        self._processes[slot] = {**self._processes.get(slot, {"_id": slot}), **_bson({"until": until, **info})}  # fmt: skip

    def lapsed(self, now: dt.datetime) -> list[str]:
        now = _bson(now)
        found = [i for i, d in self._processes.items() if _before(d.get("until"), now)]
        return [str(i) for i in found if isinstance(self._processes[i].get("sessions"), list) and self._processes[i]["sessions"]]  # fmt: skip

    def end_sessions_of(self, process: str, now: dt.datetime) -> bool:
        return False  # no transactions: no sessions a dead process could leave open

    def fold_slots(self, now: dt.datetime, keep: str, everyone_else: bool = False) -> int:
        if everyone_else:
            dead = {i for i in self._processes if i != keep}
            dead |= {d["slot"] for d in self._counters.values() if d.get("slot") and d["slot"] not in (keep, BASE_SLOT)}  # fmt: skip
        else:
            cutoff = _bson(now - dt.timedelta(minutes=2))
            dead = {i for i, d in self._processes.items() if _before(d.get("until"), cutoff)}
        for slot in sorted(dead - {keep, BASE_SLOT}):
            for d in [d for d in self._counters.values() if d.get("slot") == slot]:
                if d.get("n"):
                    self._count(f"{d['p']}/{d['s']}@{BASE_SLOT}", d["p"], d["s"], BASE_SLOT, d["n"])
                del self._counters[d["_id"]]
            self._processes.pop(slot, None)
        return len(dead - {keep, BASE_SLOT})

    def _count(self, cid: str, prefix: str, state: str, slot: str, n: int) -> None:
        doc = self._counters.get(cid) or {"_id": cid, "n": 0, "p": prefix, "s": state, "slot": slot}
        self._put(self._counters, cid, {**doc, "n": doc.get("n", 0) + n})

    # ----- Committer

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
        for (who, kind, state), n in deltas.items():
            if n:
                self._count(f"{who}/{kind}/{state}@{slot}", f"{who}/{kind}", state, slot, n)

    # ----- UserStore

    def get_user(self, name: str) -> Doc | None:
        return _copy(self._users.get(name))

    def insert_user(self, doc: Doc) -> None:
        if doc["_id"] in self._users:
            raise Conflict(f"user {doc['_id']!r} already exists")
        self._users[doc["_id"]] = _bson(doc)

    def delete_user(self, name: str) -> bool:
        return self._users.pop(name, None) is not None

    def list_users(self, limit: int = 1000) -> list[Doc]:
        names = _limit(sorted(n for n in self._users if isinstance(n, str) and n > ""), limit)
        return [_copy(self._users[n], ("password",)) for n in names]

    def any_user(self) -> bool:
        return any(isinstance(n, str) and n > "" for n in self._users)

    def set_user(self, name: str, values: Mapping[str, Any]) -> bool:
        if not values or any(not k or "." in k for k in values):
            raise ValueError(f"cannot set {list(values)}: no field, or a field inside another")
        if name in self._users:
            self._users[name] = {**self._users[name], **_bson(values)}
        return name in self._users

    def add_token(self, name: str, entry: Doc) -> bool:
        user = self._users.get(name)
        if user is not None and not isinstance(user.get("tokens", []), list):
            raise TypeError("the field 'tokens' must be an array")
        if user is not None:
            self._users[name] = {**user, "tokens": [*user.get("tokens", []), _bson(entry)]}
        return user is not None

    def remove_tokens(self, name: str, hashes: list[str]) -> None:
        user = self._users.get(name)
        if user is not None and isinstance(user.get("tokens"), list):
            kept = [t for t in user["tokens"] if not (isinstance(t, dict) and t.get("hash") in hashes)]
            self._users[name] = {**user, "tokens": kept}

    def touch_token(self, name: str, digest: str, at: dt.datetime) -> None:
        user = self._users.get(name) or {}
        tokens: list[Any] = user["tokens"] if isinstance(user.get("tokens"), list) else []
        for i, token in enumerate(tokens):
            if isinstance(token, dict) and token.get("hash") == digest:
                self._users[name] = {**user, "tokens": [*tokens[:i], {**token, "last_used": _bson(at)}, *tokens[i + 1 :]]}  # fmt: skip
                return

    def insert_session(self, doc: Doc) -> None:
        if doc["_id"] in self._sessions:
            raise Conflict(f"session {doc['_id']!r} already exists")
        self._sessions[doc["_id"]] = _bson(doc)

    def find_session(self, digest: str) -> Doc | None:
        return _copy(self._sessions.get(digest))

    def delete_session(self, digest: str) -> None:
        self._sessions.pop(digest, None)

    def delete_sessions_of(self, name: str) -> None:
        for digest in [d for d, s in self._sessions.items() if s.get("user") == name]:
            del self._sessions[digest]


for _name, _method in list(vars(MemoryStore).items()):  # one lock around every method
    if not _name.startswith("_") and callable(_method):
        setattr(MemoryStore, _name, _locked(_method))
