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

Made of one part per group of tables, as the MongoDB store is: `base` (the tables, values
kept as BSON keeps them), `objects`, `leases`, `commit`, `users`, `places`.

May import: the standard library, lambdaop.store.contract, lambdaop.store.ids and lambdaop.core.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lambdaop.store.memory.commit import MemoryCommits
from lambdaop.store.memory.leases import MemoryLeases
from lambdaop.store.memory.objects import MemoryObjects
from lambdaop.store.memory.places import MemoryPlaces
from lambdaop.store.memory.users import MemoryUsers

__all__ = ["MemoryStore"]


class MemoryStore(MemoryObjects, MemoryLeases, MemoryCommits, MemoryUsers, MemoryPlaces):
    """The whole store contract in this process's memory. Thread-safe (one lock)."""


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


for _name in dir(MemoryStore):  # one lock around every method of every part
    _method = getattr(MemoryStore, _name)
    if not _name.startswith("_") and callable(_method):
        setattr(MemoryStore, _name, _locked(_method))
