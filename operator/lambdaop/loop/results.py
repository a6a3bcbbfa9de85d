"""Turning a due step into a call, and a call's result into what is written.

`call_for` makes the `Job` of a held object's due step: its invoke (a failure
notification gets the event as its body; a TaskSet's named step gets its
`${{ EXPR }}` filled in from the outputs its record keeps), and its
`Idempotency-Key`, the same for every attempt of that step. `decide` asks the
machine what a result means and answers a `Decision`: the new progress, the
history record, a named step's output kept with the run's others, the run
that ended (recurring objects), and whether its history wants pruning.
Both are functions of their arguments (the time comes in as `now`). Called
by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import Any

from lambdaop.core.clock import iso
from lambdaop.core.logs import about
from lambdaop.engine import machine, outputs, recurring, runs, templates
from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.engine.outputs import StepOutput
from lambdaop.engine.progress import Phase, Progress
from lambdaop.engine.record import CallRecord, PendingSpec, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.engine.steps import is_notice, notice_event, step_plan
from lambdaop.loop.held import Held
from lambdaop.loop.invoker import CallResult, Job
from lambdaop.spec import Notify, TaskSetSpec
from lambdaop.store.contract import ATTEMPTS_KEPT

log = logging.getLogger("lambdaop.loop")


def idempotency_key(
    object_id: str, generation: int, step: str, run: int | None = None, rerun: int = 0
) -> str:
    """The same for every attempt of a step (of one run, for a recurring object); a re-run's
    calls say which re-run they are (`-rerun<N>`), so an endpoint tells them from a retry."""
    again = f"-rerun{rerun}" if rerun else ""
    if run is None:
        return f"{object_id}-g{generation}{again}-{step}"
    return f"{object_id}-g{generation}-r{run}{again}-{step}"


def run_event(record: StoredObject, progress: Progress, event: str = "failed") -> dict[str, Any]:
    """The JSON a notification posts: the event (run.started, run.succeeded, run.failed), which
    object, which run, why it failed, and its last call (none for a run that has just started)."""
    last = record.last.for_storage() if record.last is not None and event != "started" else {}
    failed = event == "failed"
    at = progress.started if event == "started" else progress.finished
    return {
        "event": f"run.{event}",
        "kind": record.kind.value,
        "name": record.name,
        "owner": record.owner,
        "id": record.id,
        "run": progress.run,
        "reason": progress.reason if failed else None,
        "failedStep": (progress.failed_step or ("task" if record.kind == "Task" else None))
        if failed
        else None,
        "at": iso(at),
        "lastAttempt": {
            k: (iso(v) if isinstance(v, dt.datetime) else v)
            for k, v in last.items()
            if k in ("step", "attempt", "at", "status", "error", "duration_ms", "key")
        },
    }


def call_for(held: Held, progress: Progress, notify: Notify | None) -> Job:
    """The call a dispatched step makes."""
    plan = step_plan(held.plan, progress.step, notify)
    invoke = plan.invoke
    if is_notice(progress.step):
        event = run_event(held.record, progress, notice_event(progress.step))
        invoke = invoke.model_copy(update={"method": "POST", "body": event})
    record = held.record
    run = progress.run if held.plan.schedule is not None else None
    again = progress.rerun if progress.trigger == "rerun" else 0
    key = idempotency_key(record.id, record.generation, progress.step, run, again)
    spec = held.plan
    if not isinstance(spec, TaskSetSpec) or spec.steps is None or is_notice(progress.step):
        return Job(record.id, held.fence, progress.step, progress.attempt, key, invoke)
    refused = None
    try:
        invoke = templates.render(invoke, step_context(record, progress), _field_of(spec, progress.step))
    except templates.TemplateError as exc:
        refused = str(exc)
    keep = progress.step.startswith("step:")
    return Job(record.id, held.fence, progress.step, progress.attempt, key, invoke, keep, refused)


def step_context(record: StoredObject, progress: Progress) -> dict[str, Any]:
    """What the expressions of a named step's call read: the run's outputs so far, the run, the object."""
    kept = outputs.current(record.outputs, progress.run, record.generation)
    return templates.context(kept, progress.run, progress.scheduled or progress.started, record.name, record.labels)  # fmt: skip


def _field_of(spec: TaskSetSpec, step: str) -> str:
    """The field that holds a named step's call, as errors name it (`spec.steps[1].invoke`)."""
    name, _, which = step.partition(":")
    if name == "fallback":
        return "spec.fallback.invoke"
    i = [s.name for s in spec.steps or ()].index(which)
    return f"spec.steps[{i}].invoke" if name == "step" else f"spec.steps[{i}].conditionCheck.invoke"


def output_of(held: Held, result: CallResult) -> tuple[dict[str, StepOutput] | None, str | None]:
    """The run's outputs with a named step's output in (None when the call was not a named step's),
    or why it cannot be kept."""
    job = result.job
    if not job.keep_output:
        return None, None
    record = held.record
    name = job.step.partition(":")[2]
    new = StepOutput(result.output, result.status, job.attempt, result.ok, held.progress.run, record.generation, result.output_size)  # fmt: skip
    return outputs.with_output(record.outputs, name, new)


@dataclass(frozen=True)
class Decision:
    progress: Progress
    call: CallRecord
    run: RunSummary | None  # the run that ended with this call (recurring objects)
    prune: bool  # its history is longer than what is kept
    outputs: dict[str, StepOutput] | None = None  # the run's outputs, when a named step's call ended
    ended: RunRecord | None = None  # the run that ended with this call, for the runs list (any object)


def decide(held: Held, result: CallResult, now: dt.datetime, notify: Notify | None) -> Decision:
    """What a call's result means for its object. One that cannot be decided fails its object alone."""
    ended = result.started + dt.timedelta(milliseconds=result.duration_ms)
    spec = held.plan
    kept, too_much = output_of(held, result)
    if too_much is not None and result.ok:  # a later step could not read it: the step fails
        result = replace(result, ok=False, error=too_much, failure=Failure.BODY)
    try:
        outcome = Outcome(result.ok, result.error, result.failure, result.retry_after)
        progress = machine.finish(spec, held.progress, outcome, ended, notify)
        if held.suspend_after and spec.schedule is not None and not progress.final:
            held.suspend_after = False
            progress = replace(
                progress, suspended=True, due=None if progress.phase is Phase.SCHEDULED else progress.due
            )
    except Exception as exc:
        log.exception("%s: its result cannot be decided", held.label, extra=about(held.record))
        progress = replace(
            held.progress, phase=Phase.FAILED, in_flight=False, due=None, finished=now, reason=f"internal error: {exc}"
        )  # fmt: skip
    job = result.job
    retried = (
        progress.delay_reason is not None and progress.step == job.step and progress.attempt > job.attempt
    )
    call = CallRecord(
        generation=held.record.generation,
        step=job.step,
        attempt=job.attempt,
        key=job.idempotency_key,
        url=job.invoke.target,
        at=result.started,
        duration_ms=result.duration_ms,
        status=result.status,
        ok=result.ok,
        error=result.error,
        response=result.response,
        run=held.progress.run if spec.schedule is not None else None,
        next_delay_ms=progress.delay_ms if retried else None,
        delay_reason=progress.delay_reason if retried else None,
        recovered=held.recovered,
    )
    held.recovered = None
    summary = recurring.run_summary(held.progress, progress) if spec.schedule is not None else None
    run = RunSummary(**summary) if summary is not None else None
    record = held.record
    identity = (record.id, record.kind.value, record.name, record.owner, record.generation, record.labels)
    last = {
        k: v
        for k, v in call.for_storage().items()
        if k in ("step", "attempt", "key", "status", "error", "at")
    }
    over = runs.ended(held.progress, progress, identity, spec.schedule is not None, ended, last)
    return Decision(progress, call, run, progress.calls > ATTEMPTS_KEPT, None if too_much else kept, over)


def next_generation(held: Held, pending: PendingSpec, now: dt.datetime) -> Progress:
    """Where a waiting edit starts once the run going on has ended: as a new object would."""
    plan = pending.plan
    due = machine.first_due(plan, now)
    log.info("%s: the run under generation %s ended; generation %s applies now", held.label, held.record.generation, pending.generation, extra=about(held.record))  # fmt: skip
    return machine.start(plan, due, held.progress.salt, now)
