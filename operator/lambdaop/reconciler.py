"""The reconcile loop: one thread that owns every state transition.

It keeps the next minutes of due work in an in-memory heap (refilled from the
store by bounded range reads, fed directly by `notify` for work created or
changed in this process), claims what is due in batches under a lease,
hands the calls to the invoker's thread pool, and writes their results in
batches as they come back through a queue. It renews the leases of calls
still in flight and recovers work whose lease expired (at-least-once: the same
step is called again with the same Idempotency-Key).

`reconcile_once(now)` is one pass and is what tests drive; `run()` repeats it,
sleeping until the next due time or a wake-up. Called by runtime.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import machine
from .clock import Clock
from .invoker import CallResult, Invoker, Job
from .machine import Outcome, PlanSpec, Progress
from .spec import TaskSetSpec, TaskSpec
from .store import ATTEMPTS_KEPT, Move, Moves, Store, Write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    lease: dt.timedelta = dt.timedelta(seconds=30)
    horizon: dt.timedelta = dt.timedelta(minutes=2)
    refill_every: dt.timedelta = dt.timedelta(seconds=2)
    refill_limit: int = 2000
    batch: int = 200
    workers: int = 16
    max_in_flight: int = 256
    recover_all_at_start: bool = False  # the embedded store has one owner: every lease is stale
    stop_grace: float = 10.0


@dataclass
class Tracked:
    """An object as the loop last saw it."""

    id: str
    kind: str
    generation: int
    fence: int
    spec: PlanSpec
    progress: Progress
    doc: dict[str, Any]
    seq: int = 0
    lease_until: dt.datetime | None = None


def parse_plan(doc: dict[str, Any]) -> PlanSpec:
    if doc["kind"] == "Task":
        return TaskSpec.model_validate(doc["spec"])
    return TaskSetSpec.model_validate(doc["spec"])


def idempotency_key(object_id: str, generation: int, step: str) -> str:
    return f"{object_id}-g{generation}-{step}"


@dataclass
class Stats:
    dispatched: int = 0
    finished: int = 0
    recovered: int = 0
    stale: int = 0


class Reconciler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        owner: str,
        env: Mapping[str, str],
        settings: LoopSettings | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.settings = settings or LoopSettings()
        self.on_change = on_change
        self.invoker = Invoker(self.deliver, clock, env, workers=self.settings.workers)
        self.stats = Stats()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._heap: list[tuple[dt.datetime, int, str]] = []
        self._waiting: dict[str, Tracked] = {}
        self._in_flight: dict[str, Tracked] = {}
        self._seq = itertools.count()
        self._next_refill: dt.datetime | None = None
        self._next_sweep: dt.datetime | None = None
        self._started = False

    # ----- inputs (any thread)

    def notify(self, doc: dict[str, Any]) -> None:
        """An object was created or changed by this process: track its new version."""
        self._events.put(("doc", doc))
        self._wake.set()

    def deliver(self, result: CallResult) -> None:
        """A call finished (invoker thread)."""
        self._events.put(result)
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # ----- the loop

    def run(self) -> None:
        log.info("reconcile loop started (owner %s)", self.owner)
        while not self._stopping.is_set():
            now = self.clock.now()
            try:
                wake_at = self.reconcile_once(now)
            except Exception:
                log.exception("reconcile pass failed; retrying in 1s")
                wake_at = now + dt.timedelta(seconds=1)
            timeout = (wake_at - self.clock.now()).total_seconds()
            if timeout > 0:
                self._wake.wait(min(timeout, 5.0))
            self._wake.clear()
        self._drain_at_stop()
        log.info("reconcile loop stopped")

    def _drain_at_stop(self) -> None:
        done = threading.Event()

        def shutdown() -> None:
            self.invoker.shutdown(wait=True)
            done.set()

        threading.Thread(target=shutdown, daemon=True).start()
        done.wait(self.settings.stop_grace)
        with contextlib.suppress(Exception):
            self._take_events(self.clock.now())

    def reconcile_once(self, now: dt.datetime) -> dt.datetime:
        """One pass: take events, write results, refill, sweep leases, dispatch. Answers the next wake time."""
        if not self._started:
            self._start(now)
        self._take_events(now)
        if self._next_refill is None or now >= self._next_refill:
            self._refill(now)
        if self._next_sweep is None or now >= self._next_sweep:
            self._sweep(now)
        self._renew(now)
        self._dispatch_due(now)
        return self._wake_time(now)

    def _start(self, now: dt.datetime) -> None:
        self._started = True
        if self.settings.recover_all_at_start:
            docs = self.store.in_flight(limit=100000)
            self._recover(docs, now, "interrupted by a restart")

    def _take_events(self, now: dt.datetime) -> None:
        results: list[CallResult] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, CallResult):
                results.append(event)
            else:
                self._track_doc(event[1], now)
        if results:
            self._write_results(results, now)

    # ----- tracking due work

    def _track_doc(self, doc: dict[str, Any], now: dt.datetime) -> None:
        object_id = doc["_id"]
        if object_id in self._in_flight:
            return
        known = self._waiting.get(object_id)
        if known is not None and known.fence >= doc.get("fence", 0):
            return
        due = doc.get("due")
        if due is None or doc.get("lease_owner"):
            self._waiting.pop(object_id, None)
            return
        try:
            spec = parse_plan(doc)
            progress = Progress.from_storage(doc["progress"])
        except (ValidationError, KeyError, ValueError) as exc:
            log.error("object %s: stored spec cannot be read, skipped: %s", object_id, exc)
            return
        if due > now + self.settings.horizon:
            self._waiting.pop(object_id, None)
            return
        self._push(
            Tracked(
                object_id, doc["kind"], doc.get("generation", 1), doc.get("fence", 0), spec, progress, doc
            )
        )

    def _push(self, item: Tracked) -> None:
        assert item.progress.due is not None
        item.seq = next(self._seq)
        self._waiting[item.id] = item
        heapq.heappush(self._heap, (item.progress.due, item.seq, item.id))

    def _refill(self, now: dt.datetime) -> None:
        docs = self.store.due_window(now + self.settings.horizon, self.settings.refill_limit)
        for doc in docs:
            self._track_doc(doc, now)
        self._next_refill = now + self.settings.refill_every

    def _peek_due(self) -> Tracked | None:
        while self._heap:
            due, seq, object_id = self._heap[0]
            item = self._waiting.get(object_id)
            if item is None or item.seq != seq:
                heapq.heappop(self._heap)
                continue
            return item
        return None

    def _wake_time(self, now: dt.datetime) -> dt.datetime:
        candidates = [self._next_refill or now, self._next_sweep or now]
        top = self._peek_due()
        if (
            top is not None
            and top.progress.due is not None
            and len(self._in_flight) < self.settings.max_in_flight
        ):
            candidates.append(top.progress.due)
        renew = self._next_renewal()
        if renew is not None:
            candidates.append(renew)
        return min(candidates)

    # ----- dispatch

    def _dispatch_due(self, now: dt.datetime) -> None:
        while True:
            room = min(self.settings.batch, self.settings.max_in_flight - len(self._in_flight))
            batch: list[tuple[Tracked, Progress]] = []
            while len(batch) < room:
                item = self._peek_due()
                if item is None or item.progress.due is None or item.progress.due > now:
                    break
                heapq.heappop(self._heap)
                del self._waiting[item.id]
                try:
                    batch.append((item, machine.dispatch(item.progress, now)))
                except machine.Refused as exc:
                    log.warning("object %s: not dispatched: %s", item.id, exc)
            if not batch:
                return
            self._claim_and_call(batch, now)
            if len(batch) < room:
                return

    def _claim_and_call(self, batch: list[tuple[Tracked, Progress]], now: dt.datetime) -> None:
        lease_until = now + self.settings.lease
        writes = [
            Write(item.id, item.fence, {"$set": {"progress": p.for_storage(), "state": p.phase.value}})
            for item, p in batch
        ]
        moves = {item.id: self._move(item, p) for item, p in batch}
        held = self.store.claim(writes, self.owner, lease_until, now, moves)
        for item, progress in batch:
            if item.id not in held:
                self.stats.stale += 1
                log.info("object %s: changed or taken by another process before its call; skipped", item.id)
                continue
            item.fence += 1
            item.progress = progress
            item.lease_until = lease_until
            self._in_flight[item.id] = item
            plan = machine.step_plan(item.spec, progress.step)
            job = Job(
                item.id,
                item.fence,
                progress.step,
                progress.attempt,
                idempotency_key(item.id, item.generation, progress.step),
                plan.invoke,
            )
            self.stats.dispatched += 1
            log.debug(
                "object %s: calling %s (step %s, attempt %s)",
                item.id,
                plan.invoke.url,
                progress.step,
                progress.attempt,
            )
            self.invoker.submit(job)

    # ----- results

    def _write_results(self, results: list[CallResult], now: dt.datetime) -> None:
        writes: list[Write] = []
        moves: Moves = {}
        after: list[tuple[Tracked, Progress, dict[str, Any]]] = []
        for result in results:
            job = result.job
            item = self._in_flight.get(job.object_id)
            if item is None or item.fence != job.fence:
                log.warning("object %s: result of a call no longer held, dropped", job.object_id)
                continue
            del self._in_flight[job.object_id]
            ended = result.started + dt.timedelta(milliseconds=result.duration_ms)
            progress = machine.finish(item.spec, item.progress, Outcome(result.ok, result.error), ended)
            record = {
                "generation": item.generation,
                "step": job.step,
                "attempt": job.attempt,
                "key": job.idempotency_key,
                "url": job.invoke.url,
                "at": result.started,
                "duration_ms": result.duration_ms,
                "status": result.status,
                "ok": result.ok,
                "error": result.error,
                "response": result.response,
            }
            update = self._progress_update(progress, now)
            update["$set"]["last"] = record
            update["$push"] = {"attempts": {"$each": [record], "$slice": -ATTEMPTS_KEPT}}
            update.setdefault("$unset", {}).update({"lease_owner": "", "lease_until": ""})
            writes.append(Write(item.id, item.fence, update, lease_owner=self.owner))
            moves[item.id] = self._move(item, progress)
            after.append((item, progress, record))
        stale = self.store.write_many(writes, moves)
        for item, progress, record in after:
            self.stats.finished += 1
            if item.id in stale:
                self.stats.stale += 1
                log.warning(
                    "object %s: lease lost before the result was written; another process re-runs it", item.id
                )
                continue
            if record["ok"]:
                log.info(
                    "object %s: %s attempt %s ok (%s) in %.0f ms",
                    item.id,
                    record["step"],
                    record["attempt"],
                    record["status"],
                    record["duration_ms"],
                )
            else:
                log.info(
                    "object %s: %s attempt %s failed: %s",
                    item.id,
                    record["step"],
                    record["attempt"],
                    record["error"],
                )
            self._advance(item, progress, now, last=record)

    @staticmethod
    def _move(item: Tracked, new: Progress) -> Move:
        return (item.doc.get("owner", ""), item.kind, item.progress.phase.value, new.phase.value)

    def _progress_update(self, progress: Progress, now: dt.datetime) -> dict[str, Any]:
        update: dict[str, Any] = {
            "$set": {"progress": progress.for_storage(), "state": progress.phase.value, "updated": now}
        }
        if progress.due is not None:
            update["$set"]["due"] = progress.due
        else:
            update["$unset"] = {"due": ""}
        return update

    def _advance(
        self, item: Tracked, progress: Progress, now: dt.datetime, last: dict[str, Any] | None = None
    ) -> None:
        """After our write succeeded: keep the new version in memory, report the change."""
        item.fence += 1
        item.progress = progress
        item.lease_until = None
        doc = dict(item.doc)
        doc.update(fence=item.fence, progress=progress.for_storage(), state=progress.phase.value, updated=now)
        if last is not None:
            doc["last"] = last
        doc.pop("lease_owner", None)
        doc.pop("lease_until", None)
        if progress.due is not None:
            doc["due"] = progress.due
        else:
            doc.pop("due", None)
        item.doc = doc
        if progress.due is not None and progress.due <= now + self.settings.horizon:
            self._push(item)
        if self.on_change is not None:
            try:
                self.on_change(doc)
            except Exception:
                log.exception("object %s: change hook failed", item.id)

    # ----- leases

    def _next_renewal(self) -> dt.datetime | None:
        if not self._in_flight:
            return None
        third = self.settings.lease / 3
        return min(i.lease_until for i in self._in_flight.values() if i.lease_until) - 2 * third

    def _renew(self, now: dt.datetime) -> None:
        if not self._in_flight:
            return
        threshold = now + 2 * self.settings.lease / 3
        due = [
            i for i in self._in_flight.values() if i.lease_until is not None and i.lease_until <= threshold
        ]
        if not due:
            return
        lease_until = now + self.settings.lease
        self.store.renew([(i.id, i.fence) for i in due], self.owner, lease_until)
        for i in due:
            i.lease_until = lease_until

    def _sweep(self, now: dt.datetime) -> None:
        docs = [
            d
            for d in self.store.expired_leases(now, limit=500)
            if not (d.get("lease_owner") == self.owner and d["_id"] in self._in_flight)
        ]
        if docs:
            self._recover(docs, now, "lease expired")
        self._next_sweep = now + self.settings.lease / 2

    def _recover(self, docs: list[dict[str, Any]], now: dt.datetime, why: str) -> None:
        """Calls lost with their worker: the same step runs again now, with the same key."""
        writes = []
        recovered = []
        for doc in docs:
            try:
                spec = parse_plan(doc)
                progress = Progress.from_storage(doc["progress"])
            except (ValidationError, KeyError, ValueError) as exc:
                log.error("object %s: stored spec cannot be read, not recovered: %s", doc["_id"], exc)
                continue
            again = machine.recover(progress, now)
            record = {
                "generation": doc.get("generation", 1),
                "step": progress.step,
                "attempt": progress.attempt,
                "at": now,
                "ok": False,
                "interrupted": True,
                "error": f"{why} while the call was in flight (owner {doc.get('lease_owner')}); calling again",
            }
            update = self._progress_update(again, now)
            update.setdefault("$unset", {}).update({"lease_owner": "", "lease_until": ""})
            update["$push"] = {"attempts": {"$each": [record], "$slice": -ATTEMPTS_KEPT}}
            writes.append(Write(doc["_id"], doc["fence"], update))
            item = Tracked(doc["_id"], doc["kind"], doc.get("generation", 1), doc["fence"], spec, again, doc)
            recovered.append((item, again))
        stale = self.store.write_many(writes)
        for item, again in recovered:
            if item.id in stale:
                continue
            self.stats.recovered += 1
            log.warning("object %s: %s; step %s runs again", item.id, why, again.step)
            self._advance(item, again, now)
