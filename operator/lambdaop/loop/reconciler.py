"""The reconcile loop: one thread that owns every state transition and never waits on the store.

An object moves through the loop's memory in three stages:

- upcoming: due within the horizon, known by id, due time and fence. An
  incremental range read (only what newly enters the horizon) and this
  process's own creations and changes feed it.
- held: claimed ahead of its due time (within the claim window) under a lease
  of this process, and read back whole. At the due time its call leaves from
  memory, with no store I/O on the timer path.
- writing: its result goes to the writer (group commit). Only once the result
  is durable is the next step armed: held again when it is due within the
  claim window, else released to the store.

Store reads and claims run on the store thread, writes on the writer's
thread; both report back through the event queue. Cancel and modify of an
object this process holds come here as requests, so they can never race its
call: either the call is withdrawn or it has already left. Housekeeping
(refill, lease sweep, renewal, history pruning, status flush, counter
folding) runs as chores on a `schedule.Scheduler` (see chores).

`reconcile_once(now)` is one pass and what tests drive (with a synchronous
invoker, store thread and writer); `run()` repeats it, sleeping until the next
due time or a wake-up. Called by runtime; the service sends requests.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import ValidationError

from lambdaop.core.clock import Clock
from lambdaop.core.errors import Conflict
from lambdaop.core.logs import about
from lambdaop.core.metrics import Metrics
from lambdaop.engine import machine
from lambdaop.engine.machine import Outcome, Phase, PlanSpec, Progress
from lambdaop.loop.chores import Chores
from lambdaop.loop.invoker import CallResult, Invoker, Job
from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.spec import Notify, TaskSetSpec, TaskSpec
from lambdaop.store.mongo import ATTEMPTS_KEPT, OK, STALE, Op, Store
from lambdaop.store.writer import Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    lease: dt.timedelta = dt.timedelta(seconds=30)
    claim_window: dt.timedelta = dt.timedelta(seconds=2)
    claim_gather: dt.timedelta = dt.timedelta(seconds=1)  # a claim also takes what comes due this much later
    horizon: dt.timedelta = dt.timedelta(seconds=30)
    refill_every: float = 1.0
    refill_limit: int = 5000
    claim_batch: int = 2000
    workers: int = 16
    max_in_flight: int = 1024
    long_call: dt.timedelta = dt.timedelta(seconds=1)  # a call out longer than this shows `running`
    orphan_grace: dt.timedelta = dt.timedelta(seconds=5)
    recover_all_at_start: bool = False  # the embedded store has one owner: every other lease is stale
    stop_grace: float = 10.0
    notify: Notify | None = None  # the service-wide failure notification (--on-failure)


def parse_plan(doc: dict[str, Any]) -> PlanSpec:
    if doc["kind"] == "Task":
        return TaskSpec.model_validate(doc["spec"])
    return TaskSetSpec.model_validate(doc["spec"])


def idempotency_key(object_id: str, generation: int, step: str, run: int | None = None) -> str:
    """The same for every attempt of a step (of one run, for a recurring object)."""
    if run is None:
        return f"{object_id}-g{generation}-{step}"
    return f"{object_id}-g{generation}-r{run}-{step}"


RUNS_KEPT = 100


def failure_event(doc: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The JSON a failure notification posts: which object, which run, why, and its last call."""
    last = doc.get("last") or {}
    return {
        "event": "run.failed",
        "kind": doc.get("kind"),
        "name": doc.get("name"),
        "owner": doc.get("owner"),
        "id": doc.get("_id"),
        "run": progress.run,
        "reason": progress.reason,
        "failedStep": progress.failed_step,
        "at": progress.finished.isoformat() if progress.finished else None,
        "lastAttempt": {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v)
            for k, v in last.items()
            if k in ("step", "attempt", "at", "status", "error", "duration_ms", "key")
        },
    }


class CallSink(Protocol):
    """What the loop needs of an invoker: take a job; results come back through `deliver`."""

    def submit(self, job: Job) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...


class StoreThread:
    """Runs the loop's store reads and claims one after another, off the loop's thread.

    With `threaded=False` jobs wait for `step()` (unit tests: no threads, no sleeps).
    """

    def __init__(self, threaded: bool = True) -> None:
        self.threaded = threaded
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[Any], None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="store-reader", daemon=True)
            self._thread.start()

    def submit(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._jobs.put((job, done))

    def step(self) -> None:
        if self.threaded:
            return
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._one(*item)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def stop(self) -> None:
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            self._one(*item)

    @staticmethod
    def _one(job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        try:
            value: Any = job()
        except Exception as exc:  # answered to the loop, which decides
            value = exc
        try:
            done(value)
        except Exception:
            log.exception("a store job's answer could not be delivered")


@dataclass
class Entry:
    """An object due within the horizon, not yet claimed."""

    id: str
    due: dt.datetime
    fence: int
    seq: int = 0


@dataclass
class Held:
    """An object this process holds under its lease."""

    id: str
    doc: dict[str, Any]
    spec: PlanSpec
    progress: Progress
    fence: int
    until: dt.datetime  # when its lease ends unless renewed
    seq: int = 0
    fired: bool = False
    fired_at: float = 0.0  # monotonic
    writes: int = 0  # this loop's writes of it still with the writer
    result: CallResult | None = None  # a result waiting for an earlier write to finish
    started_written: bool = False
    recovered: str | None = None
    suspend_after: bool = False

    @property
    def label(self) -> str:
        return f"{self.doc.get('kind', '?')} {self.doc.get('owner', '?')}/{self.doc.get('name', '?')}"


@dataclass
class Stats:
    dispatched: int = 0
    finished: int = 0
    recovered: int = 0
    stale: int = 0
    claimed: int = 0
    lost_claims: int = 0


class NotHeld(Exception):
    """The loop does not hold that object (any more): change it through the store."""


@dataclass
class _Request:
    kind: str  # cancel | modify | replace | set
    id: str
    payload: Any
    future: Future[dict[str, Any]]


class Reconciler:
    def __init__(
        self,
        store: Store,
        writer: Writer,
        clock: Clock,
        owner: str,
        env: Mapping[str, str],
        settings: LoopSettings | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        invoker: CallSink | None = None,
        io: StoreThread | None = None,
        on_flush: Callable[[], None] | None = None,
        policy: Policy = SECURE,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        self.owner = owner
        self.settings = settings or LoopSettings()
        self.on_change = on_change
        self.on_flush = on_flush
        self.metrics = metrics
        self.invoker: CallSink = invoker or Invoker(self.deliver, clock, env, self.settings.workers, policy)
        self.io = io or StoreThread()
        self.stats = Stats()
        self.last_pass = time.monotonic()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._seq = itertools.count()
        self._upcoming: dict[str, Entry] = {}
        self._upcoming_heap: list[tuple[dt.datetime, int, str]] = []
        self._claiming: set[str] = set()
        self._claims = 0  # claim batches with the store thread
        self._held: dict[str, Held] = {}
        self._fire_heap: list[tuple[dt.datetime, int, str]] = []
        self._out: set[str] = set()  # calls that have left and not reported back
        self._long: set[str] = set()  # those of them out longer than `long_call` (they do not count as busy)
        self._out_order: collections.deque[tuple[float, str, int]] = collections.deque()
        self._waiting_requests: dict[str, list[_Request]] = {}
        self._recovered: dict[str, str] = {}
        self._prune: set[str] = set()
        self._covered: dt.datetime | None = None
        self._refilling = False
        self._refill_again = False
        self._reread = False  # the next refill reads from the start (freed objects are overdue)
        self._sweeping = False
        self._started = False
        self.chores = Chores(clock.now())
        s = self.settings
        self.chores.add(s.refill_every, "refill", self._refill)
        self.chores.add(s.lease.total_seconds() / 2, "sweep", self._sweep)
        self.chores.add(s.lease.total_seconds() / 3, "renew", self._renew)
        self.chores.add(60, "prune", self._prune_history)
        self.chores.add(60, "fold", self._fold_counters)
        self.chores.add(1, "flush", self._flush_status)

    # ----- inputs (any thread)

    def notify(self, doc: dict[str, Any], held_until: dt.datetime | None = None) -> None:
        """An object was created or changed by this process (held already, until then, when given)."""
        self._put(("doc", doc, held_until))

    def deliver(self, result: CallResult) -> None:
        """A call finished (invoker thread)."""
        self._put(result)

    def request(self, kind: str, object_id: str, payload: Any = None) -> Future[dict[str, Any]]:
        """Change an object this process holds, through the loop: cancel, modify, replace or set.

        The future answers the written document, or raises Conflict (with the
        reason) or NotHeld (change it through the store instead).
        """
        future: Future[dict[str, Any]] = Future()
        self._put(_Request(kind, object_id, payload, future))
        return future

    def holds(self, object_id: str) -> bool:
        return object_id in self._held or object_id in self._claiming

    def live_state(self, object_id: str) -> str | None:
        """`running` while this process has the object's call out (the store may still say scheduled)."""
        held = self._held.get(object_id)
        return "running" if held is not None and held.fired else None

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _put(self, event: Any) -> None:
        self._events.put(event)
        self._wake.set()

    # ----- the loop

    def run(self) -> None:
        log.info("reconcile loop started (owner %s)", self.owner)
        while not self._stopping.is_set():
            now = self.clock.now()
            t0 = time.monotonic()
            try:
                wake_at = self.reconcile_once(now)
            except Exception:
                log.exception("reconcile pass failed; retrying in 1s")
                wake_at = now + dt.timedelta(seconds=1)
            if self.metrics is not None:
                self.metrics.pass_seconds.observe(time.monotonic() - t0)
            timeout = (wake_at - self.clock.now()).total_seconds()
            if timeout > 0:
                self._wake.wait(min(timeout, 1.0))
            self._wake.clear()
        self._drain_at_stop()
        log.info("reconcile loop stopped")

    def _drain_at_stop(self) -> None:
        """Calls in flight get `stop_grace` to report back; their results are handed to the writer."""
        done = threading.Event()

        def shutdown() -> None:
            self.invoker.shutdown(wait=True)
            done.set()

        threading.Thread(target=shutdown, daemon=True).start()
        deadline = time.monotonic() + self.settings.stop_grace
        while time.monotonic() < deadline and not done.is_set():
            done.wait(0.05)
            with contextlib.suppress(Exception):
                self._take_events(self.clock.now())
        with contextlib.suppress(Exception):
            self._take_events(self.clock.now())

    def reconcile_once(self, now: dt.datetime) -> dt.datetime:
        """One pass: take events, run due chores, claim ahead, fire what is due. Answers the next wake time."""
        self.last_pass = time.monotonic()
        if not self._started:
            self._start(now)
        self._take_events(now)
        self.chores.run_pending_at(now)
        if self._refill_again and not self._refilling:
            self._refill_again = False
            self._refill(now)
        self._claim_ahead(now)
        self._fire_due(now)
        self._mark_long_calls(now)
        if not self.io.threaded or not self.writer.threaded:  # synchronous parts (tests): let them run now
            for _ in range(4):
                self.io.step()
                if not self.writer.threaded:
                    self.writer.run_pending()
                self._take_events(now)
                self._claim_ahead(now)
                self._fire_due(now)
        return self._wake_time(now)

    def _start(self, now: dt.datetime) -> None:
        self._started = True
        if self.settings.recover_all_at_start:
            freed = self.store.drop_leases_of_others(self.owner)
            for oid in freed:
                self._recovered[oid] = "lambdaop restarted while its call was due or in flight"
            if freed:
                log.warning("%d object(s) held before a restart are due again", len(freed))
        self.chores.run_now("refill", now)

    def _take_events(self, now: dt.datetime) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(event, now)
            except Exception:  # one bad event never stops the loop
                log.exception("event %s could not be handled", type(event).__name__)

    def _handle(self, event: Any, now: dt.datetime) -> None:
        if isinstance(event, CallResult):
            self._on_result(event, now)
        elif isinstance(event, _Request):
            self._on_request(event, now)
        elif event[0] == "doc":
            self._on_doc(event[1], event[2], now)
        elif event[0] == "refilled":
            self._on_refilled(event[1], now)
        elif event[0] == "claimed":
            self._on_claimed(event[1], event[2], now)
        elif event[0] == "written":
            _, oid, outcome, what, progress, fields, release, reply, until = event
            self._on_written(oid, outcome, what, progress, fields, release, reply, until, now)
        elif event[0] == "freed":
            self._on_freed(event[1], now)
        elif event[0] == "renewed":
            self._on_renewed(event[1])
        elif event[0] == "upcoming":
            for oid, due, fence in event[1]:
                self._upcoming_add(oid, due, fence, now)

    # ----- upcoming work

    def _upcoming_add(self, object_id: str, due: dt.datetime, fence: int, now: dt.datetime) -> None:
        if object_id in self._held or object_id in self._claiming:
            return
        known = self._upcoming.get(object_id)
        if known is not None and known.fence >= fence and known.due == due:
            return
        if due > now + self.settings.horizon:
            self._upcoming.pop(object_id, None)
            return
        entry = Entry(object_id, due, fence, next(self._seq))
        self._upcoming[object_id] = entry
        heapq.heappush(self._upcoming_heap, (due, entry.seq, object_id))

    def _on_doc(self, doc: dict[str, Any], held_until: dt.datetime | None, now: dt.datetime) -> None:
        oid = doc["_id"]
        if held_until is not None:
            if not self._hold(doc, held_until, now):
                self._release([oid])
            return
        if oid in self._held:
            return
        due = doc.get("due")
        if due is None:
            self._upcoming.pop(oid, None)
            return
        self._upcoming_add(oid, due, doc.get("fence", 0), now)

    def _refill(self, now: dt.datetime) -> None:
        if self._refilling:
            return
        self._refilling = True
        after, until, limit = self._covered, now + self.settings.horizon, self.settings.refill_limit
        if self._reread:
            after, self._reread = None, False

        def job() -> tuple[list[dict[str, Any]], dt.datetime, bool]:
            docs = self.store.due_between(after, until, limit)
            if len(docs) >= limit:  # more than one read holds: continue from the last one
                return docs, docs[-1]["due"] - dt.timedelta(microseconds=1), True
            return docs, until, False

        self.io.submit(job, lambda value: self._put(("refilled", value)))

    def _on_refilled(self, value: Any, now: dt.datetime) -> None:
        self._refilling = False
        if isinstance(value, Exception):
            log.warning("refill failed (%s); the next one retries", value)
            return
        docs, covered, more = value
        self._covered = covered
        self._refill_again = more or self._reread  # a reread asked for while this one was out
        for d in docs:
            self._upcoming_add(d["_id"], d["due"], d.get("fence", 0), now)

    # ----- claiming ahead

    def _claim_ahead(self, now: dt.datetime) -> None:
        """Claim, in one batch, what comes due within the claim window (and a little beyond, so claims are few)."""
        if (
            self._claims
            or not self._upcoming_heap
            or self._upcoming_heap[0][0] > now + self.settings.claim_window
        ):
            return
        limit = now + self.settings.claim_window + self.settings.claim_gather
        batch: list[Entry] = []
        while self._upcoming_heap and self._upcoming_heap[0][0] <= limit:
            _, seq, oid = heapq.heappop(self._upcoming_heap)
            entry = self._upcoming.get(oid)
            if entry is None or entry.seq != seq:
                continue
            del self._upcoming[oid]
            batch.append(entry)
            if len(batch) >= self.settings.claim_batch:
                self._claim(batch, now)
                batch = []
        if batch:
            self._claim(batch, now)

    def _claim(self, batch: list[Entry], now: dt.datetime) -> None:
        ids = [e.id for e in batch]
        self._claiming.update(ids)
        self._claims += 1
        until = max(max(e.due for e in batch), now) + self.settings.lease
        owner = self.owner

        def job() -> tuple[set[str], list[dict[str, Any]], dt.datetime]:
            got = self.store.claim(owner, until, ids)
            return got, self.store.fetch(got), until

        self.io.submit(job, lambda value: self._put(("claimed", batch, value)))

    def _on_claimed(self, batch: list[Entry], value: Any, now: dt.datetime) -> None:
        self._claims -= 1
        asked = [e.id for e in batch]
        self._claiming.difference_update(asked)
        if isinstance(value, Exception):
            log.warning("claim of %d object(s) failed (%s); they are tried again", len(asked), value)
            for e in batch:
                self._upcoming_add(e.id, e.due, e.fence, now)
            self._answer_waiting(asked)
            return
        got, docs, until = value
        earliest = min(e.due for e in batch)
        if earliest < now and self.clock.now() - earliest > dt.timedelta(milliseconds=50):
            log.warning(
                "a claim of %d object(s) finished %.0f ms after the first was due (the store is slow); "
                "those calls leave late",
                len(batch),
                (self.clock.now() - earliest).total_seconds() * 1000,
            )
        self.stats.claimed += len(got)
        self.stats.lost_claims += len(asked) - len(got)
        by_id = {d["_id"]: d for d in docs}
        unwanted: list[str] = []
        for oid in got:
            doc = by_id.get(oid)
            due = doc.get("due") if doc else None
            if doc is None or due is None or due > now + 2 * self.settings.claim_window:
                unwanted.append(oid)  # changed since it was read: not ours to call now
                continue
            if not self._hold(doc, until, now):
                unwanted.append(oid)
        if unwanted:
            self._release(unwanted)
        self._answer_waiting(asked)

    def _hold(self, doc: dict[str, Any], until: dt.datetime, now: dt.datetime) -> bool:
        oid = doc["_id"]
        try:
            spec = parse_plan(doc)
            progress = Progress.from_storage(doc["progress"])
        except (ValidationError, KeyError, ValueError, TypeError) as exc:
            log.error("object %s: its stored document cannot be read (written by a newer version?); skipped: %s", oid, exc, extra=about(doc))  # fmt: skip
            return False
        if progress.in_flight:  # its call was out when its last holder stopped
            progress = machine.recover(progress, now)
        due = doc.get("due") or progress.due or now
        progress = replace(progress, due=due)
        held = Held(
            oid, doc, spec, progress, doc.get("fence", 0), until, recovered=self._recovered.pop(oid, None)
        )
        self._held[oid] = held
        caught = machine.catch_up(spec, progress, now) if spec.schedule is not None else progress
        if caught != progress:  # runs were missed while the service was down: catchUp decides
            log.warning("%s missed runs while the service was down; catchUp %s: next run at %s",
                        held.label, spec.schedule.catchUp if spec.schedule else "", caught.scheduled, extra=about(doc))  # fmt: skip
            self._write(held, "catchup", caught, now, keep=caught.due is not None and caught.due <= now + self.settings.claim_window)  # fmt: skip
            return True
        self._arm(held)
        return True

    def _arm(self, held: Held) -> None:
        assert held.progress.due is not None
        held.seq = next(self._seq)
        heapq.heappush(self._fire_heap, (held.progress.due, held.seq, held.id))

    def _release(self, ids: list[str]) -> None:
        for oid in ids:
            self._held.pop(oid, None)
            self._out.discard(oid)
            self._long.discard(oid)
        owner = self.owner

        def job() -> list[tuple[str, dt.datetime, int]]:
            self.store.release(owner, ids)
            return [(d["_id"], d["due"], d.get("fence", 0)) for d in self.store.fetch(ids) if d.get("due")]

        def done(value: Any) -> None:
            if isinstance(value, Exception):
                log.warning("release failed (%s); the leases expire by themselves", value)
            else:
                self._put(("upcoming", value))

        self.io.submit(job, done)

    def _answer_waiting(self, ids: list[str]) -> None:
        for oid in ids:
            for req in self._waiting_requests.pop(oid, []):
                self._events.put(req)

    # ----- firing

    def _fire_due(self, now: dt.datetime) -> None:
        while (
            self._fire_heap and self._fire_heap[0][0] <= now and len(self._out) < self.settings.max_in_flight
        ):
            _, seq, oid = heapq.heappop(self._fire_heap)
            held = self._held.get(oid)
            if held is None or held.seq != seq or held.fired:
                continue
            if held.writes:  # a change of ours is being written: it is armed again once durable
                continue
            due = held.progress.due or now
            try:
                progress = machine.dispatch(held.progress, now)
            except machine.Refused as exc:
                log.warning("%s not called: %s", held.label, exc, extra=about(held.doc))
                continue
            held.progress = progress
            held.fired = True
            held.fired_at = time.monotonic()
            self._out.add(oid)
            self._out_order.append((held.fired_at, oid, held.seq))
            plan = machine.step_plan(held.spec, progress.step, self.settings.notify)
            invoke = plan.invoke
            if progress.step == "notify":
                invoke = invoke.model_copy(
                    update={"method": "POST", "body": failure_event(held.doc, progress)}
                )
            generation = held.doc.get("generation", 1)
            run = progress.run if held.spec.schedule is not None else None
            job = Job(oid, held.fence, progress.step, progress.attempt, idempotency_key(oid, generation, progress.step, run), invoke)  # fmt: skip
            self.stats.dispatched += 1
            if self.metrics is not None:
                self.metrics.lateness.observe(max(0.0, (now - due).total_seconds()))
            log.debug("%s calling %s (step %s, attempt %s)", held.label, plan.invoke.url, progress.step, progress.attempt, extra=about(held.doc, progress.step, progress.attempt))  # fmt: skip
            self.invoker.submit(job)

    def _mark_long_calls(self, now: dt.datetime) -> None:
        """A call out longer than `long_call` shows `running` in the store (a quick one never needs to)."""
        cutoff = time.monotonic() - self.settings.long_call.total_seconds()
        while self._out_order and self._out_order[0][0] <= cutoff:
            _, oid, seq = self._out_order.popleft()
            held = self._held.get(oid)
            if held is None or held.seq != seq or not held.fired:
                continue
            if oid in self._out:
                self._long.add(oid)
            if held.started_written or held.writes:
                continue
            held.started_written = True
            if held.doc.get("state") != Phase.RUNNING.value:
                self._write(held, "started", held.progress, now, keep=True)

    # ----- results and writes

    def _on_result(self, result: CallResult, now: dt.datetime) -> None:
        job = result.job
        held = self._held.get(job.object_id)
        if self.metrics is not None:
            owner = held.doc.get("owner", "") if held is not None else ""
            self.metrics.call(owner, job.step, result.ok, result.status, result.duration_ms / 1000)
        self._out.discard(job.object_id)
        self._long.discard(job.object_id)
        if (
            held is None
            or not held.fired
            or (job.step, job.attempt) != (held.progress.step, held.progress.attempt)
        ):
            log.warning("object %s: result of a call no longer held, dropped", job.object_id)
            return
        if held.writes:
            held.result = result  # written once the earlier write is durable
            return
        self._write_result(held, result, now)

    def _write_result(self, held: Held, result: CallResult, now: dt.datetime) -> None:
        self.stats.finished += 1
        ended = result.started + dt.timedelta(milliseconds=result.duration_ms)
        try:
            outcome = Outcome(result.ok, result.error, result.kind, result.retry_after)
            progress = machine.finish(held.spec, held.progress, outcome, ended, self.settings.notify)
            if held.suspend_after and held.spec.schedule is not None and not progress.final:
                held.suspend_after = False
                progress = replace(
                    progress, suspended=True, due=None if progress.phase is Phase.SCHEDULED else progress.due
                )
        except Exception as exc:  # one result that cannot be decided fails its object alone
            log.exception("%s: its result cannot be decided", held.label, extra=about(held.doc))
            progress = replace(
                held.progress, phase=Phase.FAILED, in_flight=False, due=None, finished=now, reason=f"internal error: {exc}"
            )  # fmt: skip
        job = result.job
        record: dict[str, Any] = {
            "generation": held.doc.get("generation", 1),
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
        if held.spec.schedule is not None:
            record["run"] = held.progress.run
        if progress.delay_reason is not None and progress.step == job.step and progress.attempt > job.attempt:
            record["nextDelayMs"], record["delayReason"] = progress.delay_ms, progress.delay_reason
        if held.recovered:
            record["recovered"] = held.recovered
            held.recovered = None
        if progress.calls > ATTEMPTS_KEPT:
            self._prune.add(held.id)
        summary = machine.run_summary(held.progress, progress) if held.spec.schedule is not None else None
        self._write(held, "result", progress, now, record=record, summary=summary)

    def _write(
        self,
        held: Held,
        what: str,
        progress: Progress,
        now: dt.datetime,
        record: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        keep: bool = False,
        reply: Future[dict[str, Any]] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Hand one of the loop's writes of a held object to the writer (fenced, under its lease)."""
        release = not keep and (progress.due is None or progress.due > now + self.settings.claim_window)
        until = max(held.until, (progress.due or now) + self.settings.lease)
        stored = replace(progress, in_flight=progress.in_flight and what == "started")
        fields: dict[str, Any] = {
            "progress": stored.for_storage(),
            "state": progress.phase.value,
            "updated": now,
            **(extra or {}),
        }
        update: dict[str, Any] = {"$set": fields}
        if record is not None:
            fields["last"] = record
        if what == "started":
            pass  # `due` stays: if this process dies, the call is found and made again
        elif progress.due is not None:
            fields["due"] = progress.due
        else:
            update["$unset"] = {"due": ""}
        if summary is not None:
            update["$push"] = {"runs": {"$each": [summary], "$slice": -RUNS_KEPT}}
            fields["lastRun"] = summary
        doc = held.doc
        op = Op(
            held.id,
            doc.get("owner", ""),
            doc.get("kind", ""),
            doc.get("state"),
            progress.phase.value,
            fence=held.fence + held.writes,
            update=update,
            leased=True,
            release=release,
            until=None if release else until,
            attempts=[record] if record is not None else [],
        )
        held.writes += 1
        soon = progress.due is not None and progress.due <= now + dt.timedelta(seconds=self.writer.linger)
        self.writer.submit(
            op,
            lambda outcome: self._put(
                ("written", held.id, outcome, what, progress, fields, release, reply, until)
            ),
            urgent=soon or reply is not None,  # the next step is due now, or somebody waits: no lingering
        )

    def _on_written(
        self,
        oid: str,
        outcome: str,
        what: str,
        progress: Progress,
        fields: dict[str, Any],
        release: bool,
        reply: Future[dict[str, Any]] | None,
        until: dt.datetime,
        now: dt.datetime,
    ) -> None:
        held = self._held.get(oid)
        if held is None:
            if reply is not None:
                reply.set_exception(Conflict(f"object {oid} changed meanwhile; try again"))
            return
        held.writes -= 1
        if outcome != OK:
            self._write_failed(held, outcome, what, reply)
            return
        held.fence += 1
        held.until = max(held.until, until)
        doc = {**held.doc, **fields, "fence": held.fence}
        if "due" not in fields and what not in ("started", "set"):
            doc.pop("due", None)
        held.doc = doc
        if what in ("started", "set"):
            if held.result is not None and not held.writes:
                result, held.result = held.result, None
                self._write_result(held, result, now)
            elif not held.fired and not held.writes:
                self._arm(held)
            if reply is not None:
                reply.set_result(doc)
            self._changed(doc)
            return
        held.progress = replace(progress, in_flight=False)
        held.fired = False
        held.started_written = False
        if isinstance(fields.get("spec"), dict):
            with contextlib.suppress(ValidationError, KeyError, ValueError):
                held.spec = parse_plan(doc)
        if release:
            self._held.pop(oid, None)
            self._out.discard(oid)
            self._long.discard(oid)
            if progress.due is not None and not progress.final:
                self._upcoming_add(oid, progress.due, held.fence, now)
        else:
            self._arm(held)
        if reply is not None:
            reply.set_result(doc)
        self._changed(doc)
        if what == "result":  # last: nothing about the log line can leave the object half moved
            try:
                self._log_result(held, progress)
            except Exception:
                log.exception("%s: its result could not be logged", held.label)

    def _write_failed(
        self, held: Held, outcome: str, what: str, reply: Future[dict[str, Any]] | None
    ) -> None:
        self.stats.stale += outcome == STALE
        if outcome == STALE:
            log.warning("%s: its lease was lost or it changed before the %s was written; another process runs it", held.label, what, extra=about(held.doc))  # fmt: skip
        else:
            log.error("%s: the %s could not be written (%s); it is released and will run again", held.label, what, outcome, extra=about(held.doc))  # fmt: skip
        if reply is not None:
            reply.set_exception(Conflict(f"{held.label} changed meanwhile; try again"))
        self._release([held.id])

    def _log_result(self, held: Held, progress: Progress) -> None:
        """One line per call; a line when a run ends: `Task admin/hello completed after 1 attempt (200) in 4 ms`."""
        last = held.doc.get("last") or {}
        fields = about(held.doc, last.get("step"), last.get("attempt"))
        took = last.get("duration_ms")
        spent = f" in {took:.0f} ms" if isinstance(took, int | float) else ""
        status = f" ({last.get('status')})" if last.get("status") else ""
        if last.get("step") == "notify":
            log.info("%s: failure notification %s%s%s", held.label, progress.notified or "pending", status, spent, extra=fields)  # fmt: skip
            return
        ended = (
            progress.final or progress.run > (last.get("run") or progress.run) or progress.step == "notify"
        )
        if ended:
            result = progress.last_result or progress.phase.value
            attempts = last.get("attempt", 1)
            run = f" run {last.get('run')}" if last.get("run") else ""
            why = f": {progress.last_reason}" if result == "failed" and progress.last_reason else ""
            log.info("%s%s %s after %s attempt%s%s%s%s", held.label, run, result, attempts, "" if attempts == 1 else "s", status, spent, why, extra=fields)  # fmt: skip
        else:
            outcome = "ok" if last.get("ok") else f"failed: {last.get('error')}"
            retry = f"; next try in {last['nextDelayMs'] / 1000:g}s ({last.get('delayReason')})" if last.get("nextDelayMs") is not None else ""  # fmt: skip
            log.info("%s: %s attempt %s %s%s", held.label, last.get("step"), last.get("attempt"), outcome, retry, extra=fields)  # fmt: skip

    def _changed(self, doc: dict[str, Any]) -> None:
        if self.on_change is not None:
            try:
                self.on_change(doc)
            except Exception:
                log.exception("object %s: change hook failed", doc.get("_id"))

    # ----- requests from the service

    def _on_request(self, req: _Request, now: dt.datetime) -> None:
        held = self._held.get(req.id)
        if held is None:
            if req.id in self._claiming:
                self._waiting_requests.setdefault(req.id, []).append(req)
            else:
                req.future.set_exception(NotHeld(req.id))
            return
        try:
            if req.kind == "set":
                self._write(held, "set", held.progress, now, extra=req.payload, keep=True, reply=req.future)
                return
            if req.kind == "suspend" and (held.fired or held.writes):  # takes effect when this run ends
                held.suspend_after = True
                req.future.set_result({**held.doc, "suspendAfterRun": True})
                return
            if held.fired or held.writes:
                verb = "cancelled" if req.kind == "cancel" else "modified"
                stored = replace(held.progress, phase=Phase(held.doc.get("state", Phase.SCHEDULED.value)))
                raise machine.Refused(machine.not_scheduled(stored, verb))
            if req.kind == "cancel":
                new = machine.cancel(held.progress, now)
                self._write(held, "cancel", new, now, extra=req.payload, reply=req.future)
            elif req.kind == "modify":
                new = machine.reschedule(held.progress, req.payload)
                self._write(held, "modify", new, now, reply=req.future)
            elif req.kind == "replace":
                fields, fresh = req.payload
                machine.reschedule(held.progress, fresh.due)  # refused unless scheduled
                self._write(held, "replace", fresh, now, extra=fields, reply=req.future)
            elif req.kind == "suspend":
                self._write(held, "suspend", machine.suspend(held.spec, held.progress), now, reply=req.future)
            elif req.kind == "resume":
                self._write(
                    held, "resume", machine.resume(held.spec, held.progress, now), now, reply=req.future
                )
            else:
                raise ValueError(f"unknown request {req.kind}")
        except machine.Refused as exc:
            req.future.set_exception(Conflict(str(exc)))

    # ----- leases

    def _renew(self, now: dt.datetime) -> None:
        threshold = now + 2 * self.settings.lease / 3
        until = now + self.settings.lease
        due = [h.id for h in self._held.values() if h.until <= threshold]
        for oid in due:
            self._held[oid].until = until
        owner = self.owner
        info = {"owner": owner, "at": now}

        def job() -> set[str]:
            self.store.heartbeat(self.writer.slot, now + self.settings.lease, info)
            return self.store.renew(owner, due, until) if due else set()

        self.io.submit(job, lambda value: self._put(("renewed", value)))

    def _on_renewed(self, value: Any) -> None:
        if isinstance(value, Exception):
            log.warning("lease renewal failed (%s); the next one retries", value)
            return
        for oid in value:
            held = self._held.get(oid)
            if held is None or held.writes:  # released by our own write meanwhile
                continue
            del self._held[oid]
            self._out.discard(oid)
            self._long.discard(oid)
            log.warning(
                "%s: its lease was taken over by another process; dropped", held.label, extra=about(held.doc)
            )

    def _sweep(self, now: dt.datetime) -> None:
        """Free leases of processes that stopped, and find due work that nobody holds."""
        if self._sweeping:
            return
        self._sweeping = True
        owner, grace = self.owner, self.settings.orphan_grace
        live = set(self._held) | self._claiming
        known = live | set(self._upcoming)

        def job() -> tuple[list[dict[str, Any]], dict[str, str]]:
            freed: dict[str, str] = {}
            for process in self.store.lapsed(now):  # one that died inside a transaction stalls the store
                if process != owner:
                    self.store.end_sessions_of(process, now)
            by_holder: dict[Any, list[str]] = {}
            for lease in self.store.expired_leases(now):
                by_holder.setdefault(lease.get("owner"), []).append(lease["_id"])
            for holder, ids in by_holder.items():
                if holder == owner:  # left behind by a write that failed
                    self.store.drop_leases(holder, [i for i in ids if i not in live], now)
                    continue
                self.store.end_sessions_of(str(holder), now)  # it may have died inside a transaction
                why = f"the lease of {holder} expired while its call was due or in flight"
                freed.update(dict.fromkeys(self.store.drop_leases(holder, ids, now), why))
            overdue = [d for d in self.store.due_between(None, now - grace, 1000) if d["_id"] not in known]
            held = self.store.holders([d["_id"] for d in overdue[:200]])
            light = [d for d in overdue[:200] if d["_id"] not in held]
            return light, freed

        self.io.submit(job, lambda value: self._put(("freed", value)))

    def _on_freed(self, value: Any, now: dt.datetime) -> None:
        self._sweeping = False
        if isinstance(value, Exception):
            log.warning("lease sweep failed (%s); the next one retries", value)
            return
        light, freed = value
        for oid, why in freed.items():
            self._recovered[oid] = why
            self.stats.recovered += 1
        if freed:
            log.warning("%d object(s) of a stopped process are due again", len(freed))
            self._refill_again = self._reread = True  # read the freed objects (overdue) with the rest
        for d in light:
            self._upcoming_add(d["_id"], d["due"], d.get("fence", 0), now)

    # ----- other chores

    def _prune_history(self, now: dt.datetime) -> None:
        ids, self._prune = list(self._prune), set()
        if ids:
            self.io.submit(lambda: self.store.prune_history(ids), lambda value: None)

    def _fold_counters(self, now: dt.datetime) -> None:
        slot = self.writer.slot
        self.io.submit(lambda: self.store.fold_slots(now, slot), lambda value: None)

    def _flush_status(self, now: dt.datetime) -> None:
        if self.on_flush is not None:
            self.on_flush()

    # ----- timing

    def _wake_time(self, now: dt.datetime) -> dt.datetime:
        candidates = [now + dt.timedelta(seconds=min(1.0, self.chores.idle_at(now)))]
        if self._out_order:  # a call becomes long (and stops counting as busy)
            left = self._out_order[0][0] + self.settings.long_call.total_seconds() - time.monotonic()
            candidates.append(now + dt.timedelta(seconds=max(0.0, left)))
        while self._fire_heap:
            due, seq, oid = self._fire_heap[0]
            held = self._held.get(oid)
            if held is None or held.seq != seq or held.fired:
                heapq.heappop(self._fire_heap)
                continue
            candidates.append(due)
            break
        while self._upcoming_heap and not self._claims:
            due, seq, oid = self._upcoming_heap[0]
            entry = self._upcoming.get(oid)
            if entry is None or entry.seq != seq:
                heapq.heappop(self._upcoming_heap)
                continue
            candidates.append(due - self.settings.claim_window)
            break
        return min(candidates)

    def problems(self) -> list[str]:
        """Why the loop is not healthy (empty when it is)."""
        out = []
        if time.monotonic() - self.last_pass > 30:
            out.append(f"the reconcile loop has not run for {time.monotonic() - self.last_pass:.0f}s")
        if not self.io.alive:
            out.append("the store reader thread has stopped")
        if not self.writer.alive:
            out.append("the store writer thread has stopped")
        return out
