"""The typed record of a stored object, and the changes made to it.

A `StoredObject` is what lambdaop keeps of one Task or TaskSet: who and what
it is, its spec, where it stands (`Progress`), its last call and runs. It is
read from a stored document once (`from_storage`) and written as one
(`for_storage`); between the two it travels as this frozen record, never as a
bare dict. A `Change` says what one write changes of a record: the store turns
it into its own update (`sets`, `unsets`, `pushes`), and the writer of the
change merges it back into the record (`applied_to`) once it is durable, so
the same change is never built or merged twice.

Pure: no I/O, no clock. Called by the loop, the service, the presenter and
the status files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from lambdaop.engine.outputs import StepOutput
from lambdaop.engine.progress import Phase, PlanSpec, Progress
from lambdaop.spec import Kind, TaskSetSpec, TaskSpec

RUNS_KEPT = 100  # run summaries kept in the object (recurring objects)


def parse_plan(kind: str, spec: dict[str, Any]) -> PlanSpec:
    """The stored spec of an object of this kind as its model (raises ValueError when unreadable)."""
    if kind == Kind.TASK:
        return TaskSpec.model_validate(spec)
    return TaskSetSpec.model_validate(spec)


def parse_plan_of(spec: dict[str, Any]) -> PlanSpec:
    """A stored spec as its model, its kind told by its shape (a TaskSet has `tasks` or `steps`)."""
    return parse_plan(Kind.TASKSET if "tasks" in spec or "steps" in spec else Kind.TASK, spec)


def _clean(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class CallRecord:
    """One call of an object, as its history keeps it."""

    step: str
    attempt: int
    at: dt.datetime
    ok: bool
    generation: int = 1
    key: str | None = None  # the Idempotency-Key sent
    url: str | None = None
    duration_ms: float | None = None
    status: int | None = None
    error: str | None = None
    response: str | None = None  # the first 4 KiB of the answer
    run: int | None = None  # of a recurring object
    next_delay_ms: float | None = None  # the wait chosen before the next attempt, and why
    delay_reason: str | None = None
    recovered: str | None = None  # why this attempt was made again by another holder
    interrupted: bool | None = None

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> CallRecord:
        return cls(
            step=str(data.get("step", "")),
            attempt=int(data.get("attempt", 1)),
            at=data["at"],
            ok=bool(data.get("ok")),
            generation=int(data.get("generation", 1)),
            key=data.get("key"),
            url=data.get("url"),
            duration_ms=data.get("duration_ms"),
            status=data.get("status"),
            error=data.get("error"),
            response=data.get("response"),
            run=data.get("run"),
            next_delay_ms=data.get("nextDelayMs"),
            delay_reason=data.get("delayReason"),
            recovered=data.get("recovered"),
            interrupted=data.get("interrupted"),
        )

    def for_storage(self) -> dict[str, Any]:
        out = {
            "generation": self.generation,
            "step": self.step,
            "attempt": self.attempt,
            "key": self.key,
            "url": self.url,
            "at": self.at,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "response": self.response,
        }
        extra = {
            "run": self.run,
            "nextDelayMs": self.next_delay_ms,
            "delayReason": self.delay_reason,
            "recovered": self.recovered,
            "interrupted": self.interrupted,
        }
        return out | _clean(extra)


@dataclass(frozen=True)
class RunSummary:
    """How one run of a recurring object went."""

    run: int
    scheduled: dt.datetime | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    result: str | None = None
    reason: str | None = None
    notified: str | None = None
    trigger: str | None = None  # a run off the schedule: now, rerun, backfill
    rerun_of: int | None = None  # the run it re-ran
    failed_step: str | None = None  # the step whose failure ended it

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> RunSummary:
        return cls(
            run=int(data.get("run") or 0),
            scheduled=data.get("scheduled"),
            started=data.get("started"),
            finished=data.get("finished"),
            result=data.get("result"),
            reason=data.get("reason"),
            notified=data.get("notified"),
            trigger=data.get("trigger"),
            rerun_of=data.get("rerunOf"),
            failed_step=data.get("failedStep"),
        )

    def for_storage(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUN_EXTRA}
        return out | _clean({stored: getattr(self, name) for name, stored in _RUN_EXTRA.items()})


_RUN_EXTRA = {"trigger": "trigger", "rerun_of": "rerunOf", "failed_step": "failedStep"}  # stored when set


@dataclass(frozen=True)
class Source:
    """Where an object's spec came from: a file of a watched folder (or of `apply -f`)."""

    file: str | None = None
    line: int | None = None
    document: int | None = None
    folder: str | None = None
    taken_over_from: str | None = None  # the manager it had before `force` took it over
    taken_over_by: str | None = None

    @classmethod
    def from_storage(cls, data: dict[str, Any] | None) -> Source | None:
        if not data:
            return None
        return cls(
            file=data.get("file"),
            line=data.get("line"),
            document=data.get("document"),
            folder=data.get("folder"),
            taken_over_from=data.get("takenOverFrom"),
            taken_over_by=data.get("takenOverBy"),
        )

    def for_storage(self) -> dict[str, Any]:
        return _clean(
            {
                "file": self.file,
                "line": self.line,
                "document": self.document,
                "folder": self.folder,
                "takenOverFrom": self.taken_over_from,
                "takenOverBy": self.taken_over_by,
            }
        )


@dataclass(frozen=True)
class PendingSpec:
    """An edit that waits for the run going on to end: then it becomes the object's next generation."""

    spec: dict[str, Any]
    spec_hash: str
    generation: int
    asked: dt.datetime
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    manager: str | None = None
    source: Source | None = None

    @classmethod
    def from_storage(cls, data: dict[str, Any] | None) -> PendingSpec | None:
        if not data:
            return None
        return cls(
            spec=data.get("spec") or {},
            spec_hash=data.get("spec_hash", ""),
            generation=int(data.get("generation", 1)),
            asked=data["asked"],
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            manager=data.get("manager"),
            source=Source.from_storage(data.get("source")),
        )

    def for_storage(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spec": self.spec,
            "spec_hash": self.spec_hash,
            "generation": self.generation,
            "asked": self.asked,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }
        if self.manager is not None:
            out["manager"] = self.manager
        if self.source is not None:
            out["source"] = self.source.for_storage()
        return out

    @property
    def plan(self) -> PlanSpec:
        return parse_plan_of(self.spec)


@dataclass(frozen=True)
class StoredObject:
    """One Task or TaskSet as lambdaop keeps it."""

    id: str
    kind: Kind
    owner: str
    name: str
    spec: dict[str, Any]  # the spec as stored: plain JSON (durations as text, secrets by reference)
    progress: Progress
    fence: int = 0  # incremented by every write: a write that expects another value is stale
    due: dt.datetime | None = None  # when its next call is due, while it waits for one (the due index)
    spec_hash: str = ""
    generation: int = 1
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    display: str | None = None  # the name an original route was given (any text)
    source: Source | None = None
    manager: str | None = None  # folder:<path> or api:<user>
    pruned: bool = False
    last: CallRecord | None = None
    last_run: RunSummary | None = None
    runs: tuple[RunSummary, ...] = ()
    pending: PendingSpec | None = None  # an edit waiting for the run going on to end
    outputs: dict[str, StepOutput] = field(default_factory=dict)  # what named steps answered (steps.NAME)
    legacy_attempts: tuple[dict[str, Any], ...] | None = None  # history an earlier version kept inside

    @classmethod
    def from_storage(cls, doc: dict[str, Any]) -> StoredObject:
        """Read a stored document (raises KeyError, TypeError or ValueError when it cannot be read)."""
        last = doc.get("last")
        last_run = doc.get("lastRun")
        legacy = doc.get("attempts")
        return cls(
            id=doc["_id"],
            kind=Kind(doc["kind"]),
            owner=doc.get("owner", ""),
            name=doc.get("name", ""),
            spec=doc.get("spec") or {},
            progress=Progress.from_storage(doc["progress"]),
            fence=int(doc.get("fence", 0)),
            due=doc.get("due"),
            spec_hash=doc.get("spec_hash", ""),
            generation=int(doc.get("generation", 1)),
            created=doc.get("created"),
            updated=doc.get("updated"),
            labels=dict(doc.get("labels") or {}),
            annotations=dict(doc.get("annotations") or {}),
            display=doc.get("display"),
            source=Source.from_storage(doc.get("source")),
            manager=doc.get("manager"),
            pruned=bool(doc.get("pruned")),
            last=CallRecord.from_storage(last) if isinstance(last, dict) else None,
            last_run=RunSummary.from_storage(last_run) if isinstance(last_run, dict) else None,
            runs=tuple(RunSummary.from_storage(r) for r in doc.get("runs") or () if isinstance(r, dict)),
            pending=PendingSpec.from_storage(doc.get("pending")),
            outputs={
                k: StepOutput.from_storage(v)
                for k, v in (doc.get("outputs") or {}).items()
                if isinstance(v, dict)
            },
            legacy_attempts=tuple(legacy) if isinstance(legacy, list) else None,
        )

    def for_storage(self) -> dict[str, Any]:
        """The document to insert."""
        doc: dict[str, Any] = {
            "_id": self.id,
            "kind": self.kind.value,
            "owner": self.owner,
            "name": self.name,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "spec": self.spec,
            "spec_hash": self.spec_hash,
            "generation": self.generation,
            "state": self.state,
            "progress": self.progress.for_storage(),
            "fence": self.fence,
            "created": self.created,
            "updated": self.updated,
        }
        if self.due is not None:
            doc["due"] = self.due
        if self.progress.suspended:
            doc["paused"] = self.updated
        if self.source is not None:
            doc["source"] = self.source.for_storage()
        if self.manager is not None:
            doc["manager"] = self.manager
        if self.display:
            doc["display"] = self.display
        if self.pruned:
            doc["pruned"] = True
        if self.last is not None:
            doc["last"] = self.last.for_storage()
        if self.last_run is not None:
            doc["lastRun"] = self.last_run.for_storage()
        if self.runs:
            doc["runs"] = [r.for_storage() for r in self.runs]
        if self.pending is not None:
            doc["pending"] = self.pending.for_storage()
        if self.outputs:
            doc["outputs"] = {k: v.for_storage() for k, v in self.outputs.items()}
        return doc

    # ----- derived

    @property
    def state(self) -> str:
        return self.progress.phase.value

    @property
    def phase(self) -> Phase:
        return self.progress.phase

    @property
    def label(self) -> str:
        """`Task alice/hello`: how log lines and messages name it."""
        return f"{self.kind.value} {self.owner}/{self.name}"

    @property
    def managed_by(self) -> str:
        """Who keeps it in line with its spec: `folder:<path>` or `api:<user>`."""
        if self.manager:
            return self.manager
        folder = self.source.folder if self.source else None
        return f"folder:{folder}" if folder else f"api:{self.owner}"

    @property
    def recurring(self) -> bool:
        return bool(self.spec.get("schedule"))

    @cached_property
    def plan(self) -> PlanSpec:
        """The stored spec as its model (raises ValueError when it cannot be read)."""
        return parse_plan(self.kind, self.spec)

    def with_progress(self, progress: Progress) -> StoredObject:
        """The record moved to `progress` (its due time follows)."""
        return replace(self, progress=progress, due=progress.due)


@dataclass(frozen=True)
class Change:
    """What one write changes of a stored object (fields left None stay as they are).

    `progress` moves the object (its state and `due` follow it); with
    `keep_due` the stored `due` stays although the progress says none (a call
    that starts: if its process dies, the call is found and made again).
    """

    updated: dt.datetime
    progress: Progress | None = None
    keep_due: bool = False
    last: CallRecord | None = None
    run: RunSummary | None = None  # a run that ended: appended to `runs`, and the last run
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    manager: str | None = None
    source: Source | None = None
    pruned: bool | None = None
    pending: PendingSpec | None = None  # an edit to apply when the run going on ends
    clear_pending: bool = False  # the waiting edit is done with (applied, or taken back)
    outputs: dict[str, StepOutput] | None = None  # the named steps' outputs of the run, all of them
    ended: dict[str, Any] | None = None  # the run it ended, for the runs list (`runs.RunRecord`, stored)

    def new_state(self, record: StoredObject) -> str:
        return self.progress.phase.value if self.progress is not None else record.state

    # ----- what the store writes

    def sets(self) -> dict[str, Any]:
        """Stored fields and their new values."""
        out: dict[str, Any] = {"updated": self.updated}
        if self.progress is not None:
            out["progress"] = self.progress.for_storage()
            out["state"] = self.progress.phase.value
            if self.progress.due is not None and not self.keep_due:
                out["due"] = self.progress.due
            if self.progress.suspended:  # the dashboard's list of paused objects reads it
                out["paused"] = self.updated
        if self.last is not None:
            out["last"] = self.last.for_storage()
        if self.run is not None:
            out["lastRun"] = self.run.for_storage()
        for name in ("spec", "spec_hash", "generation", "labels", "annotations", "manager", "pruned"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.source is not None:
            out["source"] = self.source.for_storage()
        if self.pending is not None:
            out["pending"] = self.pending.for_storage()
        if self.outputs is not None:
            out["outputs"] = {k: v.for_storage() for k, v in self.outputs.items()}
        return out

    def unsets(self) -> tuple[str, ...]:
        """Stored fields removed."""
        out: tuple[str, ...] = ()
        if self.progress is not None and self.progress.due is None and not self.keep_due:
            out += ("due",)
        if self.progress is not None and not self.progress.suspended:
            out += ("paused",)
        if self.clear_pending and self.pending is None:
            out += ("pending",)
        return out

    def pushes(self) -> dict[str, tuple[list[Any], int]]:
        """Lists appended to: field -> (items, how many of the newest to keep)."""
        if self.run is None:
            return {}
        return {"runs": ([self.run.for_storage()], RUNS_KEPT)}

    # ----- the record after it

    def applied_to(self, record: StoredObject) -> StoredObject:
        """The record as the store holds it once this change is written (its fence moved on)."""
        changed: dict[str, Any] = {"updated": self.updated, "fence": record.fence + 1}
        if self.progress is not None:
            changed["progress"] = self.progress
            if not self.keep_due:
                changed["due"] = self.progress.due
        for name in ("last", "spec", "spec_hash", "generation", "labels", "annotations", "manager", "source", "pruned", "pending", "outputs"):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                changed[name] = value
        if self.clear_pending and self.pending is None:
            changed["pending"] = None
        if self.run is not None:
            changed["last_run"] = self.run
            changed["runs"] = (*record.runs, self.run)[-RUNS_KEPT:]
        if self.spec is not None:
            out = replace(record, **changed)
            out.__dict__.pop("plan", None)  # the spec changed: its model is read again
            return out
        return replace(record, **changed)


def adopt(pending: PendingSpec, progress: Progress, now: dt.datetime, base: Change | None = None) -> Change:
    """The change that makes a waiting edit the object's generation, starting at `progress`
    (on top of `base`, the change the run's end writes anyway)."""
    return replace(
        base or Change(updated=now),
        updated=now,
        progress=progress,
        spec=pending.spec,
        spec_hash=pending.spec_hash,
        generation=pending.generation,
        labels=pending.labels,
        annotations=pending.annotations,
        manager=pending.manager,
        source=pending.source,
        pruned=False,
        clear_pending=True,
    )
