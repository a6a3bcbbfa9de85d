"""A person's changes to an object's course: cancel, reschedule, suspend and resume.

Pure functions of (spec, progress, now), as `machine` is; each answers the
new progress, or raises `Refused` with the reason shown to the user. Only a
scheduled object (no call of this run made yet) can be cancelled or given a
new time; only a recurring one is suspended, and a run going on ends first.
Runs asked for (run now, re-run, backfill) and the pause of one-time objects
are `ondemand`'s. Called by the service and by the loop's requests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from lambdaop.engine import recurrence
from lambdaop.engine.progress import Phase, PlanSpec, Progress, Refused


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


def suspend(spec: PlanSpec, progress: Progress, reason: str | None = None) -> Progress:
    """A recurring object pauses: no run starts until it is resumed (a run going on ends first)."""
    if spec.schedule is None:
        raise Refused("only a recurring object (with a schedule) can be suspended; cancel a one-time one")
    if progress.final:
        raise Refused(f"it is {progress.phase.value}")
    if progress.phase is Phase.SCHEDULED:
        return replace(progress, suspended=True, due=None, pause_reason=reason)
    return replace(progress, suspended=True, pause_reason=reason)


def resume(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A suspended recurring object runs again from its next run time after now."""
    schedule = spec.schedule
    if schedule is None or progress.final:
        raise Refused("only a recurring object that has not ended can be resumed")
    if not progress.suspended:
        return progress
    progress = replace(progress, pause_reason=None)
    if progress.phase is not Phase.SCHEDULED:
        return replace(progress, suspended=False)
    if progress.trigger is not None:  # a run off the schedule (run now, a re-run, a backfill): now
        return replace(progress, suspended=False, due=now)
    following = recurrence.next_run(schedule, now, progress.anchor or now)
    if following is None:
        return replace(progress, suspended=False, phase=Phase.COMPLETED, finished=now, reason="the schedule has ended")  # fmt: skip
    due = following + recurrence.jitter(schedule, progress.salt, progress.run)
    return replace(progress, suspended=False, scheduled=following, due=due)


def not_scheduled(progress: Progress, verb: str) -> str:
    if progress.phase is Phase.SCHEDULED:
        return f"only a scheduled object can be {verb}; its first call has already started"
    return f"only a scheduled object can be {verb}; this one is {progress.phase.value}"
