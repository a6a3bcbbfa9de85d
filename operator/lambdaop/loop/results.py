"""Turning a due step into a call, and a call's result into what is written.

`call_for` makes the `Job` of a held object's due step: its invoke (a failure
notification gets the event as its body; a TaskSet's named step gets its
`${{ EXPR }}` filled in from the outputs its record keeps), and its
`Idempotency-Key`, the same for every attempt of that step. `decide` asks the
machine what a result means and answers a `Decision`: the new progress, the
history record, a named step's output kept with the run's others, the run
that ended (its summary for a recurring object, its record for the runs
list), and whether its history wants pruning; `decide_wave` and
`decide_timeout` do the same for a parallel step's results and for a
callback wait that timed out.
Both are functions of their arguments (the time comes in as `now`). Called
by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lambdaop.core.clock import iso
from lambdaop.core.logs import about
from lambdaop.engine import callbacks, lanes, machine, outputs, recurring, runs, templates, waves
from lambdaop.engine.lanes import Lane, LaneState
from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.engine.outputs import StepOutput
from lambdaop.engine.progress import Phase, Progress
from lambdaop.engine.record import CallRecord, PendingSpec, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.engine.steps import is_notice, notice_event, step_plan
from lambdaop.loop.answers import REDACTED
from lambdaop.loop.callbacks import CallbackUrls
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


def call_for(
    held: Held,
    progress: Progress,
    notify: Notify | None,
    step: str | None = None,
    urls: CallbackUrls | None = None,
) -> Job:
    """The call a dispatched step makes (`step`: one branch's step of a parallel step's wave; a
    waitForCallback's call reads `callback.url`, made by `urls`)."""
    step = step or progress.step
    attempt = _lane_attempt(progress, step) if step != progress.step else progress.attempt
    plan = step_plan(held.plan, step, notify)
    invoke = plan.invoke
    if is_notice(step):
        event = run_event(held.record, progress, notice_event(step))
        invoke = invoke.model_copy(update={"method": "POST", "body": event})
    record = held.record
    key = key_of_call(held, progress, step)
    spec = held.plan
    if not isinstance(spec, TaskSetSpec) or spec.steps is None or is_notice(step):
        return Job(record.id, held.fence, step, attempt, key, invoke)
    refused = None
    ctx = step_context(record, progress, step)
    token = ""
    if callbacks.wait_of(spec, step) is not None:  # the single-use URL its target calls back
        token = urls.token(record, progress) if urls is not None else ""
        ctx["callback"] = {"url": urls.url(token) if urls is not None else None}
    try:
        if callbacks.wait_of(spec, step) is not None and urls is None:
            raise templates.TemplateError(f"{_field_of(spec, step)}: this service signs no callback URLs (no callback secret)")  # fmt: skip
        invoke = templates.render(invoke, ctx, _field_of(spec, step))
    except templates.TemplateError as exc:
        refused = str(exc)
    keep = step.startswith("step:")
    return Job(record.id, held.fence, step, attempt, key, invoke, keep, refused, (token,) if token else ())


def key_of_call(held: Held, progress: Progress, step: str) -> str:
    """The Idempotency-Key of a step's calls (of this run, or this re-run)."""
    run = progress.run if held.plan.schedule is not None else None
    again = progress.rerun if progress.trigger == "rerun" else 0
    return idempotency_key(held.record.id, held.record.generation, step, run, again)


def limit_call(held: Held, progress: Progress) -> str:
    """Which call the due step makes, as the limiter knows it (`job_call` of its job)."""
    return f"{key_of_call(held, progress, progress.step)}/{progress.attempt}"


def job_call(job: Job) -> str:
    return f"{job.idempotency_key}/{job.attempt}"


def _lane_attempt(progress: Progress, step: str) -> int:
    found = lanes.parse_lane_step(step)
    for lane in progress.lanes:
        if found is not None and lane.branch == found[1]:
            return lane.attempt
    return 1


def step_context(record: StoredObject, progress: Progress, step: str | None = None) -> dict[str, Any]:
    """What the expressions of a named step's call read: the run's outputs so far, the run, the object
    (a branch's step reads the steps before the parallel step and those before it in its branch)."""
    kept = outputs.current(record.outputs, progress.run, record.generation)
    visible = {name: out for name, out in kept.items() if "/" not in name}
    found = lanes.parse_lane_step(step or "")
    if found is not None:
        prefix = f"{found[0]}/{found[1]}/"
        visible |= {name.removeprefix(prefix): out for name, out in kept.items() if name.startswith(prefix)}
    return templates.context(visible, progress.run, progress.scheduled or progress.started, record.name, record.labels)  # fmt: skip


def _field_of(spec: TaskSetSpec, step: str) -> str:
    """The field that holds a named step's call, as errors name it (`spec.steps[1].invoke`)."""
    name, _, which = step.partition(":")
    if name == "fallback":
        return "spec.fallback.invoke"
    if callbacks.wait_of(spec, step) is not None:
        return f"spec.steps[{[s.name for s in spec.steps or ()].index(which)}].waitForCallback.invoke"
    found = lanes.parse_lane_step(step)
    names = [s.name for s in spec.steps or ()]
    if found is not None:
        par = spec.step_named(found[0]).parallel
        at = [s.name for s in par.branches[found[1]]].index(found[2]) if par is not None else 0
        return f"spec.steps[{names.index(found[0])}].parallel.branches[{found[1]}][{at}].invoke"
    i = names.index(which)
    return f"spec.steps[{i}].invoke" if name == "step" else f"spec.steps[{i}].conditionCheck.invoke"


def output_of(
    held: Held, result: CallResult, kept: Mapping[str, StepOutput] | None = None
) -> tuple[dict[str, StepOutput] | None, str | None]:
    """The run's outputs (`kept`, else the record's) with a named step's output in (None when the
    call was not a named step's), or why it cannot be kept."""
    job = result.job
    if not job.keep_output or held.progress.answered is not None:  # (a callback's output came first)
        return None, None
    record = held.record
    name = job.step.partition(":")[2]
    new = StepOutput(result.output, result.status, job.attempt, result.ok, held.progress.run, record.generation, result.output_size)  # fmt: skip
    return outputs.with_output(record.outputs if kept is None else kept, name, new)


@dataclass(frozen=True)
class Decision:
    progress: Progress
    call: CallRecord
    run: RunSummary | None  # the run that ended with this call (recurring objects)
    prune: bool  # its history is longer than what is kept
    outputs: dict[str, StepOutput] | None = None  # the run's outputs, when a named step's call ended
    ended: RunRecord | None = None  # the run that ended with this call, for the runs list (any object)
    calls: tuple[CallRecord, ...] = ()  # every call of a parallel step's wave (`call` is the last)


def decide(held: Held, result: CallResult, now: dt.datetime, notify: Notify | None) -> Decision:
    """What a call's result means for its object. One that cannot be decided fails its object alone."""
    ended = result.started + dt.timedelta(milliseconds=result.duration_ms)
    spec = held.plan
    kept, too_much = output_of(held, result)
    if too_much is not None and result.ok:  # a later step could not read it: the step fails
        result = replace(result, ok=False, error=too_much, failure=Failure.BODY)
    try:
        outcome = Outcome(result.ok, result.error, result.failure, result.retry_after)
        progress = _suspended_after(held, machine.finish(spec, held.progress, outcome, ended, notify))
    except Exception as exc:
        log.exception("%s: its result cannot be decided", held.label, extra=about(held.record))
        progress = replace(
            held.progress, phase=Phase.FAILED, in_flight=False, due=None, finished=now, reason=f"internal error: {exc}"
        )  # fmt: skip
    call = _history(held, result, progress)
    held.recovered = None
    summary = recurring.run_summary(held.progress, progress) if spec.schedule is not None else None
    run = RunSummary(**summary) if summary is not None else None
    over = runs.ended_by(held.record, held.progress, progress, ended, call)
    return Decision(progress, call, run, progress.calls > ATTEMPTS_KEPT, None if too_much else kept, over)


def _suspended_after(held: Held, progress: Progress) -> Progress:
    """A suspend asked for while a call was out is written with its result (a run going on ends
    first; the next does not start)."""
    if not held.suspend_after or held.plan.schedule is None or progress.final:
        return progress
    held.suspend_after = False
    return replace(progress, suspended=True, due=None if progress.phase is Phase.SCHEDULED else progress.due)


def _history(held: Held, result: CallResult, progress: Progress) -> CallRecord:
    """The history record of a call (with the wait chosen before its retry, when it is retried)."""
    job = result.job
    retried = (
        progress.delay_reason is not None and progress.step == job.step and progress.attempt > job.attempt
    )
    return CallRecord(
        generation=held.record.generation,
        step=job.step,
        attempt=job.attempt,
        key=job.idempotency_key,
        url=_redacted(job.invoke.target, job.redact),
        at=result.started,
        duration_ms=result.duration_ms,
        status=result.status,
        ok=result.ok,
        error=result.error,
        response=result.response,
        run=held.progress.run if held.plan.schedule is not None else None,
        next_delay_ms=progress.delay_ms if retried else None,
        delay_reason=progress.delay_reason if retried else None,
        recovered=held.recovered,
    )


def decide_timeout(held: Held, now: dt.datetime, notify: Notify | None) -> Decision:
    """A waitForCallback step's wait passed its end with no callback: a `timeout` failure of the
    step, in the history as `callback:NAME`."""
    before = held.progress
    progress, error = callbacks.time_out(held.plan, before, held.record.generation, now, notify)
    progress = _suspended_after(held, progress)
    call = callback_record(held.record, before, now, False, error)
    summary = recurring.run_summary(before, progress) if held.plan.schedule is not None else None
    name = before.step.partition(":")[2]
    kept = outputs.current(held.record.outputs, before.run, held.record.generation)
    if name in kept:  # what its call answered stays; the step did not succeed
        kept[name] = replace(kept[name], ok=False)
    run = RunSummary(**summary) if summary else None
    over = runs.ended_by(held.record, before, progress, now, call)
    return Decision(progress, call, run, progress.calls > ATTEMPTS_KEPT, kept, over)


def callback_record(record: StoredObject, progress: Progress, now: dt.datetime, ok: bool, error: str | None) -> CallRecord:  # fmt: skip
    """What the history keeps of a callback (or of a wait that timed out): `callback:NAME`."""
    run = progress.run if record.recurring else None
    return CallRecord(step=f"callback:{progress.step.partition(':')[2]}", attempt=progress.attempt, at=now, ok=ok, generation=record.generation, error=error, run=run)  # fmt: skip


def _redacted(text: str | None, secrets: tuple[str, ...]) -> str | None:
    for value in secrets:
        text = text.replace(value, REDACTED) if text is not None else None
    return text


def decide_wave(
    held: Held, wave: list[CallResult], now: dt.datetime, notify: Notify | None, out: tuple[str, ...] = ()
) -> Decision:
    """What results of a parallel step's calls mean (`out`: its calls still out): the lanes move on (each branch step's output
    kept as PARALLEL/BRANCH/STEP), and once the step has ended its own output is what each branch
    answered last. One that cannot be decided fails its object alone."""
    spec, before = held.plan, held.progress
    kept: dict[str, StepOutput] = dict(held.record.outputs)
    judged = []
    for result in wave:
        more, too_much = output_of(held, result, kept)
        if too_much is not None and result.ok:
            result = replace(result, ok=False, error=too_much, failure=Failure.BODY)
        kept = more if more is not None and too_much is None else kept
        judged.append(result)
    ended = max((r.started + dt.timedelta(milliseconds=r.duration_ms) for r in judged), default=now)
    try:
        outcomes = [(r.job.step, Outcome(r.ok, r.error, r.failure, r.retry_after)) for r in judged]
        progress, after = waves.finish_wave(spec, before, outcomes, ended, notify, out)
        progress = _suspended_after(held, progress)
    except Exception as exc:
        log.exception("%s: its result cannot be decided", held.label, extra=about(held.record))
        progress, after = replace(before, phase=Phase.FAILED, in_flight=False, due=None, finished=now, reason=f"internal error: {exc}"), ()  # fmt: skip
    if after and not progress.lanes:  # the parallel step has ended: its output, one item per branch
        kept = _joined(held, before, after, kept, progress)
    calls = tuple(_history(held, r, progress) for r in judged)
    held.recovered = None
    summary = recurring.run_summary(before, progress) if spec.schedule is not None else None
    run = RunSummary(**summary) if summary is not None else None
    over = runs.ended_by(held.record, before, progress, ended, calls[-1])
    return Decision(progress, calls[-1], run, progress.calls > ATTEMPTS_KEPT, kept, over, calls)


def _joined(
    held: Held, before: Progress, after: tuple[Lane, ...], kept: dict[str, StepOutput], progress: Progress
) -> dict[str, StepOutput]:
    name = before.step.partition(":")[2]
    par = lanes.parallel_of(held.plan, before.step)
    assert par is not None
    items = []
    for lane in after:
        last = f"{name}/{lane.branch}/{par.branches[lane.branch][-1].name}"
        items.append(kept[last].output if lane.state is LaneState.DONE and last in kept else None)
    ok = not (progress.failed_step or "").startswith(f"step:{name}/")
    joined = StepOutput(items, None, 1, ok, before.run, held.record.generation, outputs.size_of(items), tuple(lane.state.value for lane in after))  # fmt: skip
    return {**kept, name: joined}


def next_generation(held: Held, pending: PendingSpec, now: dt.datetime) -> Progress:
    """Where a waiting edit starts once the run going on has ended: as a new object would."""
    plan = pending.plan
    due = machine.first_due(plan, now)
    log.info("%s: the run under generation %s ended; generation %s applies now", held.label, held.record.generation, pending.generation, extra=about(held.record))  # fmt: skip
    return machine.start(plan, due, held.progress.salt, now)
