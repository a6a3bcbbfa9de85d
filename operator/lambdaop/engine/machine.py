"""The pure state machine of a run of a Task or TaskSet: (progress, event, now) -> new progress.

No I/O and no clock: every function takes `now`. The service calls `start`
for a new object; the reconciler calls `dispatch` when work is due, `finish`
when a call reports back and `recover` when a lease expired. Refusals are
raised as `Refused` with the reason shown to the user. What a run's steps are
and what each calls is `steps`'; where an object is, `progress`; what a
recurring object does between runs, `recurring`; a person's cancel,
reschedule, suspend and resume, `changes`. A parallel step's branches are
`waves`' and `lanes`'; a step that waits for a callback enters its wait here
once its call has succeeded, and `callbacks` decides what a POST does.

Each step has its own attempt counter and retry policy (delays in
`retrypolicy`); a step that used its budget up ends the run (through the
fallback, for a TaskSet). A run that ends failed calls the `notify` step when
there is one (`onFailure`). Notifications (`notify:` entries) are steps too,
`notify:EVENT:I`: those of `started` before the run's first call, those of
`succeeded` or `failed` (and then `onFailure`) once it has ended; a
notification that fails after its retries never changes the run's result. A
recurring object then starts its next run (`run` + 1, state `scheduled`)
until its schedule ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from lambdaop.engine import recurrence, retrypolicy
from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.engine.progress import Phase, PlanSpec, Progress, Refused
from lambdaop.engine.recurring import after_run
from lambdaop.engine.steps import first_call, first_step, is_notice, notice_event, notices, step_plan
from lambdaop.spec import Notify, TaskSetSpec, TaskSpec, WaitForCallback


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


def dispatch(progress: Progress, now: dt.datetime) -> Progress:
    """The due call starts: the object is running (a failure notification leaves the state alone)."""
    if (progress.final and not progress.notify) or progress.in_flight:
        raise Refused(f"cannot call: object is {progress.phase.value}")
    phase = progress.phase if progress.notify else Phase.RUNNING
    return replace(progress, phase=phase, in_flight=True, due=None, calls=progress.calls + 1,
                   run_calls=run_calls_before(progress) + 1, started=progress.started or now)  # fmt: skip


def run_calls_before(progress: Progress) -> int:
    """The calls the run has made before this one (none when it has not started)."""
    return progress.run_calls if progress.started is not None else 0


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
    return after_run(spec, ended, now)


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
    return after_run(spec, done, now)


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
