"""The pure state machine of Tasks and TaskSets: (progress, event, now) -> new progress.

No I/O and no clock: every function takes `now`. The reconciler calls
`dispatch` when work is due, `finish` when a call reports back, `recover` when
a lease expired and `catch_up` for a recurring object whose run was missed;
the service calls `cancel`, `reschedule`, `suspend` and `resume`. Refusals
are raised as `Refused` with the reason shown to the user.

Steps: a Task has one step, `task`. A TaskSet has `task:0 … task:N-1`, a
condition check after each task but the last (`check:I`, and after the last
with `afterLast`), and `fallback`; one with named `steps` has `step:NAME` for
each, `check:NAME` after a step with its own condition check, and `fallback`. Each step has its own attempt counter and
retry policy (delays in `retrypolicy`); a step that used its budget up ends
the run (through the fallback, for a TaskSet). A run that ends failed calls
the `notify` step when there is one (`onFailure`). Notifications (`notify:`
entries) are steps too, `notify:EVENT:I`: those of `started` before the run's
first call, those of `succeeded` or `failed` (and then `onFailure`) once it has
ended; a notification that fails after its retries never changes the run's
result. A recurring object then starts its next run (`run` + 1, state
`scheduled`) until its schedule ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from lambdaop.engine import lanes, recurrence, retrypolicy
from lambdaop.engine.lanes import Lane
from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.spec import Invoke, Notify, RetryFields, TaskSetSpec, TaskSpec, WaitForCallback


class Phase(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})
PlanSpec = TaskSpec | TaskSetSpec
MISSED_AFTER = dt.timedelta(minutes=1)  # a recurring run this late was missed (the service was down)


class Refused(Exception):
    """The event is not allowed in this state; the message says why."""


@dataclass(frozen=True)
class StepPlan:
    invoke: Invoke
    policy: RetryFields


@dataclass(frozen=True)
class Progress:
    """Where an object is. Stored as a sub-document; `due` mirrors the store field."""

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
    run: int = 1
    scheduled: dt.datetime | None = None  # the run's time on the schedule (recurring objects)
    anchor: dt.datetime | None = None  # where a rate (`every`) counts from
    salt: int = 0  # makes jitter repeatable per object
    notify: bool = False  # the run has ended and its notifications are still to be delivered
    notified: str | None = None  # delivered | failed
    skipped: int = 0  # runs missed or skipped so far
    delay_ms: float | None = None  # the wait chosen before this retry, and why
    delay_reason: str | None = None
    suspended: bool = False
    last_result: str | None = None  # how the last run ended (completed, failed), for recurring objects
    last_reason: str | None = None
    lanes: tuple[Lane, ...] = ()  # the branches of the parallel step it is at (`lanes`)
    waiting_until: dt.datetime | None = None  # a waitForCallback step's call succeeded: its wait ends then
    expired: tuple[str, ...] = ()  # waits that timed out lately: a late callback is recorded
    answered: str | None = None  # a callback that came while its call was out (`callbacks`)

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> Progress:
        branches = tuple(Lane.from_storage(b) for b in data.get("lanes") or ())
        expired = tuple(data.get("expired") or ())
        return cls(**{**data, "phase": Phase(data["phase"]), "lanes": branches, "expired": expired})

    def for_storage(self) -> dict[str, Any]:
        """Stored as a sub-document (the fields of parallel steps and callbacks only when they are set)."""
        out = {**self.__dict__, "phase": self.phase.value, "lanes": [lane.for_storage() for lane in self.lanes], "expired": list(self.expired)}  # fmt: skip
        return {
            k: v for k, v in out.items() if k not in ("lanes", "waiting_until", "expired", "answered") or v
        }

    @property
    def final(self) -> bool:
        return self.phase in FINAL


def notices(spec: PlanSpec, event: str, notify: Notify | None = None) -> list[str]:
    """The notification steps an event of a run calls, in order (`onFailure` last)."""
    out = [f"notify:{event}:{i}" for i, n in enumerate(spec.notify or ()) if event in n.on]
    if event == "failed" and (spec.onFailure or notify) is not None:
        out.append("notify")
    return out


def is_notice(step: str) -> bool:
    """Whether a step is a notification (`notify`, or `notify:EVENT:I`)."""
    return step == "notify" or step.startswith("notify:")


def notice_event(step: str) -> str:
    """The event a notification step tells of."""
    return "failed" if step == "notify" else step.split(":")[1]


def first_step(spec: PlanSpec) -> str:
    """Where a run begins: its `started` notifications, else its first call."""
    started = notices(spec, "started")
    return started[0] if started else first_call(spec)


def first_call(spec: PlanSpec) -> str:
    if isinstance(spec, TaskSpec):
        return "task"
    return f"step:{spec.steps[0].name}" if spec.steps else "task:0"


def start(spec: PlanSpec, due: dt.datetime, salt: int = 0, now: dt.datetime | None = None) -> Progress:
    """A new object, scheduled for its first call at `due` (a recurring one: its first run after `now`)."""
    schedule = spec.schedule
    if schedule is None or now is None:
        return Progress(phase=Phase.SCHEDULED, step=first_step(spec), due=due, salt=salt)
    first = recurrence.next_run(schedule, now - dt.timedelta(microseconds=1), now)
    if first is None:
        return Progress(phase=Phase.COMPLETED, step=first_step(spec), salt=salt, anchor=now, finished=now,
                        reason="the schedule has ended: no run after its end time")  # fmt: skip
    progress = Progress(phase=Phase.SCHEDULED, step=first_step(spec), salt=salt, anchor=now, scheduled=first)
    return replace(progress, due=None if spec.suspended else first + recurrence.jitter(schedule, salt, 1), suspended=spec.suspended)  # fmt: skip


def first_due(spec: PlanSpec, now: dt.datetime) -> dt.datetime:
    """When a one-time object applied at `now` first comes due (`at`, or after its delay)."""
    if spec.at is not None:
        return spec.at.astimezone(dt.UTC)
    delay = spec.after if isinstance(spec, TaskSpec) else spec.initialDelay
    return now + (delay or dt.timedelta(0))


def run_ended(before: Progress, after: Progress) -> bool:
    """Whether going from `before` to `after` ended a run (its failure notification, if any, done)."""
    if after.notify:
        return False
    return after.run > before.run or (after.final and (not before.final or before.notify))


def step_plan(spec: PlanSpec, step: str, notify: Notify | None = None) -> StepPlan:
    """The call a step makes and its retry policy."""
    if step == "notify":
        target = spec.onFailure or notify
        if target is None:
            raise ValueError("no failure notification configured")
        return StepPlan(target.invoke, target)
    if step.startswith("notify:"):
        entry = (spec.notify or [])[int(step.rpartition(":")[2])]
        return StepPlan(entry.invoke, entry)
    if isinstance(spec, TaskSpec):
        return StepPlan(spec.invoke, spec)
    name, _, index = step.partition(":")
    branch = lanes.parse_lane_step(step) if spec.steps is not None else None
    if branch is not None:
        inner = lanes.branch_step(spec, step)
        return StepPlan(inner.call, inner)
    if spec.steps is not None and name in ("step", "check"):
        named = spec.step_named(index)
        if name == "step":
            return StepPlan(named.call, named)
        if named.conditionCheck is not None:
            return StepPlan(named.conditionCheck.invoke, named.conditionCheck)
    if name == "task" and spec.tasks is not None:
        item = spec.tasks[int(index)]
        return StepPlan(item.as_invoke(), item)
    if name == "check" and spec.conditionCheck is not None:
        return StepPlan(spec.conditionCheck.invoke, spec.conditionCheck)
    if name == "fallback" and spec.fallback is not None:
        return StepPlan(spec.fallback.invoke, spec.fallback)
    raise ValueError(f"no step {step!r} in this spec")


def dispatch(progress: Progress, now: dt.datetime) -> Progress:
    """The due call starts: the object is running (a failure notification leaves the state alone)."""
    if (progress.final and not progress.notify) or progress.in_flight:
        raise Refused(f"cannot call: object is {progress.phase.value}")
    phase = progress.phase if progress.notify else Phase.RUNNING
    return replace(progress, phase=phase, in_flight=True, due=None, calls=progress.calls + 1,
                   started=progress.started or now)  # fmt: skip


def recover(progress: Progress, now: dt.datetime) -> Progress:
    """The call in flight was lost with its worker: make the same attempt again, now."""
    if not progress.in_flight:
        return progress
    return replace(progress, in_flight=False, due=now)


def finish(
    spec: PlanSpec, progress: Progress, outcome: Outcome, now: dt.datetime, notify: Notify | None = None
) -> Progress:
    """A call reported back: retry the step, move on, fall back, notify, or end the run."""
    waiting = replace(progress, in_flight=False, delay_ms=None, delay_reason=None)
    plan = step_plan(spec, progress.step, notify)
    if is_notice(progress.step):
        delivered = outcome.ok
        if not delivered:
            wait = retrypolicy.delay(plan.policy, progress.attempt, outcome, progress.salt, "notify")
            if wait is not None:
                return _retry(waiting, wait, now)
        return _after_notice(spec, waiting, delivered, now, notify)
    callback = _callback_of(spec, progress.step) if progress.waiting_until is None else None
    if outcome.ok and callback is not None:  # its call succeeded: now the wait for the callback (`callbacks`)
        said, waiting = progress.answered, replace(waiting, answered=None)
        if said is None:
            return replace(waiting, waiting_until=now + callback.timeout, due=now + callback.timeout)
        why = said.partition(":")[2] or "the callback said failure"  # it came while the call was out
        outcome = Outcome(True) if said == "success" else Outcome(False, why, Failure.BODY)
    waiting = replace(waiting, answered=None)
    if outcome.ok:
        return _after_success(spec, waiting, now, notify)
    wait = retrypolicy.delay(plan.policy, progress.attempt, outcome, progress.salt, progress.step)
    if wait is not None:
        return _retry(waiting, wait, now)
    return _after_exhausted(spec, waiting, outcome, now, notify)


def _callback_of(spec: PlanSpec, step: str) -> WaitForCallback | None:
    if not isinstance(spec, TaskSetSpec) or spec.steps is None or not step.startswith("step:") or "/" in step:
        return None
    return spec.step_named(step.partition(":")[2]).waitForCallback


def _retry(progress: Progress, wait: tuple[dt.timedelta, str], now: dt.datetime) -> Progress:
    delay, why = wait
    return replace(progress, attempt=progress.attempt + 1, due=now + delay,
                   delay_ms=round(delay.total_seconds() * 1000, 3), delay_reason=why)  # fmt: skip


def _goto(progress: Progress, step: str, due: dt.datetime) -> Progress:
    return replace(progress, step=step, attempt=1, due=due)


def _end(
    spec: PlanSpec,
    progress: Progress,
    phase: Phase,
    now: dt.datetime,
    reason: str | None,
    notify: Notify | None,
) -> Progress:
    """The run ends: notify a failure first, then (recurring objects) the next run."""
    reason = reason or progress.reason
    ended = replace(progress, phase=phase, due=None, finished=now, reason=reason, last_result=phase.value,
                    last_reason=reason if phase is Phase.FAILED else None)  # fmt: skip
    told = notices(spec, "failed" if phase is Phase.FAILED else "succeeded", notify)
    if told:
        return replace(ended, step=told[0], attempt=1, due=now, notify=True, notified=None)
    return _after_run(spec, ended, now)


def _after_notice(
    spec: PlanSpec, progress: Progress, delivered: bool, now: dt.datetime, notify: Notify | None
) -> Progress:
    """A notification was delivered (or gave up): the next one, the run's first call, or the run's end."""
    event = notice_event(progress.step)
    told = notices(spec, event, notify)
    following = told[told.index(progress.step) + 1 :] if progress.step in told else []
    if event == "started":
        return _goto(progress, following[0] if following else first_call(spec), now)
    notified = "failed" if not delivered or progress.notified == "failed" else "delivered"
    if following:
        return replace(_goto(progress, following[0], now), notified=notified)
    done = replace(progress, notify=False, notified=notified, step=first_step(spec))
    return _after_run(spec, done, now)


def _after_success(spec: PlanSpec, progress: Progress, now: dt.datetime, notify: Notify | None) -> Progress:
    if isinstance(spec, TaskSpec):
        return _end(spec, progress, Phase.COMPLETED, now, None, notify)
    name, _, index = progress.step.partition(":")
    if spec.steps is not None and name != "fallback":
        return _after_named(spec, progress, now, notify)
    last = len(spec.tasks or ()) - 1
    check = spec.conditionCheck
    if name == "task":
        i = int(index)
        if check is not None and (i < last or check.afterLast):
            return _goto(progress, f"check:{i}", now + check.delay)
        if i < last:
            return _goto(progress, f"task:{i + 1}", now)
        return _end(spec, progress, Phase.COMPLETED, now, None, notify)
    if name == "check":
        i = int(index)
        if i < last:
            return _goto(progress, f"task:{i + 1}", now)
        return _end(spec, progress, Phase.COMPLETED, now, None, notify)
    # the fallback ran: the set has failed, whatever the fallback answered
    return _end(spec, progress, Phase.FAILED, now, None, notify)


def _after_named(spec: TaskSetSpec, progress: Progress, now: dt.datetime, notify: Notify | None) -> Progress:
    """A named step (or its condition check) succeeded: its check, the next step, or the end."""
    steps = spec.steps or []
    name, _, step = progress.step.partition(":")
    i = [s.name for s in steps].index(step)
    check = steps[i].conditionCheck
    if name == "step" and check is not None:
        return _goto(progress, f"check:{step}", now + check.delay)
    if i < len(steps) - 1:
        return _goto(progress, f"step:{steps[i + 1].name}", now)
    return _end(spec, progress, Phase.COMPLETED, now, None, notify)


def _after_exhausted(
    spec: PlanSpec, progress: Progress, outcome: Outcome, now: dt.datetime, notify: Notify | None
) -> Progress:
    attempts = progress.attempt
    why = outcome.error or "call failed"
    if isinstance(spec, TaskSpec):
        return _end(spec, progress, Phase.FAILED, now, f"failed after {attempts} attempt(s): {why}", notify)
    name, _, index = progress.step.partition(":")
    if name == "fallback":
        return _end(
            spec, progress, Phase.FAILED, now, f"{progress.reason}; the fallback failed too: {why}", notify
        )
    if spec.steps is not None:
        what = f"step {index}" if name == "step" else f"condition check after step {index}"
        reason = f"{what} failed after {attempts} attempt(s): {why}"
        name = "task" if name == "step" else name  # what `fallback.on` calls it
    elif name == "task":
        reason = f"task {int(index) + 1} failed after {attempts} attempt(s): {why}"
    else:
        reason = f"condition check after task {int(index) + 1} failed after {attempts} attempt(s): {why}"
    return step_failed(spec, progress, progress.step, reason, now, notify, name)


def step_failed(
    spec: PlanSpec,
    progress: Progress,
    step: str,
    reason: str,
    now: dt.datetime,
    notify: Notify | None,
    on: str = "task",
) -> Progress:
    """A step of a TaskSet (`on`: a task, or its check) gave up: the fallback runs when it is for
    that, else the run ends failed."""
    failed = replace(progress, failed_step=step, reason=reason)
    if isinstance(spec, TaskSetSpec) and spec.fallback is not None and on in spec.fallback.on:
        return _goto(failed, "fallback", now)
    return _end(spec, failed, Phase.FAILED, now, None, notify)


def step_succeeded(
    spec: TaskSetSpec, progress: Progress, now: dt.datetime, notify: Notify | None
) -> Progress:
    """A named step succeeded as a whole (a parallel step that has joined): what comes after it."""
    return _after_named(spec, progress, now, notify)


# --------------------------------------------------------------------------- recurring objects


def _after_run(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A run has ended: a one-time object stays as it ended; a recurring one is scheduled again."""
    schedule = spec.schedule
    if schedule is None or progress.phase is Phase.CANCELLED:
        return progress
    anchor = progress.anchor or now
    after = progress.scheduled or now
    following = recurrence.next_run(schedule, after, anchor)
    skipped = progress.skipped
    began = progress.started or now
    caught_up = following is not None and following <= began and schedule.catchUp == "all"
    if following is not None and following <= now and not caught_up and schedule.overlap == "skip":
        skipped += len(recurrence.missed(schedule, after, now, anchor))  # they came due during this run
        following = recurrence.next_run(schedule, now, anchor)
    # catchUp all (missed while down) and overlap wait: the next run starts now, this one having ended
    if following is None:
        last = progress.phase.value
        return replace(progress, phase=Phase.COMPLETED, due=None, skipped=skipped,
                       reason=f"the schedule ended (the last run {last})")  # fmt: skip
    due = max(following + recurrence.jitter(schedule, progress.salt, progress.run + 1), now)
    return replace(
        progress, phase=Phase.SCHEDULED, step=first_step(spec), attempt=1, run=progress.run + 1,
        scheduled=following, due=None if progress.suspended else due, started=None, failed_step=None,
        reason=None, skipped=skipped,
    )  # fmt: skip


def catch_up(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A recurring run found long overdue (the service was down) is decided by `catchUp`:
    none skips to the next run time, latest runs the last missed one now, all runs each in turn."""
    schedule = spec.schedule
    if schedule is None or progress.phase is not Phase.SCHEDULED or progress.scheduled is None:
        return progress
    if now - progress.scheduled < MISSED_AFTER or schedule.catchUp == "all":
        return progress
    anchor = progress.anchor or now
    later = recurrence.missed(schedule, progress.scheduled, now, anchor)
    if schedule.catchUp == "latest":
        if not later:
            return progress
        return replace(progress, scheduled=later[-1], due=now, skipped=progress.skipped + len(later))
    following = recurrence.next_run(schedule, now, anchor)
    skipped = progress.skipped + 1 + len(later)
    if following is None:
        return replace(progress, phase=Phase.COMPLETED, due=None, finished=now, skipped=skipped,
                       reason="the schedule ended while the service was down")  # fmt: skip
    due = following + recurrence.jitter(schedule, progress.salt, progress.run)
    return replace(progress, scheduled=following, due=due, skipped=skipped)


def run_summary(before: Progress, after: Progress) -> dict[str, Any] | None:
    """The summary of the run that ended going from `before` to `after` (recurring objects), else None."""
    ended = after.run > before.run or (after.final and not before.final and not after.notify)
    if not ended:
        return None
    result = after.last_result or after.phase.value
    return {
        "run": before.run,
        "scheduled": before.scheduled,
        "started": before.started,
        "finished": after.finished,
        "result": result,
        "reason": after.last_reason if result == "failed" else None,
        "notified": after.notified if result == "failed" else None,
    }


# --------------------------------------------------------------------------- changes from users


def cancel(progress: Progress, now: dt.datetime) -> Progress:
    """Only a scheduled object (no call of this run made yet) can be cancelled."""
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused(not_scheduled(progress, "cancelled"))
    reason = (
        "cancelled before its first call" if progress.run == 1 else f"cancelled before run {progress.run}"
    )
    return replace(progress, phase=Phase.CANCELLED, due=None, finished=now, reason=reason)


def reschedule(progress: Progress, due: dt.datetime) -> Progress:
    """Only a scheduled object can get a new start time."""
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused(not_scheduled(progress, "modified"))
    return replace(progress, due=due)


def suspend(spec: PlanSpec, progress: Progress) -> Progress:
    """A recurring object pauses: no run starts until it is resumed (a run going on ends first)."""
    if spec.schedule is None:
        raise Refused("only a recurring object (with a schedule) can be suspended; cancel a one-time one")
    if progress.final:
        raise Refused(f"it is {progress.phase.value}")
    if progress.phase is Phase.SCHEDULED:
        return replace(progress, suspended=True, due=None)
    return replace(progress, suspended=True)


def resume(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A suspended recurring object runs again from its next run time after now."""
    schedule = spec.schedule
    if schedule is None or progress.final:
        raise Refused("only a recurring object that has not ended can be resumed")
    if not progress.suspended:
        return progress
    if progress.phase is not Phase.SCHEDULED:
        return replace(progress, suspended=False)
    following = recurrence.next_run(schedule, now, progress.anchor or now)
    if following is None:
        return replace(progress, suspended=False, phase=Phase.COMPLETED, finished=now, reason="the schedule has ended")  # fmt: skip
    due = following + recurrence.jitter(schedule, progress.salt, progress.run)
    return replace(progress, suspended=False, scheduled=following, due=due)


def not_scheduled(progress: Progress, verb: str) -> str:
    if progress.phase is Phase.SCHEDULED:
        return f"only a scheduled object can be {verb}; its first call has already started"
    return f"only a scheduled object can be {verb}; this one is {progress.phase.value}"
