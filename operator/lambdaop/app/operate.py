"""What the person on call does to runs: run now, re-run a failed run, backfill.

Each is one change of one object through `Service.change` (so an object the
loop holds is changed on the loop's thread and never races its call); the
engine's `ondemand` decides it. Bulk re-runs and pauses by selector build on
these (`bulk`). Called by the API.
"""

from __future__ import annotations

import contextlib
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
from lambdaop.engine.progress import PlanSpec, Refused
from lambdaop.engine.record import Change, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.loop.events import Action
from lambdaop.spec import KINDS
from lambdaop.store.contract import WriteOutcome

log = logging.getLogger("lambdaop.service")

MAX_PARALLEL = 50  # backfill runs at once (each runs in a copy of the object)
BACKFILL_OF = "lambdaop/backfill-of"  # the label of a parallel backfill's copies: the object's name

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
    made: tuple[str, ...] = ()  # the ids of objects it made (a parallel backfill's copies)


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

        queued: list[int] = []

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            queued.clear()
            plan = _plan(record)
            if plan.schedule is None:
                return Change(updated=now, progress=ondemand.rerun(plan, record.progress, now, from_failed))
            summary = failed_run(record, run)
            p = record.progress
            if not p.final and not ondemand.idle(p):
                queued.append(summary.run)  # after the run going on (and the re-runs queued before it)
                progress = ondemand.queue_rerun(plan, p, from_failed, summary.run, summary.failed_step, summary.scheduled)  # fmt: skip
                return Change(updated=now, progress=progress)
            progress = ondemand.rerun(
                plan, p, now, from_failed, summary.run, summary.failed_step, summary.scheduled
            )
            kept = ondemand.carried_outputs(plan, record.outputs, record.generation, summary.run, progress)
            return Change(updated=now, progress=progress, outputs=kept)

        answer = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide)
        record = answer.record
        p = record.progress
        start = "from its failed step" if from_failed else "from the start"
        if queued:
            message = f"re-runs run {queued[0]} {start} once the run going on has ended ({len(p.reruns)} re-run(s) waiting)"  # fmt: skip
            log.info("%s %s", record.label, message, extra=about(record))
            return Done(record, "rerun", message)
        which = f"run {p.rerun_of}" if p.rerun_of is not None else "its failed run"
        message = f"re-runs {which} {start} ({p.step}) as re-run {p.rerun}"
        log.info("%s %s", record.label, message, extra=about(record))
        return Done(record, "rerun", message)

    def rerun_runs(
        self,
        object_id: str,
        owner: str | None,
        from_failed: bool,
        runs: list[int],
        kind: str | None = None,
        dry_run: bool = False,
    ) -> tuple[StoredObject, dict[int, str], dict[int, str]]:
        """Re-run several failed runs of a recurring object, one after another in the order given
        (a bulk re-run of a time range): the first starts now when no run is going on (as
        `rerun`, with its outputs), the others wait their turn (`ondemand.queue_rerun`). In one
        change of the object; answers the record and, by run number, what was done and what was
        refused (nothing is written when every one is refused). `dry_run` decides the same on the
        object as it is and writes nothing."""
        done: dict[int, str] = {}
        refused: dict[int, str] = {}
        verb = "would re-run" if dry_run else "re-runs"

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            done.clear()
            refused.clear()
            plan = _plan(record)
            progress, kept = record.progress, None
            start = "from its failed step" if from_failed else "from the start"
            for n in runs:
                try:
                    summary = failed_run(record, n)
                    if ondemand.idle(progress) and not done:
                        again = ondemand.rerun(plan, progress, now, from_failed, n, summary.failed_step, summary.scheduled)  # fmt: skip
                        kept = ondemand.carried_outputs(plan, record.outputs, record.generation, n, again)
                        progress = again
                        done[n] = f"{verb} run {n} {start} ({again.step}) as re-run {again.rerun}"
                    else:
                        progress = ondemand.queue_rerun(plan, progress, from_failed, n, summary.failed_step, summary.scheduled)  # fmt: skip
                        done[n] = f"{verb} run {n} {start} after the runs before it ({len(progress.reruns)} waiting)"  # fmt: skip
                except (Refused, Conflict) as exc:
                    refused[n] = exc.message if isinstance(exc, Conflict) else str(exc)
            if not done:
                raise Refused("; ".join(f"run {n}: {why}" for n, why in refused.items()))
            return Change(updated=now, progress=progress, outputs=kept)

        if dry_run:
            record = self.service.get(object_id, owner, kind)
            with contextlib.suppress(Refused):
                decide(record, self.service.now())
            return record, dict(done), dict(refused)
        record = self.service.change(object_id, owner, kind, Action.DECIDE, decide, decide).record
        for message in done.values():
            log.info("%s %s", record.label, message, extra=about(record))
        return record, dict(done), dict(refused)

    def backfill(
        self,
        object_id: str,
        owner: str | None,
        start: dt.datetime,
        end: dt.datetime,
        kind: str | None = None,
        parallelism: int = 1,
    ) -> tuple[Done, list[dt.datetime]]:
        """The runs a recurring object's schedule would have made in [start, end), each recorded
        as a backfill run: one after another from now, or with `parallelism` above 1 at most that
        many at once (`backfill_copies`)."""
        for name, value in (("start", start), ("end", end)):
            if value.tzinfo is None:
                raise SpecInvalid(
                    "invalid request", [Problem("time needs an offset (Z or +HH:MM)", field=name)]
                )
        if not 1 <= parallelism <= MAX_PARALLEL:
            raise SpecInvalid("invalid request", [Problem(f"expected a whole number from 1 to {MAX_PARALLEL}: how many backfill runs may run at once", field="parallelism")])  # fmt: skip
        start, end = to_utc(start), to_utc(end)
        if parallelism > 1:
            return self.backfill_copies(object_id, owner, start, end, kind, parallelism)
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

    def backfill_copies(
        self,
        object_id: str,
        owner: str | None,
        start: dt.datetime,
        end: dt.datetime,
        kind: str | None,
        parallelism: int,
    ) -> tuple[Done, list[dt.datetime]]:
        """A backfill with at most `parallelism` runs at once. An object runs one run at a time,
        so the run times are dealt out, in turn, to that many copies of it: each a new object of
        the same owner and spec, named `<name>-backfill-<start>-<i>`, labelled `BACKFILL_OF` with
        the object's name, that runs its share one after another from now, each a backfill run
        (never a run of its own schedule), and ends `completed` with the last. The object itself
        and its schedule are not touched. The copies are written in one commit."""
        service = self.service
        service.require_store(creating=True)
        record = service.get(object_id, owner, kind)
        try:
            times = ondemand.backfill_times(_plan(record), record.progress, start, end)
        except Refused as exc:
            raise Conflict(str(exc)) from None
        ways = min(parallelism, len(times))
        stamp = start.strftime("%Y%m%dt%H%M%Sz")
        now = service.now()
        copies: list[StoredObject] = []
        for i in range(ways):
            name = f"{record.name}-backfill-{stamp}-{i + 1}"
            if len(name) > 200:
                raise Conflict(f"its name is too long to name the copies of a parallel backfill ({name!r} is over 200 characters); backfill it one run after another")  # fmt: skip
            labels = {**record.labels, BACKFILL_OF: record.name}
            spec = {k: v for k, v in record.spec.items() if k != "suspended"}  # a paused object's copy runs
            obj = KINDS[record.kind.value].model_validate({"metadata": {"name": name, "labels": labels}, "spec": spec})  # fmt: skip
            fresh = service.new_record(obj, record.owner, now)
            copies.append(fresh.with_progress(ondemand.backfill_copy(_plan(fresh), fresh.progress, times[i::ways], now)))  # fmt: skip
        ops = [service.insert_op(c, now) for c in copies]
        outcomes = service.writer.write_many(ops, timeout=service.deadline)
        taken = [c.name for c, o in zip(copies, outcomes, strict=True) if o is WriteOutcome.EXISTS]
        if taken:
            raise Conflict(f"a backfill from this start was already made ({', '.join(taken)} exist); delete those copies, or start at another time")  # fmt: skip
        if any(o is not WriteOutcome.OK for o in outcomes):
            raise Conflict("the backfill's copies could not all be stored; try again")
        for c, op in zip(copies, ops, strict=True):
            service.created(c, op)
        message = (
            f"backfills {len(times)} run(s) from {iso(times[0])} to {iso(times[-1])}, at most {ways} at once: "
            f"{ways} copies of it run them ({copies[0].name} … {copies[-1].name}, label {BACKFILL_OF}={record.name}); "
            "its own schedule is not touched"
        )
        log.info("%s %s", record.label, message, extra=about(record))
        return Done(record, "backfill", message, tuple(c.id for c in copies)), times

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
