"""Firing: held objects' due calls leave from memory, and their results come back to be written.

`fire_due` dispatches each due held object (the machine says the call
starts), hands its call to the invoker and counts how late it left;
(a parallel step's due branch steps leave as places are free, and
their results are written as they come back, the others staying out);
a call whose step has limits per key leaves only once the limiter says so
(`_gate`); `mark_long` has a call out longer than `long_call` shown as running in the
store; `accept` takes a result for the object it belongs to (a result of a
call no longer held is dropped), and `write_result` writes what it means
(`results.decide`) through the loop's writes. It owns the invoker, the ids
whose history wants pruning, and the call counts. Called by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from lambdaop.core.clock import Clock
from lambdaop.core.logs import about
from lambdaop.core.metrics import Metrics
from lambdaop.engine import lanes, machine, recurring, waves
from lambdaop.engine.limits import limits_of
from lambdaop.engine.progress import Phase, Refused
from lambdaop.engine.record import Change, adopt
from lambdaop.engine.steps import is_notice
from lambdaop.loop import results
from lambdaop.loop.events import PauseChecked, Write
from lambdaop.loop.held import Held, Holdings, Stats
from lambdaop.loop.invoker import CallResult, Job
from lambdaop.loop.limiter import Limiter
from lambdaop.loop.seats import Admission
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.writes import Writes
from lambdaop.store.contract import ObjectReads

log = logging.getLogger("lambdaop.loop")


class CallSink(Protocol):
    """What the loop needs of an invoker: take a job; results come back through `deliver`."""

    def submit(self, job: Job) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...


class Firing:
    def __init__(
        self,
        held: Holdings,
        writes: Writes,
        invoker: CallSink,
        clock: Clock,
        settings: LoopSettings,
        metrics: Metrics | None,
        stats: Stats,
    ) -> None:
        self.held, self.writes, self.invoker, self.clock = held, writes, invoker, clock
        self.settings, self.metrics, self.stats = settings, metrics, stats
        self.prune: set[str] = set()
        self.limiter: Limiter | None = None  # calls waiting for places of their limit keys
        self.paused: Mapping[str, Any] | None = None  # everything is paused (the admin's kill switch)
        self.resumed: dt.datetime | None = None  # when it last ended: lateness does not count the pause

    def fire_due(self, now: dt.datetime) -> None:
        if self.writes.writer.backlog >= self.settings.max_unwritten:  # results kept in memory are bounded
            return
        if self.paused is not None:  # everything is paused: due calls wait, held, until it ends
            return
        safe = None if self.settings.sole_owner else now + self.settings.lease / 3
        for held in self.held.due(now, self.settings.max_in_flight, safe):
            # lateness measures lambdaop: never from before the call was asked for (a past `at`,
            # a modify to a time gone by), so from its last change at the earliest
            due = held.progress.due or now
            due = max(due, held.record.updated or held.record.created or due, self.resumed or due)
            if held.progress.waiting_until is not None:  # a wait for a callback has timed out
                self.write_decision(held, results.decide_timeout(held, now, self.settings.notify), now)
                continue
            gate = self._gate(held, now)
            if gate is not None and not gate.go and gate.refused is None:
                continue  # it waits for a place of its limit key: the limiter wakes it
            try:
                steps = self._dispatch(held, now)
            except Refused as exc:
                log.warning("%s not called: %s", held.label, exc, extra=about(held.record))
                continue
            if not steps:  # a parallel step whose next branch call is not due yet
                when = lanes.next_due(held.progress.lanes, waves.branches_of(held.wave or ()))
                if when is not None:
                    self.held.arm(held, max(when, now + dt.timedelta(milliseconds=1)))
                continue
            self.held.fired(held, self.clock.monotonic())
            self.stats.progress_at = self.clock.monotonic()
            if gate is not None and gate.free_since is not None:  # lateness counts from its place freeing
                due = max(due, gate.free_since)
                if gate.waited and self.metrics is not None:
                    self.metrics.limit_wait.observe(gate.waited)
            for step in steps:
                job = results.call_for(
                    held, held.progress, self.settings.notify, step, self.settings.callbacks
                )
                if gate is not None and gate.refused is not None:  # its limit's key cannot be made
                    job = replace(job, refused=gate.refused)
                self.stats.dispatched += 1
                if self.metrics is not None:
                    self.metrics.lateness.observe(max(0.0, (now - due).total_seconds()))
                self.invoker.submit(job)

    def _gate(self, held: Held, now: dt.datetime) -> Admission | None:
        """Whether the due call may leave, when its step has limits (None: it has none, as nearly
        every call: nothing more is done for it)."""
        progress = held.progress
        found = limits_of(held.plan, progress.step) if self.limiter is not None else None
        if found is None or self.limiter is None:
            return None
        record, call = held.record, results.limit_call(held, progress)
        context = lambda: results.step_context(record, progress, progress.step)  # noqa: E731
        return self.limiter.admit(record.id, record.owner, call, progress.due or now, found, context, now)

    def _dispatch(self, held: Held, now: dt.datetime) -> list[str | None]:
        """The machine says the due call starts: the steps that call (None: the object's own step;
        a parallel step's wave: each of its due branch steps, all out until every one is back)."""
        if is_notice(held.progress.step) or lanes.parallel_of(held.plan, held.progress.step) is None:
            held.progress = machine.dispatch(held.progress, now)
            return [None]
        held.progress, ids = waves.dispatch_wave(held.plan, held.progress, now, held.wave or ())
        if ids:
            held.wave = {**(held.wave or {}), **dict.fromkeys(ids)}
        return list(ids)

    def pause_checked(self, event: PauseChecked, now: dt.datetime) -> None:
        """The pause of everything as the store has it (other processes see a change within a
        second; this process's service tells its loop at once)."""
        was, self.paused = self.paused, event.setting
        if was is not None and event.setting is None:
            self.resumed = now
            log.warning("the pause of everything has ended: due calls start")
        elif was is None and event.setting is not None:
            log.warning("everything is paused: no call starts until it is resumed (%s)", event.setting.get("reason"))  # fmt: skip

    def mark_long(self, now: dt.datetime) -> None:
        """A call out longer than `long_call` shows `running` in the store (a quick one never needs to)."""
        for held in self.held.out_since(self.clock.monotonic() - self.settings.long_call.total_seconds()):
            if held.started_written or held.writes:
                continue
            held.started_written = True
            if held.record.state != Phase.RUNNING.value:
                started = Change(updated=now, progress=held.progress, keep_due=True)
                self.writes.submit(held, Write.STARTED, held.progress, started, now, keep=True)

    def accept(self, result: CallResult, now: dt.datetime) -> None:
        """A call came back: write its result, or keep it until the object's write under way lands
        (a parallel step's: the others may stay out meanwhile)."""
        job = result.job
        if self.limiter is not None:  # its place of a limit key, if it held one, goes to the next call
            self.limiter.returned(results.job_call(job), now)
        held = self.held.get(job.object_id)
        if self.metrics is not None:
            owner = held.record.owner if held is not None else ""
            self.metrics.call(owner, job.step, result.ok, result.status, result.duration_ms / 1000)
        wave = held.wave if held is not None else None
        if held is not None and held.fired and wave is not None and wave.get(job.step, 0) is None:
            wave[job.step] = result  # written now, or once the write under way has landed
            if not any(r is None for r in wave.values()):
                self.held.returned(job.object_id)
            if not held.writes:
                self.write_back(held, now)
            return
        if (
            held is None
            or not held.fired
            or (job.step, job.attempt) != (held.progress.step, held.progress.attempt)
        ):
            if wave is None:  # (calls of a parallel step still out stay out)
                self.held.returned(job.object_id)
            log.warning("object %s: result of a call no longer held, dropped", job.object_id)
            return
        self.held.returned(job.object_id)
        if held.writes:
            held.result = [result]  # written once the earlier write is durable
        else:
            self.write_result(held, [result], now)

    def write_back(self, held: Held, now: dt.datetime) -> bool:
        """Write the results of a parallel step's calls that are back (the others stay out)."""
        wave = held.wave or {}
        done = [r for r in wave.values() if r is not None]
        if not done:
            return False
        out: dict[str, CallResult | None] = {step: None for step, r in wave.items() if r is None}
        held.wave = out or None
        self.stats.finished += len(done)
        self.write_decision(held, results.decide_wave(held, done, now, self.settings.notify, tuple(out)), now)
        return True

    def write_result(self, held: Held, done: list[CallResult], now: dt.datetime) -> None:
        self.stats.finished += len(done)
        self.write_decision(held, results.decide(held, done[0], now, self.settings.notify), now)

    def write_decision(self, held: Held, decision: results.Decision, now: dt.datetime) -> None:
        if decision.prune:
            self.prune.add(held.id)
        change = Change(updated=now, progress=decision.progress, last=decision.call, run=decision.run, outputs=decision.outputs)  # fmt: skip
        progress = decision.progress
        waiting = held.record.pending
        if waiting is not None and recurring.run_ended(held.progress, progress):
            progress = results.next_generation(held, waiting, now)
            change = adopt(waiting, progress, now, change)
        self.writes.submit(
            held,
            Write.RESULT,
            progress,
            change,
            now,
            calls=decision.calls or (decision.call,),
            ended=decision.ended,
        )

    def prune_job(self, store: ObjectReads) -> Callable[[], int]:
        """A store job that trims the history of the objects with more calls than are kept."""
        ids, self.prune = list(self.prune), set()
        return lambda: store.prune_history(ids) if ids else 0
