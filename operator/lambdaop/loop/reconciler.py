"""The reconcile loop: one thread that owns every state transition and never waits on the store.

An object moves through the loop's parts in three stages:

- upcoming (`Upcoming`, fed by `Refill` and by this process's own changes):
  due within the horizon, known by id, due time and fence;
- held (`Holdings`, claimed by the `LeaseKeeper` ahead of its due time, within
  the claim window, and read back whole): at the due time its call leaves
  from memory (`results.call_for`), with no store I/O on the timer path;
- writing (`Writes`, through the group-commit writer): its result
  (`results.decide`) is written, and only once durable is the next step armed:
  held again when due within the claim window, else released to the store.

Store reads and claims run on the store thread (`Claims` sends them and
takes their answers), writes on the writer's; both answer with typed events
(`events`) on this loop's queue. Changes the service asks of held objects
come as `Request`s (`requests.plan`), so they can never race a call.
Housekeeping runs as chores on a `schedule.Scheduler` driven by the loop's
clock. `reconcile_once(now)` is one pass and what tests drive (with a
synchronous invoker, store thread and writer); `run()` repeats it, sleeping
until the next due time or a wake-up. Called by runtime; the service talks to
it through `notify`, `request`, `holds` and `live_state`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Protocol

from lambdaop.core.clock import Clock
from lambdaop.core.metrics import Metrics
from lambdaop.engine.record import StoredObject
from lambdaop.loop import results
from lambdaop.loop.chores import Chores
from lambdaop.loop.claims import Claims
from lambdaop.loop.events import (
    Action,
    Answer,
    Changed,
    Claimed,
    PauseChecked,
    Refilled,
    Released,
    Renewed,
    Request,
    StoreFailed,
    Swept,
    Write,
    Written,
)
from lambdaop.loop.firing import CallSink, Firing, Stats
from lambdaop.loop.held import Holdings
from lambdaop.loop.invoker import CallResult, Invoker
from lambdaop.loop.leases import KeeperStore, LeaseKeeper, LeaseTimes
from lambdaop.loop.limiter import Limiter
from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.loop.placejobs import PlacesFailed, PlacesRenewed, PlacesTaken
from lambdaop.loop.requests import Desk, NotHeld
from lambdaop.loop.resultlog import log_result
from lambdaop.loop.runner import Inbox, Runner
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.storethread import StoreThread
from lambdaop.loop.upcoming import Refill, Upcoming
from lambdaop.loop.writes import Next, Writes
from lambdaop.store.contract import PAUSE_ALL, Due, PlaceStore, SettingStore
from lambdaop.store.writer import Writer

log = logging.getLogger("lambdaop.loop")


class LoopStoreReads(KeeperStore, SettingStore, PlaceStore, Protocol):
    """What the loop asks of the store."""


class Reconciler:
    def __init__(
        self,
        store: LoopStoreReads,
        writer: Writer,
        clock: Clock,
        owner: str,
        env: Mapping[str, str],
        settings: LoopSettings | None = None,
        on_change: Callable[[StoredObject], None] | None = None,
        invoker: CallSink | None = None,
        io: StoreThread | None = None,
        on_flush: Callable[[], None] | None = None,
        policy: Policy = SECURE,
        metrics: Metrics | None = None,
    ) -> None:
        s = self.settings = settings or LoopSettings()
        self.store, self.writer, self.clock, self.owner = store, writer, clock, owner
        self.on_change, self.on_flush, self.metrics = on_change, on_flush, metrics
        self.io = io or StoreThread()
        self.inbox = Inbox()
        self.stats = Stats()
        self.last_pass = clock.monotonic()
        self.upcoming = Upcoming(s.horizon)
        self.refill = Refill(s.horizon, s.refill_limit)
        self.held = Holdings()
        self.leases = LeaseKeeper(
            store, owner, writer.slot, LeaseTimes(s.lease, s.orphan_grace), clock.monotonic
        )
        self.writes = Writes(writer, s.claim_window, s.lease, self.inbox.put, clock)
        invoker = invoker or Invoker(self.deliver, clock, env, s.workers, policy)
        self.firing = Firing(self.held, self.writes, invoker, clock, s, metrics, self.stats)
        limits = StoreThread(threaded=False) if not self.io.threaded else None  # (tests: inline)
        self.limiter = Limiter(store, owner, clock, self._go, self._wants, self.inbox.put, replace(s.limits, lease=s.lease), limits)  # fmt: skip
        self.firing.limiter = self.limiter
        self._limits_at: dt.datetime | None = None  # when the limiter wants to look again
        self.desk = Desk(self.held, self.leases.claiming, self.writes)
        self.claims = Claims(
            store,
            s,
            clock,
            self.io,
            self.inbox,
            self.upcoming,
            self.refill,
            self.held,
            self.leases,
            self.writes,
            self.limiter,
            self.desk,
            self.stats,
        )
        self.runner = Runner(self, clock, metrics, s.stop_grace)
        self._handlers: dict[type, Callable[[Any, dt.datetime], None]] = {
            CallResult: self.firing.accept,
            Written: self._on_written,
            Request: self.desk.take,
            Changed: self._on_changed,
            Claimed: self.claims.claimed,
            Refilled: self.claims.refilled,
            Released: self.claims.released,
            Renewed: lambda event, now: self.leases.renewed(event, self.held),
            Swept: self.claims.swept,
            StoreFailed: self.claims.store_failed,
            PauseChecked: self.firing.pause_checked,
            PlacesTaken: self.limiter.taken,
            PlacesFailed: self.limiter.failed,
            PlacesRenewed: self.limiter.renewed,
        }
        self._started = False
        self.earliest_due: dt.datetime | None = None  # of the work it knows, after its last pass (liveness)
        self.chores = chores_of(self, s, store, writer, clock.now())

    # ----- inputs (any thread)

    def notify(self, record: StoredObject, held_until: dt.datetime | None = None) -> None:
        """An object was created or changed by this process (held already, until then, when given)."""
        self.inbox.put(Changed(record, held_until))

    def deliver(self, result: CallResult) -> None:
        """A call finished (invoker thread)."""
        self.inbox.put(result)

    def request(self, action: Action, object_id: str, payload: Any = None) -> Future[Answer]:
        """Change an object this process holds, through the loop (see `events.Request`)."""
        future: Future[Answer] = Future()
        self.inbox.put(Request(action, object_id, payload, future))
        return future

    def pause_all(self, setting: Mapping[str, Any] | None) -> None:
        """Everything is paused (None: no longer), as this process's service just wrote it."""
        self.inbox.put(PauseChecked(setting))

    def holds(self, object_id: str) -> bool:
        return self.claims.holds(object_id)

    def waiting_for(self, object_id: str) -> dict[str, Any] | None:
        """What the due call of an object this process holds waits for (a place of a limit key)."""
        return self.limiter.waiting_for(object_id)

    def _go(self, object_id: str) -> None:
        """The limiter says a waiting call may leave: it fires on this pass."""
        held = self.held.get(object_id)
        if held is not None and not held.fired:
            self.held.arm(held)

    def _wants(self, object_id: str, call: str) -> bool:
        """Whether a call the limiter keeps in line is still this object's due call, here."""
        held = self.held.get(object_id)
        due = held.progress.due if held is not None else None
        return held is not None and not held.fired and due is not None and due <= self.clock.now() + dt.timedelta(milliseconds=1) and results.limit_call(held, held.progress) == call  # fmt: skip

    def live_state(self, object_id: str) -> str | None:
        """`running` while this process has the object's call out (the store may still say scheduled)."""
        held = self.held.get(object_id)
        return "running" if held is not None and held.fired else None

    def stop(self) -> None:
        self.runner.stop()

    def run(self) -> None:
        """Passes until stopped (the loop's own thread)."""
        self.runner.run()

    def shutdown_calls(self) -> None:
        self.firing.invoker.shutdown(wait=True)

    def writes_pending(self) -> int:
        """Writes of held objects handed to the writer and not answered yet."""
        return sum(h.writes for h in self.held.values())

    # ----- one pass

    def reconcile_once(self, now: dt.datetime) -> dt.datetime:
        """One pass: take events, run due chores, claim ahead, fire what is due. Answers the next wake time."""
        self.last_pass = self.clock.monotonic()
        if not self._started:
            self._started = True
            if self.settings.recover_all_at_start:
                self.leases.free_at_start()
            self.chores.run_now("refill", now)
        for step in range(5 if not (self.io.threaded and self.writer.threaded) else 1):
            if step:  # synchronous parts (tests): let them run now
                self.io.step()
                self.limiter.io.step()
                if not self.writer.threaded:
                    self.writer.run_pending()
            self.take_events(now)
            if not step:
                self.chores.run_pending_at(now)
                if self.refill.wanted():
                    self.claims.start_refill(now)
            self.claims.claim_ahead(now)
            self.firing.fire_due(now)
            if self.firing.paused is None:  # calls that began to wait ask now (paused: they stay in line)
                self._limits_at = self.limiter.tick(now)
            if not step:
                self.firing.mark_long(now)
        return self._wake_time(now)

    def take_events(self, now: dt.datetime) -> None:
        for event in self.inbox.drain():
            handler = self._handlers.get(type(event))
            try:
                if handler is None:
                    log.warning("an event of type %s is handled by nobody", type(event).__name__)
                else:
                    handler(event, now)
            except Exception:  # one bad event never stops the loop
                log.exception("event %s could not be handled", type(event).__name__)

    # ----- changes made by this process or through the store

    def _on_changed(self, event: Changed, now: dt.datetime) -> None:
        record = event.record
        if event.held_until is not None:
            if not self.claims.hold(record, event.held_until, now):
                self.claims.release([record.id])
        elif record.id not in self.held:
            if record.due is None:
                self.upcoming.discard(record.id)
            else:
                self.claims.add_upcoming(Due(record.id, record.due, record.fence), now)
            self._changed(record)  # changed through the store (the API, the folder): the reports follow

    # ----- writes landing

    def _on_written(self, event: Written, now: dt.datetime) -> None:
        pending = event.pending
        held = self.held.get(pending.id)
        if held is None:
            if pending.reply is not None:  # released meanwhile: the service changes it through the store
                pending.reply.set_exception(NotHeld(pending.id))
            return
        after = self.writes.landed(held, event, self.stats)
        for req in self.desk.landed(held):  # asks held back for this write: taken again, in order
            self.inbox.put(req, wake=False)
        if after is Next.FAILED:
            if pending.reply is not None:
                pending.reply.set_exception(NotHeld(pending.id))
            self.claims.release([held.id])
            return
        if after is Next.RESULT and held.result is not None:
            done, held.result = held.result, None
            self.firing.write_result(held, done, now)
        elif held.wave and not held.writes and self.firing.write_back(held, now):
            pass  # results of a parallel step's calls came back while this write was under way
        waiting = self.held.after_write(held, after is Next.ARM, after is Next.RELEASE)
        if waiting is not None:
            self.upcoming.add(waiting, now)
        if pending.reply is not None:
            pending.reply.set_result(Answer(held.record, later=pending.later))
        self._changed(held.record)
        if pending.why is Write.RESULT:  # last: nothing about the log line can leave the object half moved
            try:
                log_result(held.record, held.progress)
            except Exception:
                log.exception("%s: its result could not be logged", held.label)

    def _changed(self, record: StoredObject) -> None:
        try:
            if self.on_change is not None:
                self.on_change(record)
        except Exception:
            log.exception("object %s: change hook failed", record.id)

    # ----- wake time and health

    def _wake_time(self, now: dt.datetime) -> dt.datetime:
        wake = [now + dt.timedelta(seconds=min(1.0, self.chores.idle_at(now)))]
        wake += self.held.wake_times(now, self.clock.monotonic(), self.settings.long_call)
        first = self.upcoming.first_due() if not self.leases.batches else None
        if first is not None:
            wake.append(first - self.settings.claim_window)
        if self._limits_at is not None:
            wake.append(self._limits_at)
        known = (self.held.next_fire(), self.upcoming.first_due())
        self.earliest_due = min((t for t in known if t), default=None)
        return min(wake)

    def problems(self) -> list[str]:
        """Why the loop is not healthy (empty when it is)."""
        idle = self.clock.monotonic() - self.last_pass
        checks = [
            (idle > 30, f"the reconcile loop has not run for {idle:.0f}s"),
            (not self.io.alive, "the store reader thread has stopped"),
            (not self.writer.alive, "the store writer thread has stopped"),
            (not self.limiter.alive, "the limits' store thread has stopped"),
        ]
        return [why for bad, why in checks if bad]


def chores_of(
    loop: Reconciler, s: LoopSettings, store: LoopStoreReads, writer: Writer, now: dt.datetime
) -> Chores:
    """The loop's periodic jobs: refill, lease sweep and renewal, history pruning, counter folding,
    status flushes, and the check of the pause of everything."""
    chores, job = Chores(now), loop.claims.submit
    chores.add(s.refill_every, "refill", loop.claims.start_refill)
    chores.add(s.lease.total_seconds() / 2, "sweep", loop.claims.sweep)
    chores.add(s.lease.total_seconds() / 3, "renew", loop.claims.renew)
    chores.add(60, "prune", lambda now: job(loop.firing.prune_job(store), "prune", quiet=True))
    chores.add(60, "fold", lambda now: job(lambda: store.fold_slots(now, writer.slot), "fold", quiet=True))  # fmt: skip
    chores.add(1, "flush", lambda now: loop.on_flush() if loop.on_flush is not None else None)
    chores.add(s.pause_check_every, "pause", lambda now: job(lambda: PauseChecked(store.get_setting(PAUSE_ALL)), "pause check"))  # fmt: skip
    return chores
