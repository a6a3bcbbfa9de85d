"""The pure state machine of Tasks and TaskSets: (progress, event, now) -> new progress.

No I/O and no clock: every function takes `now`. The reconciler calls
`dispatch` when work is due, `finish` when a call reports back, `recover` when
a lease expired; the service calls `cancel` and `reschedule`. Refusals are
raised as `Refused` with the reason shown to the user.

Steps: a Task has one step, `task`. A TaskSet has `task:0 … task:N-1`, a
condition check after each task but the last (`check:I`, and after the last
with `afterLast`), and `fallback`. Each step has its own attempt counter and
retry budget; a step that used its budget up ends the object (through the
fallback, for a TaskSet).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .spec import Invoke, TaskSetSpec, TaskSpec


class Phase(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})
PlanSpec = TaskSpec | TaskSetSpec


class Refused(Exception):
    """The event is not allowed in this state; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """A call's result as the machine sees it."""

    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class StepPlan:
    invoke: Invoke
    retries: int
    retry_delay: dt.timedelta


@dataclass(frozen=True)
class Progress:
    """Where an object is. Stored as a sub-document; due/in_flight mirror store fields."""

    phase: Phase
    step: str
    attempt: int = 1
    due: dt.datetime | None = None
    in_flight: bool = False
    calls: int = 0
    reason: str | None = None
    failed_step: str | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> Progress:
        return cls(**{**data, "phase": Phase(data["phase"])})

    def for_storage(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "step": self.step,
            "attempt": self.attempt,
            "due": self.due,
            "in_flight": self.in_flight,
            "calls": self.calls,
            "reason": self.reason,
            "failed_step": self.failed_step,
            "started": self.started,
            "finished": self.finished,
        }

    @property
    def final(self) -> bool:
        return self.phase in FINAL


def first_step(spec: PlanSpec) -> str:
    return "task" if isinstance(spec, TaskSpec) else "task:0"


def start(spec: PlanSpec, due: dt.datetime) -> Progress:
    """A new object, scheduled for its first call at `due`."""
    return Progress(phase=Phase.SCHEDULED, step=first_step(spec), due=due)


def step_plan(spec: PlanSpec, step: str) -> StepPlan:
    """The call a step makes and its retry budget."""
    if isinstance(spec, TaskSpec):
        return StepPlan(spec.invoke, spec.retries, spec.retryDelay)
    name, _, index = step.partition(":")
    if name == "task":
        item = spec.tasks[int(index)]
        return StepPlan(item.as_invoke(), item.retries, item.retryDelay)
    if name == "check" and spec.conditionCheck is not None:
        check = spec.conditionCheck
        return StepPlan(check.invoke, check.retries, check.retryDelay)
    if name == "fallback" and spec.fallback is not None:
        fb = spec.fallback
        return StepPlan(fb.invoke, fb.retries, fb.retryDelay)
    raise ValueError(f"no step {step!r} in this spec")


def dispatch(progress: Progress, now: dt.datetime) -> Progress:
    """The due call starts: the object is running and no longer waiting."""
    if progress.final or progress.in_flight:
        raise Refused(f"cannot call: object is {progress.phase.value}")
    return replace(
        progress,
        phase=Phase.RUNNING,
        in_flight=True,
        due=None,
        calls=progress.calls + 1,
        started=progress.started or now,
    )


def recover(progress: Progress, now: dt.datetime) -> Progress:
    """The call in flight was lost with its worker: make the same attempt again, now."""
    if not progress.in_flight:
        return progress
    return replace(progress, in_flight=False, due=now)


def finish(spec: PlanSpec, progress: Progress, outcome: Outcome, now: dt.datetime) -> Progress:
    """A call reported back: retry the step, move on, fall back, or end."""
    waiting = replace(progress, in_flight=False)
    plan = step_plan(spec, progress.step)
    if outcome.ok:
        return _after_success(spec, waiting, now)
    if progress.attempt <= plan.retries:
        return replace(waiting, attempt=progress.attempt + 1, due=now + plan.retry_delay)
    return _after_exhausted(spec, waiting, outcome, now)


def _goto(progress: Progress, step: str, due: dt.datetime) -> Progress:
    return replace(progress, step=step, attempt=1, due=due)


def _end(progress: Progress, phase: Phase, now: dt.datetime, reason: str | None = None) -> Progress:
    return replace(progress, phase=phase, due=None, finished=now, reason=reason or progress.reason)


def _after_success(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    if isinstance(spec, TaskSpec):
        return _end(progress, Phase.COMPLETED, now)
    name, _, index = progress.step.partition(":")
    last = len(spec.tasks) - 1
    check = spec.conditionCheck
    if name == "task":
        i = int(index)
        if check is not None and (i < last or check.afterLast):
            return _goto(progress, f"check:{i}", now + check.delay)
        if i < last:
            return _goto(progress, f"task:{i + 1}", now)
        return _end(progress, Phase.COMPLETED, now)
    if name == "check":
        i = int(index)
        if i < last:
            return _goto(progress, f"task:{i + 1}", now)
        return _end(progress, Phase.COMPLETED, now)
    # the fallback ran: the set has failed, whatever the fallback answered
    return _end(progress, Phase.FAILED, now)


def _after_exhausted(spec: PlanSpec, progress: Progress, outcome: Outcome, now: dt.datetime) -> Progress:
    attempts = progress.attempt
    why = outcome.error or "call failed"
    if isinstance(spec, TaskSpec):
        return _end(progress, Phase.FAILED, now, f"failed after {attempts} attempt(s): {why}")
    name, _, index = progress.step.partition(":")
    if name == "fallback":
        return _end(progress, Phase.FAILED, now, f"{progress.reason}; the fallback failed too: {why}")
    if name == "task":
        reason = f"task {int(index) + 1} failed after {attempts} attempt(s): {why}"
    else:
        reason = f"condition check after task {int(index) + 1} failed after {attempts} attempt(s): {why}"
    failed = replace(progress, failed_step=progress.step, reason=reason)
    if spec.fallback is not None and name in spec.fallback.on:
        return _goto(failed, "fallback", now)
    return _end(failed, Phase.FAILED, now)


def cancel(progress: Progress, now: dt.datetime) -> Progress:
    """Only a scheduled object (no call made yet) can be cancelled."""
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused(not_scheduled(progress, "cancelled"))
    return _end(progress, Phase.CANCELLED, now, "cancelled before its first call")


def reschedule(progress: Progress, due: dt.datetime) -> Progress:
    """Only a scheduled object can get a new start time."""
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused(not_scheduled(progress, "modified"))
    return replace(progress, due=due)


def not_scheduled(progress: Progress, verb: str) -> str:
    if progress.phase is Phase.SCHEDULED:
        return f"only a scheduled object can be {verb}; its first call has already started"
    return f"only a scheduled object can be {verb}; this one is {progress.phase.value}"
