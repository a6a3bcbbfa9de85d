"""A parallel step's calls: its due branch calls leave, and their results come back, lane by lane.

`dispatch_wave` is `machine.dispatch` for a parallel step: the active lanes
that are due and not out already (never more than `maxConcurrency` in all)
call, and the object is in flight while any of them is out. `finish_wave` is
`machine.finish` for the results that came back: the lanes move on
(`lanes.after_wave`), a place freed is taken by a waiting lane at once, and
once the step has ended the run goes on as after any named step, or to the
fallback with the branch that failed named. The lanes are part of the stored
progress, so a restart (or another process taking the lease over) goes on
from the last results written: a lane whose call was out keeps a past due
time, and its call is made again, with the same `Idempotency-Key`. Pure.
Called by the loop's firing and results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import replace

from lambdaop.engine import lanes, machine
from lambdaop.engine.lanes import Lane
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import PlanSpec, Progress
from lambdaop.spec import Notify, TaskSetSpec


def dispatch_wave(
    spec: PlanSpec, progress: Progress, now: dt.datetime, out: Collection[str] = ()
) -> tuple[Progress, list[str]]:
    """A parallel step's due calls leave (those of lanes not `out` already): the progress with
    them out, and their step ids (none: nothing is due yet)."""
    par = lanes.parallel_of(spec, progress.step)
    assert par is not None
    current = progress.lanes or lanes.begin(par, progress.due or now)
    fired = lanes.wave(current, now, branches_of(out))
    if not fired:
        return replace(progress, lanes=current), []
    name = progress.step.partition(":")[2]
    ids = [lanes.lane_step(name, current[i].branch, par.branches[current[i].branch][current[i].at].name) for i in fired]  # fmt: skip
    moved = replace(progress, lanes=current)
    moved = replace(moved, due=None) if progress.in_flight else machine.dispatch(moved, now)
    return replace(moved, calls=progress.calls + len(ids), run_calls=machine.run_calls_before(progress) + len(ids)), ids  # fmt: skip


def branches_of(steps: Collection[str]) -> set[int]:
    """The lanes (branches) whose calls these are."""
    return {found[1] for found in map(lanes.parse_lane_step, steps) if found is not None}


def finish_wave(
    spec: PlanSpec,
    progress: Progress,
    results: list[tuple[str, Outcome]],
    now: dt.datetime,
    notify: Notify | None = None,
    out: Collection[str] = (),
) -> tuple[Progress, tuple[Lane, ...]]:
    """Calls of a parallel step reported back (those of other lanes may still be `out`): the lanes
    move on; when the step has ended, the run goes on as after any step (or to the fallback).
    Answers the lanes as they ended too."""
    par = lanes.parallel_of(spec, progress.step)
    assert par is not None and isinstance(spec, TaskSetSpec)
    name = progress.step.partition(":")[2]
    index = {(lane.branch, lane.at): i for i, lane in enumerate(progress.lanes)}
    reported = []
    for call, outcome in results:
        found = lanes.parse_lane_step(call)
        branch = found[1] if found else -1
        at = (
            [s.name for s in par.branches[branch]].index(found[2])
            if found and branch < len(par.branches)
            else -1
        )
        if (branch, at) in index:
            reported.append((index[(branch, at)], outcome))
    after, verdict = lanes.after_wave(
        par, name, progress.lanes, reported, progress.salt, now, branches_of(out)
    )
    waiting = replace(progress, in_flight=bool(out), delay_ms=None, delay_reason=None)
    if verdict is None:  # (a lane out keeps its past due time: stored so, a lost call is made again)
        return replace(waiting, lanes=after, due=lanes.next_due(after)), after
    left = replace(waiting, lanes=())
    if verdict.ok:
        return machine.step_succeeded(spec, left, now, notify), after
    branch, at = verdict.failed or (0, 0)
    step = lanes.lane_step(name, branch, par.branches[branch][at].name)
    return machine.step_failed(spec, left, step, verdict.reason or "a branch failed", now, notify), after
