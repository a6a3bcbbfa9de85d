"""The read-side views of the service: lists and counts, one object's calls and live state,
what is due within a time, what is suspended, and what a due call waits for.

Owns the bounded reads that show objects rather than change them: a page of a list (`page`),
the counters (`counts`), an object's calls (`history`), its state as this process knows it
(`live_state`), the dashboard's reads of the due index (`upcoming`) and of the paused index
(`paused`), and what a due call waits for (`waiting_for`: as the loop knows it for an object
this process holds, else as the store tells it). Each read of the store goes through the
service's `read` (the store answers, within the request's deadline); nothing is written. Held
by the service (`Service.reads`), which answers these under the same names; called by the API's
lists, object answers and dashboard, and by bulk operations (`page`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from lambdaop.app.view import Coming, Paused
from lambdaop.app.waiting import waiting_in_store
from lambdaop.core.clock import Clock
from lambdaop.core.labels import Selector
from lambdaop.engine.record import CallRecord, StoredObject
from lambdaop.store.contract import ATTEMPTS_KEPT, Store


class LoopView(Protocol):
    """What the reads need of the reconcile loop: whether it holds an object, whether its call
    is out, and what a call it holds waits for."""

    def holds(self, object_id: str) -> bool: ...

    def live_state(self, object_id: str) -> str | None: ...

    def waiting_for(self, object_id: str) -> dict[str, Any] | None: ...


class Reads:
    def __init__(
        self, store: Store, loop: LoopView, clock: Clock, read: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.store = store
        self.loop = loop
        self.clock = clock
        self.read = read  # the deadline of a request's reads of the store

    def page(
        self,
        kind: str,
        owner: str | None,
        state: str | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        prefix: str | None = None,
    ) -> tuple[list[StoredObject], str | None]:
        """One page of a list and where the next one starts (see the store's `list_objects`)."""
        with self.read():
            page = self.store.list_objects(kind, owner, state, before, limit, selector, prefix)
        return [StoredObject.from_storage(d) for d in page.docs], page.next

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        with self.read():
            return self.store.counts(owner, kind)

    def history(self, record: StoredObject) -> list[CallRecord]:
        """Its calls, oldest first (an earlier version kept them in the object itself)."""
        with self.read():
            calls = list(record.legacy_attempts or ()) + self.store.history(record.id)
        return [CallRecord.from_storage(d) for d in calls[-ATTEMPTS_KEPT:]]

    def live_state(self, object_id: str) -> str | None:
        """`running` while this process has its call out (the store may still say scheduled)."""
        return self.loop.live_state(object_id)

    def upcoming(
        self,
        owner: str,
        after: dt.datetime,
        until: dt.datetime,
        limit: int,
        widest: dt.timedelta | None = None,
        latest_first: bool = False,
    ) -> tuple[list[Coming], bool]:
        """The owner's objects due in (after, until], earliest first (see the store's `upcoming`);
        recurring ones read whole (a schedule tells the later runs), the others by their due time."""
        with self.read():
            found, complete = self.store.upcoming(
                owner, after, until, limit, widest=widest, latest_first=latest_first
            )
            docs = {d["_id"]: d for d in self.store.fetch([e.id for e in found if e.recurring])}
        out = [
            Coming.of(e, StoredObject.from_storage(docs[e.id]) if e.id in docs else None)
            for e in found
            if not e.recurring or e.id in docs
        ]
        return out, complete

    def paused(self, owner: str, now: dt.datetime, limit: int) -> tuple[list[Paused], bool]:
        """The owner's suspended objects (see the store's `paused`); the flag says whether there
        are more."""
        with self.read():
            found, more = self.store.paused(owner, now, limit)
        return [Paused.from_storage(d) for d in found], more

    def waiting_for(self, record: StoredObject, look: bool = False) -> dict[str, Any] | None:
        """What its due call waits for (a place of a limit key): as this process knows it if it holds
        the object; else (`look`: one object's answer) as the store says, when another process does."""
        found = self.loop.waiting_for(record.id)
        if found is not None or not look or self.loop.holds(record.id):
            return found
        with self.read():
            return waiting_in_store(self.store, record, self.clock.now())
