"""Turning a due step into a call, and a call's result into what is written.

`call_for` makes the `Job` of a held object's due step: its invoke (a failure
notification gets the event as its body), and its `Idempotency-Key`, the same
for every attempt of that step. `decide` asks the machine what a result
means and answers a `Decision`: the new progress, the history record, the
run that ended (recurring objects), and whether its history wants pruning.
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
from lambdaop.engine import machine, runs
from lambdaop.engine.machine import Phase, Progress
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.record import CallRecord, PendingSpec, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.loop.held import Held
from lambdaop.loop.invoker import CallResult, Job
from lambdaop.spec import Notify
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


def failure_event(record: StoredObject, progress: Progress) -> dict[str, Any]:
    """The JSON a failure notification posts: which object, which run, why, and its last call."""
    last = record.last.for_storage() if record.last is not None else {}
    return {
        "event": "run.failed",
        "kind": record.kind.value,
        "name": record.name,
        "owner": record.owner,
        "id": record.id,
        "run": progress.run,
        "reason": progress.reason,
        "failedStep": progress.failed_step or ("task" if record.kind == "Task" else None),
        "at": iso(progress.finished),
        "lastAttempt": {
            k: (iso(v) if isinstance(v, dt.datetime) else v)
            for k, v in last.items()
            if k in ("step", "attempt", "at", "status", "error", "duration_ms", "key")
        },
    }


def call_for(held: Held, progress: Progress, notify: Notify | None) -> Job:
    """The call a dispatched step makes."""
    plan = machine.step_plan(held.plan, progress.step, notify)
    invoke = plan.invoke
    if progress.step == "notify":
        invoke = invoke.model_copy(update={"method": "POST", "body": failure_event(held.record, progress)})
    record = held.record
    run = progress.run if held.plan.schedule is not None else None
    again = progress.rerun if progress.trigger == "rerun" else 0
    key = idempotency_key(record.id, record.generation, progress.step, run, again)
    return Job(record.id, held.fence, progress.step, progress.attempt, key, invoke)


@dataclass(frozen=True)
class Decision:
    progress: Progress
    call: CallRecord
    run: RunSummary | None  # the run that ended with this call (recurring objects)
    prune: bool  # its history is longer than what is kept
    ended: RunRecord | None = None  # the run that ended with this call, for the runs list (any object)


def decide(held: Held, result: CallResult, now: dt.datetime, notify: Notify | None) -> Decision:
    """What a call's result means for its object. One that cannot be decided fails its object alone."""
    ended = result.started + dt.timedelta(milliseconds=result.duration_ms)
    spec = held.plan
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
    summary = machine.run_summary(held.progress, progress) if spec.schedule is not None else None
    run = RunSummary(**summary) if summary is not None else None
    record = held.record
    identity = (record.id, record.kind.value, record.name, record.owner, record.generation, record.labels)
    last = {
        k: v
        for k, v in call.for_storage().items()
        if k in ("step", "attempt", "key", "status", "error", "at")
    }
    over = runs.ended(held.progress, progress, identity, spec.schedule is not None, ended, last)
    return Decision(progress, call, run, progress.calls > ATTEMPTS_KEPT, over)


def next_generation(held: Held, pending: PendingSpec, now: dt.datetime) -> Progress:
    """Where a waiting edit starts once the run going on has ended: as a new object would."""
    plan = pending.plan
    due = machine.first_due(plan, now)
    log.info("%s: the run under generation %s ended; generation %s applies now", held.label, held.record.generation, pending.generation, extra=about(held.record))  # fmt: skip
    return machine.start(plan, due, held.progress.salt, now)
