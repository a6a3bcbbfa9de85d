"""The tables of the in-memory store and what its parts share: values kept as BSON keeps them."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Mapping
from typing import Any

from lambdaop.store.contract import (
    Doc,
    Mutation,
    WriteOutcome,
)

log = logging.getLogger("lambdaop.store")

STALE = WriteOutcome.STALE
BASE_SLOT = "0"
FOLDER_FIELDS = ("_id", "owner", "kind", "name", "source", "annotations", "pruned", "state", "manager")
_GONE = object()
Pushes = dict[str, tuple[list[Any], int]]


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


class Tables:
    """Every collection of the store, as this process's dicts (the parts below read and write them)."""

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
        self._settings: dict[str, Doc] = {}
        self._runs: dict[str, Doc] = {}  # owner␟result␟id -> a run's record (the runs list)
        # (key, kind, index, None) -> a place {holder, until}; (key, kind, -1, holder) -> a waiter
        self._limits: dict[tuple[str, str, int, str | None], Doc] = {}
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

    def _count(self, cid: str, prefix: str, state: str, slot: str, n: int) -> None:
        doc = self._counters.get(cid) or {"_id": cid, "n": 0, "p": prefix, "s": state, "slot": slot}
        self._put(self._counters, cid, {**doc, "n": doc.get("n", 0) + n})
