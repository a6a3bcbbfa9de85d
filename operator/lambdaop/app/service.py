"""One object at a time: create, read, cancel, modify, suspend, resume and prune.

The one entry for every way a change arrives (the REST API, the folder,
`apply -f`). Every write is an `Op` through the writer (group commit), fenced
on the object's version, with its counter move in the same transaction. An
object this process holds (its call is due within the claim window) is
changed through the loop, which either withdraws the call or answers that it
has already left; one held by another live process is refused with the
reason; any other is changed under a guard that no claim can slip past.
Applying specs (`applying.Applier`) builds on it. Its read-side views (lists,
counts, calls, the dashboard's reads, what a due call waits for) are
`reads.Reads`, held as `reads` and answered under the same names. Called by
runtime, api and the folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Protocol

from lambdaop.app.reads import LoopView, Reads
from lambdaop.core.clock import Clock, iso, to_utc
from lambdaop.core.errors import (
    Conflict,
    InsufficientStorage,
    NotFound,
    Problem,
    SpecInvalid,
    StoreUnavailable,
)
from lambdaop.core.logs import about
from lambdaop.engine import changes, machine
from lambdaop.engine.progress import Phase, Refused
from lambdaop.engine.record import Change, Source, StoredObject
from lambdaop.loop.events import Action, Answer
from lambdaop.loop.requests import NotHeld
from lambdaop.spec import KINDS, AnySpec, Kind, spec_hash, spec_json
from lambdaop.store.contract import Op, Store, WriteOutcome
from lambdaop.store.ids import OBJECT_ID, new_id
from lambdaop.store.writer import Writer

log = logging.getLogger("lambdaop.service")

CONFLICT_RETRIES = 8
Decide = Callable[[StoredObject, dt.datetime], Change]


class LoopPort(LoopView, Protocol):
    """What the service needs of the reconcile loop (its reads need whether it holds an object
    and what a held call waits for)."""

    owner: str

    def notify(self, record: StoredObject, held_until: dt.datetime | None = None) -> None: ...

    def request(self, action: Action, object_id: str, payload: Any = None) -> Future[Answer]: ...

    def pause_all(self, setting: Mapping[str, Any] | None) -> None: ...


class Health(Protocol):
    """What the service knows of the store's health (the store's health monitor)."""

    @property
    def answering(self) -> bool: ...

    @property
    def disk_full(self) -> bool: ...

    def problems(self) -> list[str]: ...


class Stale(Exception):
    """The object changed between reading and writing: read it again."""


def is_object_id(text: str) -> bool:
    """Whether `text` is an id lambdaop could have made."""
    return bool(OBJECT_ID.match(text))


def first_due(obj: AnySpec, now: dt.datetime) -> dt.datetime:
    return to_utc(machine.first_due(obj.spec, now))


def manager_for(source: Source | None, manager: str | None, owner: str) -> str:
    if source is not None and source.folder:
        return f"folder:{source.folder}"
    return manager or f"api:{owner}"


class Service:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        loop: LoopPort,
        clock: Clock,
        claim_window: dt.timedelta,
        lease: dt.timedelta,
        health: Health | None = None,
        deadline: float = 0.8,
    ) -> None:
        self.health = health
        self.deadline = deadline  # seconds a request waits for the store before 503 (its answer, with the rest of the request, within 1 s)
        self.store = store
        self.writer = writer
        self.loop = loop
        self.clock = clock
        self.window = claim_window
        self.lease = lease
        # the read-side views (`reads`), answered under the service's names too
        self.reads = reads = Reads(store, loop, clock, self.read)
        self.page, self.counts, self.history, self.live_state = reads.page, reads.counts, reads.history, reads.live_state  # fmt: skip
        self.upcoming, self.paused, self.waiting_for = reads.upcoming, reads.paused, reads.waiting_for

    def now(self) -> dt.datetime:
        return to_utc(self.clock.now())

    def require_store(self, creating: bool = False) -> None:
        """Refuse at once what the store cannot take now: it does not answer (503), or it is
        about to run out of disk and this is new work (507)."""
        if self.health is None:
            return
        if creating and self.health.disk_full:
            why = "; ".join(p for p in self.health.problems() if "disk" in p)
            raise InsufficientStorage(f"{why}: no new work is taken until space is freed (work already taken goes on)")  # fmt: skip
        if not self.health.answering:
            raise StoreUnavailable("; ".join(self.health.problems()) or "the store does not answer")

    def read(self) -> AbstractContextManager[None]:
        """The deadline of a request's reads of the store."""
        self.require_store()
        return self.store.deadline(self.deadline)

    def store_answers(self) -> bool:
        """Whether the store answers a read now (readiness, when no health monitor tells it)."""
        return self.store.ping()

    @staticmethod
    def new_id() -> str:
        """An id for an object not made yet (the original routes name it by its id)."""
        return new_id()

    # ----- creating

    def new_record(
        self,
        obj: AnySpec,
        owner: str,
        now: dt.datetime,
        source: Source | None = None,
        manager: str | None = None,
        object_id: str | None = None,
        display: str | None = None,
    ) -> StoredObject:
        due = first_due(obj, now)
        progress = machine.start(obj.spec, due, secrets.randbits(48), now)
        return StoredObject(
            id=object_id or new_id(),
            kind=Kind(obj.kind),
            owner=owner,
            name=obj.metadata.name,
            spec=spec_json(obj),
            progress=progress,
            due=progress.due,
            spec_hash=spec_hash(obj),
            created=now,
            updated=now,
            labels=dict(obj.metadata.labels),
            annotations=dict(obj.metadata.annotations),
            display=display or None,
            source=source,
            manager=manager_for(source, manager, owner),
        )

    def insert_op(self, record: StoredObject, now: dt.datetime) -> Op:
        """New work due within the claim window is created already held by this process."""
        op = Op(record.id, record.owner, record.kind.value, None, record.state, doc=record.for_storage())
        if record.due is not None and record.due <= now + self.window:
            op.claim_until = max(record.due, now) + self.lease
        return op

    def created(self, record: StoredObject, op: Op) -> None:
        self.loop.notify(record, op.claim_until)
        due = iso(record.due) if record.due else "(no run due)"
        log.info("%s created, due %s", record.label, due, extra=about(record))

    def create(
        self, obj: AnySpec, owner: str, object_id: str | None = None, display: str | None = None
    ) -> StoredObject:
        """Create a new object (the original routes); its name must be new."""
        self.require_store(creating=True)
        now = self.now()
        record = self.new_record(obj, owner, now, object_id=object_id, display=display)
        op = self.insert_op(record, now)
        outcome = self.writer.write(op, timeout=self.deadline)
        if outcome is WriteOutcome.EXISTS:
            raise Conflict(f"a {obj.kind} named {obj.metadata.name!r} already exists")
        if outcome is not WriteOutcome.OK:
            raise Conflict(f"the {obj.kind} could not be stored ({outcome.value}); try again")
        self.created(record, op)
        return record

    # ----- reading

    def get(self, object_id: str, owner: str | None, kind: str | None = None) -> StoredObject:
        with self.read():
            doc = self.store.get(object_id)
        if doc is None or (owner is not None and doc.get("owner") != owner):
            raise NotFound(f"no object {object_id}")
        if kind is not None and doc.get("kind") != kind:
            raise NotFound(f"no {kind} {object_id}")
        return StoredObject.from_storage(doc)

    def find(self, owner: str, kind: str, name: str) -> StoredObject | None:
        with self.read():
            doc = self.store.find_by_name(owner, kind, name)
        return StoredObject.from_storage(doc) if doc is not None else None

    # ----- changing one object

    def cancel(
        self, object_id: str, owner: str | None, kind: str | None = None, pruned: bool = False
    ) -> StoredObject:
        """Cancel a scheduled object. Raises Conflict (with the reason) in any other state."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            return Change(updated=now, progress=changes.cancel(record.progress, now), pruned=pruned or None)

        extra = Change(updated=self.now(), pruned=True) if pruned else None
        record = self.change(object_id, owner, kind, Action.CANCEL, extra, decide).record
        log.info("%s cancelled", record.label, extra=about(record))
        return record

    def modify(
        self, object_id: str, owner: str | None, due: dt.datetime, kind: str | None = None
    ) -> StoredObject:
        """Give a scheduled object a new start time."""
        if due.tzinfo is None:
            raise SpecInvalid("invalid time", [Problem("time needs an offset", field="at")])
        due = to_utc(due)

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            spec, digest = _moved_spec(record, due)
            return Change(updated=now, progress=changes.reschedule(record.progress, due), spec=spec, spec_hash=digest)  # fmt: skip

        record = self.change(object_id, owner, kind, Action.MODIFY, due, decide).record
        spec, digest = _moved_spec(record, due)
        if spec is not None and spec != record.spec:  # changed through the loop, which moves only the time
            with contextlib.suppress(Stale, Conflict):
                record = self.set(record, Change(updated=self.now(), spec=spec, spec_hash=digest))
        log.info("%s rescheduled to %s", record.label, iso(due), extra=about(record))
        return record

    def suspend(self, object_id: str, owner: str, kind: str | None = None) -> Answer:
        """Pause a recurring object: no run starts until it is resumed (a run going on ends first:
        the answer is `later` then)."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            return Change(updated=now, progress=changes.suspend(_plan(record), record.progress))

        answer = self.change(object_id, owner, kind, Action.SUSPEND, None, decide)
        log.info("%s suspended%s", answer.record.label, " after the run going on" if answer.later else "", extra=about(answer.record))  # fmt: skip
        return answer

    def resume(self, object_id: str, owner: str, kind: str | None = None) -> StoredObject:
        """A suspended recurring object runs again from its next run time."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            return Change(updated=now, progress=changes.resume(_plan(record), record.progress, now))

        record = self.change(object_id, owner, kind, Action.RESUME, None, decide).record
        log.info("%s resumed; next run %s", record.label, iso(record.due), extra=about(record))
        return record

    def prune(self, owner: str, kind: str, name: str) -> StoredObject:
        """The spec is gone: cancel the object if it is still scheduled, and mark it pruned."""
        for _ in range(CONFLICT_RETRIES):
            record = self.find(owner, kind, name)
            if record is None:
                raise NotFound(f"no {kind} named {name!r}")
            try:
                if record.phase is Phase.SCHEDULED:
                    try:
                        record = self.cancel(record.id, owner, kind, pruned=True)
                    except Conflict:
                        record = self.set(
                            record, Change(updated=self.now(), pruned=True)
                        )  # its call has started
                else:
                    record = self.set(record, Change(updated=self.now(), pruned=True))
            except Stale:
                continue
            log.info("%s pruned (%s)", record.label, record.state, extra=about(record))
            return record
        raise Conflict(f"{kind} {name} is changing too fast; try again")

    def set(self, record: StoredObject, fields: Change) -> StoredObject:
        """Change fields that do not move the object (pruned, source, manager); raises Stale."""

        def decide(current: StoredObject, now: dt.datetime) -> Change:
            return fields

        return self.change(record.id, None, None, Action.SET, fields, decide).record

    def change(
        self,
        object_id: str,
        owner: str | None,
        kind: str | None,
        action: Action,
        payload: Any,
        decide: Decide,
    ) -> Answer:
        """One change of one object, through whoever may make it (see the module docstring).

        A replace or a set whose object moved meanwhile raises `Stale` (the caller reads it again).
        """
        for _ in range(CONFLICT_RETRIES):
            record = self.get(object_id, owner, kind)
            if self.loop.holds(object_id):
                try:
                    answer = self.loop.request(action, object_id, payload).result(timeout=60)
                except NotHeld:
                    continue
                except TimeoutError:
                    raise Conflict("the change was not confirmed in time; try again") from None
                self.loop.notify(answer.record)
                return answer
            now = self.now()
            try:
                change = decide(record, now)
            except Refused as exc:
                raise Conflict(str(exc)) from None
            calls = (
                [change.last.for_storage()] if change.last is not None else []
            )  # a change with a call records it
            op = Op(object_id, record.owner, record.kind.value, record.state, change.new_state(record),
                    fence=record.fence, change=change, guard=True, attempts=calls, run=change.ended)  # fmt: skip
            outcome = self.writer.write(op, timeout=self.deadline)
            if outcome is WriteOutcome.OK:
                written = change.applied_to(record)
                self.loop.notify(written)
                return Answer(written)
            if outcome is WriteOutcome.STALE:
                if action in (Action.REPLACE, Action.SET):
                    raise Stale()
                continue
            if outcome is WriteOutcome.HELD:
                holder = self.store.holders([object_id]).get(object_id)
                if holder is None or holder.owner == self.loop.owner:
                    continue  # our own loop is claiming it: ask it
                raise Conflict(
                    f"{record.label} is held by another lambdaop process: its call starts within "
                    f"{self.window.total_seconds():g}s or has started"
                )
            raise Conflict(f"{record.label} is being changed by another writer; try again")
        raise Conflict(f"object {object_id} is changing too fast; try again")


def _moved_spec(record: StoredObject, due: dt.datetime) -> tuple[dict[str, Any] | None, str | None]:
    """A one-time object's spec with its new time as `at` (in place of `after`, `initialDelay`),
    and its hash. The hash moves only for an object the API manages: the folder compares its
    file with the stored hash, so a file that did not change leaves the new time alone. A
    recurring object keeps its spec (a new time moves only its next run)."""
    if "schedule" in record.spec:
        return None, None
    spec = {k: v for k, v in record.spec.items() if k not in ("after", "initialDelay")} | {"at": iso(due)}
    if record.managed_by.startswith("folder:"):
        return spec, None
    try:
        model = KINDS[record.kind.value].model_validate({"metadata": {"name": record.name}, "spec": spec})
    except ValueError:
        return None, None
    return spec_json(model), spec_hash(model)


def _plan(record: StoredObject) -> Any:
    try:
        return record.plan
    except ValueError as exc:
        raise Conflict(f"its stored spec cannot be read: {exc}") from None
