"""Where an object is: its phase and the stored `Progress` every transition takes and returns.

`Progress` is frozen and kept as a sub-document of the stored object
(`from_storage` / `for_storage`); its `due` mirrors the store's field. The
transitions live in `machine` (a run's calls), `recurring` (between runs),
`changes` (a person's cancel, reschedule, suspend and resume) and `ondemand`;
each raises `Refused` with the reason shown to the user when an event is not
allowed. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lambdaop.engine.lanes import Lane
from lambdaop.spec import TaskSetSpec, TaskSpec


class Phase(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})
PlanSpec = TaskSpec | TaskSetSpec


class Refused(Exception):
    """The event is not allowed in this state; the message says why."""


@dataclass(frozen=True)
class QueuedRerun:
    """A re-run of a recurring object's failed run asked for while another re-run goes on or is
    queued (a bulk re-run of a time range): the run it re-runs, where it starts, and that run's time."""

    run: int
    step: str
    scheduled: dt.datetime | None = None

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> QueuedRerun:
        return cls(**data)


@dataclass(frozen=True)
class Progress:
    """Where an object is. Stored as a sub-document; `due` mirrors the store field."""

    phase: Phase
    step: str
    attempt: int = 1
    due: dt.datetime | None = None
    in_flight: bool = False
    calls: int = 0  # the object's calls so far, every run's
    run_calls: int = 0  # the calls of the run going on (or of the last one), its first included
    reason: str | None = None
    failed_step: str | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    run: int = 1
    scheduled: dt.datetime | None = None  # the run's time on the schedule (recurring objects)
    anchor: dt.datetime | None = None  # where a rate (`every`) counts from
    salt: int = 0  # makes jitter repeatable per object
    notify: bool = False  # the run has ended and its notifications are still to be delivered
    notified: str | None = None  # delivered | failed
    skipped: int = 0  # runs missed or skipped so far
    delay_ms: float | None = None  # the wait chosen before this retry, and why
    delay_reason: str | None = None
    suspended: bool = False
    last_result: str | None = None  # how the last run ended (completed, failed), for recurring objects
    last_reason: str | None = None
    trigger: str | None = None  # why this run runs off the schedule: now, rerun, backfill (ondemand)
    resume_at: dt.datetime | None = None  # the schedule's run set aside while a run off it goes on
    backfill: tuple[dt.datetime, ...] = ()  # schedule times still to be run by a backfill, in order
    run_after: bool = False  # a run now asked for while a run went on (overlap: wait)
    reruns: tuple[QueuedRerun, ...] = ()  # failed runs to be re-run next, one after another, in order
    backfill_only: bool = False  # a copy made to run part of a parallel backfill: it ends with its backfill
    rerun: int = 0  # runs re-run so far: the Idempotency-Key of a re-run says which (`-rerun<N>`)
    rerun_of: int | None = None  # the run this one re-runs (recurring objects)
    paused_due: dt.datetime | None = None  # a paused one-time object's due time, kept aside
    pause_reason: str | None = None  # why it was paused, as the person who paused it said
    lanes: tuple[Lane, ...] = ()  # the branches of the parallel step it is at (`lanes`)
    waiting_until: dt.datetime | None = None  # a waitForCallback step's call succeeded: its wait ends then
    expired: tuple[str, ...] = ()  # waits that timed out lately: a late callback is recorded
    answered: str | None = None  # a callback that came while its call was out (`callbacks`)

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> Progress:
        backfill = tuple(data.get("backfill") or ())
        branches = tuple(Lane.from_storage(b) for b in data.get("lanes") or ())
        expired = tuple(data.get("expired") or ())
        reruns = tuple(QueuedRerun.from_storage(r) for r in data.get("reruns") or ())
        return cls(**{**data, "phase": Phase(data["phase"]), "backfill": backfill, "lanes": branches, "expired": expired, "reruns": reruns})  # fmt: skip

    def for_storage(self) -> dict[str, Any]:
        """Stored as a sub-document (the fields of parallel steps and callbacks only when they are set)."""
        out = {**self.__dict__, "phase": self.phase.value, "backfill": list(self.backfill), "lanes": [lane.for_storage() for lane in self.lanes], "expired": list(self.expired), "reruns": [dict(r.__dict__) for r in self.reruns]}  # fmt: skip
        return {
            k: v
            for k, v in out.items()
            if k
            not in ("lanes", "waiting_until", "expired", "answered", "run_calls", "reruns", "backfill_only")
            or v
        }

    @property
    def final(self) -> bool:
        return self.phase in FINAL
