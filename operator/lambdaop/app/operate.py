"""What the person on call does to runs: run now, re-run a failed run, backfill.

Each is one change of one object through `Service.change` (so an object the
loop holds is changed on the loop's thread and never races its call); the
engine's `ondemand` decides it. Bulk re-runs and pauses by selector build on
these (`bulk`). Called by the API.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from lambdaop.app.service import Service
from lambdaop.core.clock import iso, to_utc
from lambdaop.core.errors import Conflict, Problem, SpecInvalid
from lambdaop.core.labels import Selector
from lambdaop.core.logs import about
from lambdaop.engine import changes, ondemand
from lambdaop.engine.ondemand import RunNow
from lambdaop.engine.progress import Phase, PlanSpec, Refused
from lambdaop.engine.record import Change, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.loop.events import Action

log = logging.getLogger("lambdaop.service")

SAID = {
    RunNow.EXTRA: "runs once now; its schedule is unchanged",
    RunNow.QUEUED: "a run is going on: one more run starts when it ends (overlap: wait)",
    RunNow.FORWARD: "was brought forward: its call is due now",
    RunNow.GENERATION: "runs again now as generation {generation}",
}


@dataclass(frozen=True)
class Done:
    """What an ask did to one object: the record as written (or as it is, when it waits for the
    run going on), and what happened in words."""

    record: StoredObject
    what: str
    message: str


class Operations:
    def __init__(self, service: Service) -> None:
        self.service = service

    def run_now(self, object_id: str, owner: str | None, kind: str | None = None) -> Done:
        """Run now (see `ondemand.run_now`); the answer says which of its cases it was."""
        said: list[RunNow] = []

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            progress, what = ondemand.run_now(_plan(record), record.progress, now)
            said[:] = [what]
            if what is RunNow.GENERATION:
                return Change(updated=now, progress=progress, generation=record.generation + 1)
            return Change(updated=now, progress=progress)

        answer = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide)
        what = said[-1]
        message = SAID[what].format(generation=answer.record.generation)
        log.info("%s %s (run now)", answer.record.label, message, extra=about(answer.record))
        return Done(answer.record, what.value, message)

    def rerun(
        self,
        object_id: str,
        owner: str | None,
        from_failed: bool,
        run: int | None = None,
        kind: str | None = None,
    ) -> Done:
        """Run a failed run again, from the start or from its failed step (see `ondemand.rerun`):
        a one-time object's failed run, or run number `run` of a recurring one (its last failed
        run when not given), which starts with that run's outputs of the steps it does not call
        again, under its own run number (`ondemand.carried_outputs`)."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            plan = _plan(record)
            if plan.schedule is None:
                return Change(updated=now, progress=ondemand.rerun(plan, record.progress, now, from_failed))
            summary = failed_run(record, run)
            progress = ondemand.rerun(
                plan, record.progress, now, from_failed, summary.run, summary.failed_step, summary.scheduled
            )
            kept = ondemand.carried_outputs(plan, record.outputs, record.generation, summary.run, progress)
            return Change(updated=now, progress=progress, outputs=kept)

        answer = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide)
        record = answer.record
        p = record.progress
        start = "from its failed step" if from_failed else "from the start"
        which = f"run {p.rerun_of}" if p.rerun_of is not None else "its failed run"
        message = f"re-runs {which} {start} ({p.step}) as re-run {p.rerun}"
        log.info("%s %s", record.label, message, extra=about(record))
        return Done(record, "rerun", message)

    def rerun_runs(
        self, object_id: str, owner: str | None, from_failed: bool, runs: list[int], kind: str | None = None
    ) -> tuple[StoredObject, dict[int, str], dict[int, str]]:
        """Re-run several failed runs of a recurring object, one after another in the order given
        (a bulk re-run of a time range): the first starts now when no run is going on (as
        `rerun`, with its outputs), the others wait their turn (`ondemand.queue_rerun`). In one
        change of the object; answers the record and, by run number, what was done and what was
        refused (nothing is written when every one is refused)."""
        done: dict[int, str] = {}
        refused: dict[int, str] = {}

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            done.clear()
            refused.clear()
            plan = _plan(record)
            progress, kept = record.progress, None
            start = "from its failed step" if from_failed else "from the start"
            for n in runs:
                try:
                    summary = failed_run(record, n)
                    idle = progress.phase is Phase.SCHEDULED and not progress.in_flight and progress.trigger is None  # fmt: skip
                    if idle and not done:
                        again = ondemand.rerun(plan, progress, now, from_failed, n, summary.failed_step, summary.scheduled)  # fmt: skip
                        kept = ondemand.carried_outputs(plan, record.outputs, record.generation, n, again)
                        progress = again
                        done[n] = f"re-runs run {n} {start} ({again.step}) as re-run {again.rerun}"
                    else:
                        progress = ondemand.queue_rerun(plan, progress, from_failed, n, summary.failed_step, summary.scheduled)  # fmt: skip
                        done[n] = f"re-runs run {n} {start} after the runs before it ({len(progress.reruns)} waiting)"  # fmt: skip
                except (Refused, Conflict) as exc:
                    refused[n] = exc.message if isinstance(exc, Conflict) else str(exc)
            if not done:
                raise Refused("; ".join(f"run {n}: {why}" for n, why in refused.items()))
            return Change(updated=now, progress=progress, outputs=kept)

        record = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide).record
        for message in done.values():
            log.info("%s %s", record.label, message, extra=about(record))
        return record, dict(done), dict(refused)

    def backfill(
        self, object_id: str, owner: str | None, start: dt.datetime, end: dt.datetime, kind: str | None = None
    ) -> tuple[Done, list[dt.datetime]]:
        """The runs a recurring object's schedule would have made in [start, end), one after
        another from now, each recorded as a backfill run."""
        for name, value in (("start", start), ("end", end)):
            if value.tzinfo is None:
                raise SpecInvalid(
                    "invalid request", [Problem("time needs an offset (Z or +HH:MM)", field=name)]
                )
        start, end = to_utc(start), to_utc(end)
        times: list[dt.datetime] = []

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            progress, found = ondemand.backfill(_plan(record), record.progress, start, end, now)
            times[:] = found
            return Change(updated=now, progress=progress)

        answer = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide)
        message = f"backfills {len(times)} run(s) from {iso(times[0])} to {iso(times[-1])}, one after another"
        if answer.later:
            message += ", after the run going on"
        log.info("%s %s", answer.record.label, message, extra=about(answer.record))
        return Done(answer.record, "backfill", message), times

    def pause(self, object_id: str, owner: str | None, reason: str | None) -> Done:
        """Pause one object with a reason: a recurring one suspends (a run going on ends first), a
        one-time one waiting for its call keeps its due time aside."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            plan = _plan(record)
            if plan.schedule is not None:
                return Change(updated=now, progress=changes.suspend(plan, record.progress, reason))
            return Change(updated=now, progress=ondemand.pause(record.progress, reason))

        answer = self.service.change(object_id, owner, None, Action.DECIDE, decide, decide)
        later = " after the run going on" if answer.later else ""
        log.info("%s paused%s: %s", answer.record.label, later, reason or "no reason given", extra=about(answer.record))  # fmt: skip
        return Done(answer.record, "paused", f"paused{later}")

    def unpause(self, object_id: str, owner: str | None, skip: bool) -> Done:
        """Resume one paused object: a recurring one from its next run time; a one-time one at its
        time (at once when it passed meanwhile), or with `skip` one whose time passed is cancelled."""

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            plan = _plan(record)
            if plan.schedule is not None:
                return Change(updated=now, progress=changes.resume(plan, record.progress, now))
            return Change(updated=now, progress=ondemand.unpause(record.progress, now, skip))

        record = self.service.change(object_id, owner, None, Action.DECIDE, decide, decide).record
        what = "skipped (it came due while paused)" if record.state == "cancelled" else "resumed"
        log.info("%s %s", record.label, what, extra=about(record))
        return Done(record, "skipped" if record.state == "cancelled" else "resumed", what)

    def runs(
        self,
        owner: str,
        result: str | None,
        since: dt.datetime | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        kind: str | None = None,
        prefix: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """One page of the owner's ended runs across objects, newest first (the store's `list_runs`);
        with `prefix`, only the runs of objects whose name starts with it."""
        with self.service.read():
            page = self.service.store.list_runs(owner, result, since, before, limit, selector, kind, prefix)
        return [RunRecord.from_storage(d) for d in page.docs], page.next


def failed_run(record: StoredObject, run: int | None) -> RunSummary:
    """Run `run` of a recurring object as its summary keeps it (its last failed one when None)."""
    for summary in reversed(record.runs):
        if (run is None and summary.result == "failed") or summary.run == run:
            if summary.result != "failed":
                raise Refused(
                    f"run {summary.run} did not fail (it {summary.result}); only a failed run can be re-run"
                )
            return summary
    if run is None:
        raise Refused("none of its kept runs failed")
    raise Conflict(f"run {run} is not among its kept runs (the last {len(record.runs)})")


def _plan(record: StoredObject) -> PlanSpec:
    try:
        return record.plan
    except ValueError as exc:
        raise Conflict(f"its stored spec cannot be read: {exc}") from None
