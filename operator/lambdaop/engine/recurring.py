"""Between runs: what a recurring object does once a run has ended, or when a run was missed.

`after_run` schedules a recurring object's next run when one ends (a
one-time object stays as it ended): the schedule's next time, or a run off
it first (a queued re-run of a failed run, a backfill's next time, or a run
now asked for while the last one went on; `ondemand` sets these up), with `overlap` deciding about the times
that came due during the run. `catch_up` decides a run found long overdue
(the service was down) by `catchUp`. `run_ended` and `run_summary` tell the
loop that a transition ended a run, and what to record of it. Pure: no I/O,
no clock. Called by `machine` and by the loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from lambdaop.engine import recurrence
from lambdaop.engine.progress import Phase, PlanSpec, Progress
from lambdaop.engine.steps import first_step, is_notice

MISSED_AFTER = dt.timedelta(minutes=1)  # a recurring run this late was missed (the service was down)


def run_ended(before: Progress, after: Progress) -> bool:
    """Whether going from `before` to `after` ended a run (its failure notification, if any, done)."""
    if after.notify:
        return False
    return after.run > before.run or (after.final and (not before.final or before.notify))


def after_run(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A run has ended: a one-time object stays as it ended; a recurring one is scheduled again."""
    schedule = spec.schedule
    if schedule is None or progress.phase is Phase.CANCELLED:
        return progress
    anchor = progress.anchor or now
    after = progress.scheduled or now
    following = recurrence.next_run(schedule, after, anchor)
    if progress.trigger is not None:  # a run off the schedule ended: the schedule goes on where it was
        following, after = progress.resume_at, (progress.resume_at or now) - dt.timedelta(microseconds=1)
    extra = _off_schedule(spec, progress, following, now)
    if extra is not None:
        return extra
    if progress.backfill_only:  # a copy made for a parallel backfill: its part is done
        return replace(progress, phase=Phase.COMPLETED, due=None, trigger=None, resume_at=None,
                       reason=f"its part of the backfill is done (the last run {progress.last_result or 'ended'})")  # fmt: skip
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
        reason=None, skipped=skipped, trigger=None, resume_at=None, rerun_of=None,
    )  # fmt: skip


def _off_schedule(
    spec: PlanSpec, progress: Progress, following: dt.datetime | None, now: dt.datetime
) -> Progress | None:
    """The next run when it is off the schedule: a queued re-run of a failed run, a backfill's
    next time, or a run now asked for while the last one went on; the schedule's own run
    (`following`) is set aside meanwhile."""
    if progress.reruns:
        head = progress.reruns[0]
        return replace(
            progress, phase=Phase.SCHEDULED, step=head.step, attempt=1, run=progress.run + 1,
            scheduled=head.scheduled or now, due=now, started=None, failed_step=None, reason=None,
            trigger="rerun", resume_at=following, reruns=progress.reruns[1:], rerun=progress.rerun + 1,
            rerun_of=head.run,
        )  # fmt: skip
    if progress.backfill:
        at, rest = progress.backfill[0], progress.backfill[1:]
        trigger = "backfill"
    elif progress.run_after:
        at, rest, trigger = now, (), "now"
    else:
        return None
    return replace(
        progress, phase=Phase.SCHEDULED, step=first_step(spec),
        attempt=1, run=progress.run + 1, scheduled=at, due=now, started=None, failed_step=None, reason=None,
        trigger=trigger, resume_at=following, backfill=rest, run_after=False, rerun_of=None,
    )  # fmt: skip


def catch_up(spec: PlanSpec, progress: Progress, now: dt.datetime) -> Progress:
    """A recurring run found long overdue (the service was down) is decided by `catchUp`:
    none skips to the next run time, latest runs the last missed one now, all runs each in turn."""
    schedule = spec.schedule
    if schedule is None or progress.phase is not Phase.SCHEDULED or progress.scheduled is None:
        return progress
    if progress.trigger is not None:  # a run off the schedule (now, a re-run, a backfill) is meant
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
        "trigger": before.trigger,
        "rerun_of": before.rerun_of,
        "failed_step": _failed_step_of(before) if result == "failed" else None,
    }


def _failed_step_of(progress: Progress) -> str | None:
    """The step whose failure ended a run (the fallback and the notification are not it)."""
    if progress.failed_step is not None:
        return progress.failed_step
    return progress.step if progress.step != "fallback" and not is_notice(progress.step) else None
