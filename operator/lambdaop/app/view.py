"""How a stored object is shown: one view, used by the API, the web page and the status files.

`present` makes the JSON view of a record for a viewer: its owner sees it
whole (secret header values and URL passwords masked); anybody else, admins
too, sees only a summary (kind, name, owner, state, times and counts).
`ObjectOut` documents that view (it is the OpenAPI schema of every object
answer, and a test keeps the two together). The status files' entries are a
selection of the same view (`status.object_entry`). The dashboard's rows are
here too: what is due within the hour (`Coming`) and what is suspended
(`Paused`). Called by the API and the folder's status files.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from lambdaop.core.clock import iso, to_utc
from lambdaop.engine import recurrence
from lambdaop.engine.record import CallRecord, RunSummary, StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.spec import Schedule, format_duration
from lambdaop.spec.calls import SECRET_HEADERS
from lambdaop.store.contract import Doc, DueEntry

SUMMARY = ("id", "kind", "name", "displayName", "owner", "state", "generation", "created", "updated", "due", "started", "finished", "calls", "attempt", "inFlight", "taskId", "taskSetId", "run", "suspended", "nextRuns", "waitingUntil")  # fmt: skip


def mask_url(url: str) -> str:
    """A URL with the password of its user part masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def masked(value: Any) -> Any:
    """A spec or call record with secret header values and URL passwords masked (secrets by
    reference, `fromEnv`, are names only and stay)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "headers" and isinstance(item, dict):
                out[key] = {h: ("***" if h.lower() in SECRET_HEADERS and isinstance(v, str) else masked(v)) for h, v in item.items()}  # fmt: skip
            elif key == "url" and isinstance(item, str):
                out[key] = mask_url(item)
            else:
                out[key] = masked(item)
        return out
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return mask_url(value)
    return value


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in masked(data).items() if v is not None}


def present_call(call: CallRecord) -> dict[str, Any]:
    return _plain(call.for_storage())


def present_run(run: RunSummary) -> dict[str, Any]:
    return _plain(run.for_storage())


def present_run_record(run: RunRecord) -> dict[str, Any]:
    """One ended run in the runs list: its object (and where to read its calls), number, times,
    result, reason and the call that ended it."""
    path = "/tasks" if run.kind == "Task" else "/tasksets"
    out = {
        "id": run.id,
        "object": {
            "id": run.object_id,
            "kind": run.kind,
            "name": run.name,
            "owner": run.owner,
            "href": f"{path}/{run.object_id}",
        },  # fmt: skip
        "labels": run.labels or {},
        "generation": run.generation,
        "run": run.run,
        "due": iso(run.scheduled),
        "started": iso(run.started),
        "finished": iso(run.finished),
        "result": run.result,
        "reason": run.reason,
        "failedStep": run.failed_step,
        "trigger": run.trigger,
        "rerun": run.rerun,
        "rerunOf": run.rerun_of,
        "calls": run.calls,
        "lastCall": _plain(run.last_call) if run.last_call else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def present_schedule(record: StoredObject, count: int = 5) -> dict[str, Any]:
    """A recurring object's schedule in words, its next run times, last run, and whether it is suspended."""
    raw = record.spec.get("schedule")
    if not raw:
        return {}
    try:
        schedule = Schedule.model_validate(raw)
    except ValueError:
        return {}
    p = record.progress
    out: dict[str, Any] = {
        "schedule": {**raw, "description": _utc_z(recurrence.describe(schedule))},
        "run": p.run,
        "suspended": p.suspended,
        "skippedRuns": p.skipped,
        "lastRun": present_run(record.last_run) if record.last_run else None,
        "nextRuns": [],
    }
    out["nextRuns"] = [iso(t) for t in next_runs(record, schedule, count)]
    return out


def next_runs(record: StoredObject, schedule: Schedule, count: int = 5, until: dt.datetime | None = None) -> list[dt.datetime]:  # fmt: skip
    """A recurring object's next run times (at most `count`, none after `until`): the next one
    when it is due (a modified time, a jittered one), then the schedule's."""
    p = record.progress
    if p.scheduled is None or p.suspended or p.phase.value not in ("scheduled", "running"):
        return []
    anchor = p.anchor or p.scheduled
    first = [record.due or p.scheduled] if p.phase.value == "scheduled" else []
    after = p.scheduled
    if p.trigger is not None:  # a run off the schedule: then the schedule's runs, where it was
        if p.resume_at is None:
            return [t for t in first if until is None or t <= until]
        first, after = first + [p.resume_at], p.resume_at
    found = first + recurrence.upcoming(schedule, after, anchor, count - len(first))
    return [t for t in found if until is None or t <= until]


@dataclass(frozen=True)
class Coming:
    """An object due within the dashboard's hour: a one-time call by its due time alone, a
    recurring object whole (its schedule tells its later runs)."""

    id: str
    kind: str
    name: str  # its display name, or its name
    due: dt.datetime
    record: StoredObject | None = None  # recurring ones only

    @classmethod
    def of(cls, entry: DueEntry, record: StoredObject | None = None) -> Coming:
        return cls(entry.id, entry.kind, entry.display or entry.name, to_utc(entry.due), record)

    @property
    def recurring(self) -> bool:
        return self.record is not None

    def runs(self, until: dt.datetime, count: int) -> list[dt.datetime]:
        if self.record is not None:
            return runs_within(self.record, until, count)
        return [self.due] if self.due <= until else []


@dataclass(frozen=True)
class Paused:
    """A suspended object on the dashboard: its id, kind, name (its display name, or its name)
    and the reason whoever paused it gave, if any."""

    id: str
    kind: str
    name: str
    reason: str | None = None

    @classmethod
    def from_storage(cls, doc: Doc) -> Paused:
        """From an entry of the store's `paused` (identity, name and progress)."""
        reason = (doc.get("progress") or {}).get("pause_reason")
        return cls(doc["_id"], doc["kind"], doc.get("display") or doc["name"], reason)

    def shown(self) -> dict[str, Any]:
        """As the dashboard's `attention.paused` shows it."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "reason": self.reason}


def runs_within(record: StoredObject, until: dt.datetime, count: int) -> list[dt.datetime]:
    """When a scheduled object calls before `until`: its due time, or a recurring one's run times."""
    raw = record.spec.get("schedule")
    if raw:
        try:
            return next_runs(record, Schedule.model_validate(raw), count, until)
        except ValueError:
            return []
    return [record.due] if record.due is not None and record.due <= until else []


def _utc_z(text: str) -> str:
    """Times in words as everywhere else: ISO 8601 with Z (`…T00:00:00+00:00` is `…T00:00:00Z`)."""
    return re.sub(r"(\d{2}:\d{2}:\d{2}(?:\.\d+)?)\+00:00", r"\1Z", text)


def _failed_step(record: StoredObject) -> str | None:
    """The step that failed: a TaskSet's task:N or check:N, a failed Task's `task`."""
    p = record.progress
    if p.failed_step is None and record.kind == "Task" and p.phase.value == "failed":
        return "task"
    return p.failed_step


def _spec_view(record: StoredObject) -> dict[str, Any]:
    """The stored spec as shown: secrets masked, and the failure notification without the
    method its model defaults to (it is always sent as a JSON POST)."""
    spec = masked(record.spec)
    notify = spec.get("onFailure")
    if isinstance(notify, dict) and isinstance(notify.get("invoke"), dict):
        invoke = dict(notify["invoke"])
        if invoke.get("method") == "GET":
            invoke.pop("method")
        spec["onFailure"] = {**notify, "invoke": invoke}
    return spec


def present(
    record: StoredObject,
    history: list[CallRecord] | None = None,
    live: str | None = None,
    viewer: str | None = None,
    waiting: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An object as `viewer` (a user name; None: its owner) sees it. `history` is for one
    object's answer; `live` overrides the stored state; `waiting` is what its due call waits for
    (a place of a limit key)."""
    p = record.progress
    out: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind.value,
        "name": record.name,
        "owner": record.owner,
        "state": live or record.state,
        "labels": record.labels,
        "generation": record.generation,
        "created": iso(record.created),
        "updated": iso(record.updated),
        "due": iso(record.due),
        "step": p.step,
        "attempt": p.attempt,
        "calls": p.calls,
        "inFlight": live == "running",
        "reason": p.reason,
        "failedStep": _failed_step(record),
        "started": iso(p.started),
        "finished": iso(p.finished),
        "suspended": p.suspended,
        "pauseReason": p.pause_reason,
        "trigger": p.trigger,
        "rerun": p.rerun or None,
        "rerunOf": p.rerun_of,
        "backfillLeft": len(p.backfill) or None,
        "rerunsWaiting": [r.run for r in p.reruns] or None,
        "displayName": record.display or record.name,
        "pruned": record.pruned,
        "manager": record.managed_by,
        "last": present_call(record.last) if record.last else None,
        "spec": _spec_view(record),
    }
    shown = waiting if not p.final and live != "running" else None
    if shown:  # its due call waits for a place of a limit key
        out["waitingFor"] = {k: iso(v) if isinstance(v, dt.datetime) else format_duration(v) if isinstance(v, dt.timedelta) else v for k, v in shown.items()}  # fmt: skip
    if p.waiting_until is not None:  # a waitForCallback step waits for its callback until then
        out["waitingUntil"] = iso(p.waiting_until)
    if p.lanes:  # at a parallel step: where each branch stands
        out["branches"] = [{"branch": lane.branch, "state": lane.state.value, "at": lane.at, "attempt": lane.attempt, "due": iso(lane.due)} for lane in p.lanes]  # fmt: skip
    if record.kind == "Task":
        out["taskId"] = record.id
        invoke = out["spec"].get("invoke", {})
        out["url"] = (invoke.get("url") or invoke.get("lambda")) if isinstance(invoke, dict) else None
    else:
        out["taskSetId"] = record.id
    out.update(present_schedule(record))
    if history is not None:
        out["attempts"] = [present_call(a) for a in history]
        out["runs"] = [present_run(r) for r in record.runs] if "schedule" in out else None
        if record.source is not None:
            out["source"] = record.source.for_storage()
        if record.outputs:
            out["outputs"] = {name: o.in_context() | {"run": o.run, "generation": o.generation} for name, o in record.outputs.items()}  # fmt: skip
    if viewer is not None and viewer != record.owner:
        return {k: out[k] for k in SUMMARY if k in out} | {"redacted": True}
    return out


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Attempt(_Out):
    generation: int | None = None
    step: str
    attempt: int
    key: str | None = Field(default=None, description="the Idempotency-Key sent")
    url: str | None = None
    at: str = Field(description="when the call started (ISO 8601, UTC)")
    duration_ms: float | None = None
    status: int | None = None
    ok: bool
    error: str | None = None
    response: str | None = Field(default=None, description="first 4 KiB of the response body")
    run: int | None = Field(default=None, description="the run of a recurring object")
    nextDelayMs: float | None = Field(default=None, description="the wait chosen before the next attempt")
    delayReason: str | None = Field(default=None, description="why that wait")
    recovered: str | None = Field(default=None, description="why this attempt was made again")
    interrupted: bool | None = None


class ObjectOut(_Out):
    """One Task or TaskSet as the API shows it (another user's: only the summary fields, and `redacted`)."""

    id: str
    kind: str
    name: str
    owner: str
    state: str = Field(description="scheduled, running, completed, failed or cancelled")
    labels: dict[str, str] | None = None
    generation: int
    created: str | None
    updated: str | None
    due: str | None = Field(description="when the next call is due, while waiting")
    step: str | None = Field(
        default=None,
        description="task, or task:N / check:N / fallback for a TaskSet (step:NAME / check:NAME with named steps; a branch's step of a parallel step is step:NAME/BRANCH/STEP in the history)",
    )
    attempt: int | None
    calls: int
    inFlight: bool
    reason: str | None = None
    failedStep: str | None = None
    started: str | None
    finished: str | None
    pruned: bool | None = None
    last: Attempt | None = None
    spec: dict[str, Any] | None = None
    taskId: str | None = None
    taskSetId: str | None = None
    url: str | None = None
    attempts: list[Attempt] | None = Field(default=None, description="in single-object answers only")
    displayName: str | None = Field(default=None, description="the name a client of the original routes gave")
    manager: str | None = Field(default=None, description="folder:<path> or api:<user>: who keeps it in line with its spec")  # fmt: skip
    redacted: bool | None = Field(
        default=None, description="another user's object: only its summary is shown"
    )
    source: dict[str, Any] | None = Field(default=None, description="the file and line it was applied from")
    schedule: dict[str, Any] | None = Field(default=None, description="recurring objects: the schedule, with `description` in words")  # fmt: skip
    run: int | None = Field(default=None, description="recurring objects: the current (or next) run's number")
    suspended: bool | None = Field(default=None, description="paused: no call starts until it is resumed")
    pauseReason: str | None = Field(default=None, description="why it was paused, as whoever paused it said")
    trigger: str | None = Field(default=None, description="why the current run runs: now (run now), rerun, backfill; none for a run of its schedule")  # fmt: skip
    rerun: int | None = Field(default=None, description="how many failed runs were re-run (a re-run's Idempotency-Key ends -rerun<N>-<step>)")  # fmt: skip
    rerunOf: int | None = Field(
        default=None, description="recurring objects: the run the current run re-runs"
    )
    backfillLeft: int | None = Field(default=None, description="backfill runs still to go")
    rerunsWaiting: list[int] | None = Field(default=None, description="recurring objects: the failed runs still to be re-run, in turn (a bulk re-run)")  # fmt: skip
    pausedAll: dict[str, Any] | None = Field(default=None, description="single-object answers: everything is paused (an admin's kill switch): {reason, by, at}")  # fmt: skip
    skippedRuns: int | None = None
    nextRuns: list[str] | None = Field(default=None, description="the next five run times (UTC)")
    lastRun: dict[str, Any] | None = None
    runs: list[dict[str, Any]] | None = Field(default=None, description="the last 100 runs' summaries, in single-object answers")  # fmt: skip
    waitingFor: dict[str, Any] | None = Field(default=None, description="its due call waits for a place of a limit key: kind (concurrency or rate), key, limit, per (rate), since; told by a process that does not hold it (single-object answers), also calls: how many calls of the key wait in every process")  # fmt: skip
    waitingUntil: str | None = Field(default=None, description="a waitForCallback step whose call succeeded: when its wait for the callback ends (a heartbeat moves it)")  # fmt: skip
    branches: list[dict[str, Any]] | None = Field(default=None, description="at a parallel step: each branch's state (waiting, active, done, failed, cancelled), the index of its current step, its attempt and when it is due")  # fmt: skip
    outputs: dict[str, dict[str, Any]] | None = Field(default=None, description="a TaskSet's named steps: what each answered in its latest run (output, status, attempts, ok, run, generation; a parallel step: output is one item per branch, and branches how each ended), in single-object answers")  # fmt: skip
