"""The record of one ended run of any object, as the runs list keeps it (`GET /runs`).

A run is one go of an object from its first call to its end: a one-time
object's (generation, re-run), or one run of a recurring one. `ended` makes
its record when a transition ends a run; the loop writes it in the same
commit as the result that ended it, so a failed run is listed as soon as the
failure is stored. Pure: no I/O, no clock. Called by the loop and the service.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from lambdaop.engine.progress import Phase, Progress
from lambdaop.engine.record import CallRecord, StoredObject
from lambdaop.engine.recurring import run_ended
from lambdaop.engine.steps import is_notice

RESULTS = ("completed", "failed", "cancelled")  # how a run ends
LAST_CALL = ("step", "attempt", "key", "status", "error", "at")  # what a run's record keeps of its last call


@dataclass(frozen=True)
class RunRecord:
    """One ended run: its object, number, times, result, reason, and its last call."""

    object_id: str
    kind: str
    name: str
    owner: str
    result: str
    finished: dt.datetime
    generation: int = 1
    run: int | None = None  # a recurring object's run number
    labels: dict[str, str] | None = None
    scheduled: dt.datetime | None = None  # its time on the schedule (recurring objects)
    started: dt.datetime | None = None
    reason: str | None = None
    failed_step: str | None = None
    trigger: str | None = None  # off the schedule: now, rerun, backfill
    rerun: int | None = None  # which re-run it was
    rerun_of: int | None = None  # the run it re-ran (recurring objects)
    calls: int | None = None  # the calls this run made
    last_call: dict[str, Any] | None = None  # the call that ended it, as the history keeps it
    id: str | None = None  # where it sits in the runs list (the store's; a page's `next` is one)

    @classmethod
    def from_storage(cls, doc: dict[str, Any]) -> RunRecord:
        return cls(
            object_id=doc["o"],
            kind=doc["kind"],
            name=doc.get("name", ""),
            owner=doc.get("owner", ""),
            result=doc["result"],
            finished=doc["finished"],
            generation=int(doc.get("generation", 1)),
            run=doc.get("run"),
            labels=dict(doc.get("labels") or {}),
            scheduled=doc.get("scheduled"),
            started=doc.get("started"),
            reason=doc.get("reason"),
            failed_step=doc.get("failedStep"),
            trigger=doc.get("trigger"),
            rerun=doc.get("rerun"),
            rerun_of=doc.get("rerunOf"),
            calls=doc.get("calls"),
            last_call=doc.get("lastCall"),
            id=doc.get("id"),
        )

    def for_storage(self) -> dict[str, Any]:
        """The stored fields (the store adds its own key and expiry)."""
        out = {
            "o": self.object_id,
            "kind": self.kind,
            "name": self.name,
            "owner": self.owner,
            "labels": dict(self.labels or {}),
            "result": self.result,
            "finished": self.finished,
            "generation": self.generation,
            "run": self.run,
            "scheduled": self.scheduled,
            "started": self.started,
            "reason": self.reason,
            "failedStep": self.failed_step,
            "trigger": self.trigger,
            "rerun": self.rerun,
            "rerunOf": self.rerun_of,
            "calls": self.calls,
            "lastCall": self.last_call,
        }
        return {k: v for k, v in out.items() if v is not None}


def ended(
    before: Progress,
    after: Progress,
    identity: tuple[str, str, str, str, int, dict[str, str]],
    recurring: bool,
    now: dt.datetime,
    last_call: dict[str, Any] | None = None,
) -> RunRecord | None:
    """The record of the run that going from `before` to `after` ended, else None. `identity`
    is the object's (id, kind, name, owner, generation, labels)."""
    if not run_ended(before, after):
        return None
    result = after.last_result or after.phase.value
    if result not in RESULTS:
        result = "completed" if after.phase is not Phase.FAILED else "failed"
    object_id, kind, name, owner, generation, labels = identity
    failed = result == "failed"
    step = before.failed_step or (before.step if before.step != "fallback" and not is_notice(before.step) else None)  # fmt: skip
    if failed and step is None and kind == "Task":
        step = "task"
    return RunRecord(
        object_id=object_id,
        kind=kind,
        name=name,
        owner=owner,
        result=result,
        finished=after.finished or now,
        generation=generation,
        run=before.run if recurring else None,
        labels=labels,
        scheduled=before.scheduled if recurring else None,
        started=before.started,
        reason=(after.last_reason or after.reason) if failed else None,
        failed_step=step if failed else None,
        trigger=before.trigger,
        rerun=before.rerun or None if before.trigger == "rerun" else None,
        rerun_of=before.rerun_of,
        calls=before.run_calls or after.calls,  # (an object stored before runs counted their own: its total)
        last_call=last_call,
    )


def ended_by(
    record: StoredObject, before: Progress, after: Progress, now: dt.datetime, call: CallRecord
) -> RunRecord | None:
    """`ended` for a stored object whose progress went from `before` to `after`, `call` last."""
    identity = (record.id, record.kind.value, record.name, record.owner, record.generation, record.labels)
    last = {k: v for k, v in call.for_storage().items() if k in LAST_CALL}
    return ended(before, after, identity, record.recurring, now, last)
