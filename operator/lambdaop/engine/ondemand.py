"""Runs asked for by a person: run now, re-run a failed run, backfill, and pause of one-time objects.

Pure functions of (spec, progress, now), as `machine` is; each answers the
new progress (`carried_outputs`: the outputs a re-run starts with), or raises
`Refused` with the reason shown to the user.
A run off the schedule (`trigger`: now, rerun, backfill) of a recurring
object sets the schedule's own next run aside (`resume_at`), and `recurring`
takes it up again when that run ends, so its next scheduled time does not
move. A one-time object in a final state runs again as its next generation
(the service bumps the generation; `fresh` is where it starts). Called by the
service and by the loop's requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum

from lambdaop.engine import lanes, outputs, recurrence
from lambdaop.engine.machine import start
from lambdaop.engine.outputs import StepOutput
from lambdaop.engine.progress import Phase, PlanSpec, Progress, QueuedRerun, Refused
from lambdaop.engine.steps import first_step
from lambdaop.spec import TaskSetSpec, format_duration

MAX_BACKFILL = 1000  # runs one backfill may ask for
MAX_QUEUED = 100  # re-runs of failed runs one object may have waiting


class RunNow(StrEnum):
    """What a run now did."""

    EXTRA = "extra"  # a recurring object runs once now; its schedule is unchanged
    QUEUED = "queued"  # a run is going on (overlap: wait): one more starts when it ends
    FORWARD = "forward"  # a scheduled one-time object is brought forward to now
    GENERATION = "generation"  # a one-time object in a final state runs again as its next generation


def run_now(spec: PlanSpec, progress: Progress, now: dt.datetime) -> tuple[Progress, RunNow]:
    """Run now (see `RunNow`). A one-time object in a final state is answered by `fresh`."""
    if progress.notify:
        raise Refused("its run has just ended and its failure notification is being sent; try again shortly")
    if spec.schedule is None:
        if progress.final:
            return fresh(spec, progress, now), RunNow.GENERATION
        if progress.phase is Phase.SCHEDULED and not progress.in_flight:
            if progress.suspended:
                return replace(progress, suspended=False, due=now, paused_due=None), RunNow.FORWARD
            return replace(progress, due=now), RunNow.FORWARD
        raise Refused("it is running now; run it again once this run has ended")
    if progress.final:
        raise Refused(
            f"its schedule is over (it is {progress.phase.value}); apply it again to start a new one"
        )
    if progress.phase is Phase.SCHEDULED and not progress.in_flight:
        return _extra(spec, progress, now, "now"), RunNow.EXTRA
    if spec.schedule.overlap == "wait":
        return replace(progress, run_after=True), RunNow.QUEUED
    raise Refused("a run is going on and its schedule says overlap: skip; run it again once this run has ended")  # fmt: skip


def fresh(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """Where a one-time object's next generation starts: as new, due now (its calls count on)."""
    return replace(start(spec, now, progress.salt), calls=progress.calls, trigger="now")


def _extra(spec: PlanSpec, progress: Progress, now: dt.datetime, trigger: str, at: dt.datetime | None = None) -> Progress:  # fmt: skip
    """A recurring object's run off the schedule, due now; its scheduled run is set aside."""
    aside = progress.resume_at if progress.trigger is not None else progress.scheduled
    return replace(
        progress, step=first_step(spec), attempt=1, due=now, scheduled=at or now, trigger=trigger,
        resume_at=aside, failed_step=None, reason=None, rerun_of=None,
    )  # fmt: skip


def rerun(
    spec: PlanSpec,
    progress: Progress,
    now: dt.datetime,
    from_failed: bool,
    run: int | None = None,
    failed_step: str | None = None,
    due: dt.datetime | None = None,
) -> Progress:
    """Run a failed run again: from the start, or from the step that failed (the steps that
    succeeded are not called again). A one-time object's failed run; a recurring object's run
    number `run` (its `failed_step` and its due time `due` as its summary keeps them), made as a
    run off the schedule that is due as that run was (`run.due`), under a run number of its own
    (`carried_outputs` gives it what the steps before its failed step answered).
    Its calls carry their own Idempotency-Key (`-rerun<N>`)."""
    if spec.schedule is None:
        if progress.phase is not Phase.FAILED or progress.notify:
            raise Refused(f"only a failed run can be re-run; this one is {progress.phase.value}")
        step = progress.failed_step or first_step(spec) if from_failed else first_step(spec)
        return replace(
            progress, phase=Phase.SCHEDULED, step=_step_of(spec, step), attempt=1, due=now, finished=None,
            reason=None, failed_step=None, started=None, rerun=progress.rerun + 1, trigger="rerun",
            last_result=None, last_reason=None,
        )  # fmt: skip
    if progress.final:
        raise Refused(
            f"its schedule is over (it is {progress.phase.value}); apply it again to start a new one"
        )
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused("a run is going on; re-run once it has ended")
    extra = _extra(spec, progress, now, "rerun", due)
    step = _step_of(spec, failed_step) if from_failed and failed_step else first_step(spec)
    return replace(extra, step=step, rerun=progress.rerun + 1, rerun_of=run)


def carried_outputs(
    spec: PlanSpec, kept: Mapping[str, StepOutput], generation: int, failed: int, again: Progress
) -> dict[str, StepOutput] | None:
    """What a recurring TaskSet's re-run (`again`, from `rerun`) of its run number `failed` starts
    with: the outputs that run kept of the steps before where the re-run starts (a failed check's
    step too), as the re-run's own run's; None for a set without named steps. Refused when that
    run's outputs are no longer kept (a later run, or a new generation, has replaced them)."""
    if not isinstance(spec, TaskSetSpec) or spec.steps is None:
        return None
    before = _steps_before(spec, again.step)
    theirs = outputs.current(kept, failed, generation)
    missing = [n for n in before if n not in theirs]
    if missing:
        raise Refused(
            f"run {failed} cannot go on from its failed step: what its steps before it answered "
            f"({', '.join(missing)}) is no longer kept (a later run or a new generation has replaced it); "
            'run it again from the start ("from": "start")'
        )
    return {n: replace(o, run=again.run) for n, o in theirs.items() if n.partition("/")[0] in before}


def idle(progress: Progress) -> bool:
    """No run is going on, and none off the schedule is due: a re-run may start now."""
    return progress.phase is Phase.SCHEDULED and not progress.in_flight and progress.trigger is None


def queue_rerun(
    spec: PlanSpec,
    progress: Progress,
    from_failed: bool,
    run: int,
    failed_step: str | None,
    due: dt.datetime | None,
) -> Progress:
    """One more re-run of a recurring object's failed run `run` (its `failed_step` and due time
    `due` as its summary keeps them), made after the run going on and the re-runs queued before
    it (a bulk re-run of a time range re-runs each failed run in turn). Refused when that run is
    already to be re-run, and for a re-run from a failed step that needs what the steps before it
    answered: only the latest run's outputs are kept, and the runs before this one replace them."""
    if spec.schedule is None:
        raise Refused("only a recurring object queues re-runs; a one-time object has one run")
    if progress.final:
        raise Refused(f"its schedule is over (it is {progress.phase.value}); apply it again to start a new one")  # fmt: skip
    if (progress.trigger == "rerun" and progress.rerun_of == run) or any(
        r.run == run for r in progress.reruns
    ):
        raise Refused(f"run {run} is already to be re-run")
    if len(progress.reruns) >= MAX_QUEUED:
        raise Refused(f"{MAX_QUEUED} re-runs are already waiting; re-run more once they have run")
    step = _step_of(spec, failed_step) if from_failed and failed_step else first_step(spec)
    if _steps_before(spec, step):
        raise Refused(
            f"run {run} cannot wait for its turn to go on from its failed step: what its steps before it "
            'answered is kept only until the next run; re-run it from the start ("from": "start")'
        )
    return replace(progress, reruns=(*progress.reruns, QueuedRerun(run, step, due)))


def _steps_before(spec: PlanSpec, step: str) -> list[str]:
    """The named steps a run starting at `step` does not call again (a failed check's step too)."""
    if not isinstance(spec, TaskSetSpec) or spec.steps is None:
        return []
    names = [s.name for s in spec.steps]
    kind, _, name = step.partition(":")
    if kind in ("step", "check") and name in names:
        return names[: names.index(name) + (kind == "check")]
    return []


def _step_of(spec: PlanSpec, step: str) -> str:
    """Where a re-run from `step` starts: a failed check runs again, not its task; a failed
    branch's step runs its whole parallel step again (its branches succeed or fail together)."""
    branch = lanes.parse_lane_step(step)
    if branch is not None:
        return f"step:{branch[0]}"
    if step.startswith(("task", "check", "step:")):
        return step
    return first_step(spec)


def backfill_times(spec: PlanSpec, progress: Progress, start_at: dt.datetime, end_at: dt.datetime) -> list[dt.datetime]:  # fmt: skip
    """The run times its schedule would have made in [start, end) (at most MAX_BACKFILL)."""
    schedule = spec.schedule
    if schedule is None:
        raise Refused("only a recurring object (with a schedule) can be backfilled")
    if end_at <= start_at:
        raise Refused("the end of a backfill must be after its start")
    if progress.final:
        raise Refused(f"its schedule is over (it is {progress.phase.value})")
    times = [t for t in recurrence.missed(schedule, start_at - dt.timedelta(microseconds=1), end_at, progress.anchor or start_at, MAX_BACKFILL + 1) if t < end_at]  # fmt: skip
    if not times:
        raise Refused("its schedule has no run time in that range")
    if len(times) > MAX_BACKFILL:
        raise Refused(f"that range holds more than {MAX_BACKFILL} runs; backfill it in parts")
    return times


def backfill_copy(spec: PlanSpec, fresh: Progress, times: list[dt.datetime], now: dt.datetime) -> Progress:
    """A copy of a recurring object made to run part of a parallel backfill (`fresh`: its progress
    as created): it runs `times` one after another from now, each a backfill run, never a run of
    its own schedule, and ends `completed` with the last of them."""
    first = _extra(spec, fresh, now, "backfill", times[0])
    return replace(first, backfill=tuple(times[1:]), backfill_only=True, suspended=False, resume_at=None)


def backfill(spec: PlanSpec, progress: Progress, start_at: dt.datetime, end_at: dt.datetime, now: dt.datetime) -> tuple[Progress, list[dt.datetime]]:  # fmt: skip
    """The runs its schedule would have made in [start, end), made one after another from now,
    each a backfill run; answers the progress and the run times."""
    if progress.backfill:
        raise Refused(f"a backfill is going on ({len(progress.backfill)} runs to go)")
    times = backfill_times(spec, progress, start_at, end_at)
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:  # after the run going on
        return replace(progress, backfill=tuple(times)), times
    first = _extra(spec, progress, now, "backfill", times[0])
    return replace(first, backfill=tuple(times[1:])), times


def pause(progress: Progress, reason: str | None) -> Progress:
    """A one-time object waiting for its call is paused: it keeps its due time aside."""
    if progress.phase is not Phase.SCHEDULED or progress.in_flight:
        raise Refused(f"only a scheduled object can be paused; this one is {progress.phase.value}")
    if progress.suspended:
        return replace(progress, pause_reason=reason or progress.pause_reason)
    return replace(progress, suspended=True, paused_due=progress.due, due=None, pause_reason=reason)


def unpause(progress: Progress, now: dt.datetime, skip: bool) -> Progress:
    """A paused one-time object goes on: due at its time (at once when it passed meanwhile), or,
    with `skip`, one whose time passed while paused is cancelled saying so."""
    if not progress.suspended:
        return progress
    due = progress.paused_due or now
    going = replace(progress, suspended=False, paused_due=None, pause_reason=None)
    if due <= now and skip:
        return replace(going, phase=Phase.CANCELLED, due=None, finished=now, reason="skipped: it came due while paused")  # fmt: skip
    return replace(going, due=max(due, now))


def past_times(spec: PlanSpec, now: dt.datetime) -> list[str]:
    """Warnings for times already past when a spec is applied at `now`: a one-time `at` (it runs
    at once) and a schedule's `end` (it makes no run). The spec is taken; the answer says so."""
    out = []
    if spec.at is not None and spec.at < now:
        late = format_duration(
            dt.timedelta(seconds=int((now - spec.at).total_seconds())) or dt.timedelta(seconds=1)
        )
        out.append(f"spec.at: {spec.at.astimezone(dt.UTC).isoformat().replace('+00:00', 'Z')} is {late} in the past: it runs now")  # fmt: skip
    schedule = spec.schedule
    if schedule is not None and schedule.end is not None and schedule.end < now:
        out.append(f"spec.schedule.end: {schedule.end.astimezone(dt.UTC).isoformat().replace('+00:00', 'Z')} is in the past: no run will be made")  # fmt: skip
    return out
