"""The OpenAPI entries of the routes that act on runs (run now, re-run, backfill) and of the answer
to a creation (with its warnings): their models and paths, merged into the document by `openapi`.
Called by openapi.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lambdaop.app.view import ObjectOut


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActOut(_Out):
    action: str = Field(description="what was done: extra (a recurring object runs once now, its schedule unchanged), queued (after the run going on, overlap: wait), forward (a scheduled one-time object brought forward), generation (a finished one-time object runs again as its next generation), rerun, backfill")  # fmt: skip
    message: str = Field(description="the same in words")
    object: ObjectOut
    runs: list[str] | None = Field(default=None, description="backfill: the run times it makes, in order")
    copies: list[dict[str, str]] | None = Field(default=None, description="a backfill with parallelism: the copies that run it ({id, href})")  # fmt: skip


class RerunIn(_In):
    from_: str = Field(default="failed", alias="from", description="failed: from the step that failed, keeping the steps that succeeded; start: the whole run again")  # fmt: skip
    run: int | None = Field(default=None, description="a recurring object's run number (default: its last failed run)")  # fmt: skip


class BackfillIn(_In):
    start: str = Field(description="ISO 8601 with an offset: the first run time included")
    end: str = Field(description="ISO 8601 with an offset: run times before it are made")
    parallelism: int = Field(default=1, ge=1, le=50, description="backfill runs at once: 1 (the default) runs them one after another in the object itself; more deals them out to that many copies of it (named <name>-backfill-<start>-<i>, labelled lambdaop/backfill-of=<name>), each running its share one after another and ending completed; the object and its schedule are not touched")  # fmt: skip


class CreatedOut(ObjectOut):
    """A new object, and what is worth saying about what was sent."""

    warnings: list[str] | None = Field(default=None, description="taken, but worth saying: a one-time `at` already past (it runs now), a schedule `end` already past")  # fmt: skip


class PauseIn(_In):
    labelSelector: str | None = Field(default=None, description="kubectl syntax: team=billing,env!=dev")
    owner: str | None = Field(default=None, description="whose objects (default: the caller's; another user's: admins)")  # fmt: skip
    kind: str | None = Field(default=None, description="Task or TaskSet (default: both)")
    reason: str | None = Field(default=None, description="why: shown on each object (pauseReason) and by describe; required with all")  # fmt: skip
    all: bool | None = Field(default=None, description="admins: pause everything, everybody's (a kill switch): no call starts until POST /resume {all: true}; calls out finish")  # fmt: skip
    dryRun: bool | None = Field(default=None, description="list what would be paused, change nothing")
    cursor: str | None = Field(default=None, description="the `next` of the previous answer (at most 500 objects an answer)")  # fmt: skip


class ResumeIn(_In):
    labelSelector: str | None = None
    owner: str | None = None
    kind: str | None = None
    all: bool | None = Field(default=None, description="admins: end the pause of everything")
    skipMissed: bool | None = Field(default=None, description="a one-time object whose time passed while it was paused is cancelled (reason: skipped) instead of run at once")  # fmt: skip
    dryRun: bool | None = None
    cursor: str | None = None


class RerunManyIn(_In):
    labelSelector: str | None = Field(default=None, description="the objects' labels, kubectl syntax")
    owner: str | None = Field(default=None, description="whose objects (default: the caller's; another user's: admins)")  # fmt: skip
    kind: str | None = Field(default=None, description="Task or TaskSet (default: both)")
    since: str = Field(description="the failed runs that ended at or after: a time with an offset, or a duration back from now (24h)")  # fmt: skip
    until: str | None = Field(default=None, description="and before this time (or this long ago)")
    from_: str = Field(default="failed", alias="from", description="failed (from the failed step) or start")
    dryRun: bool | None = Field(default=None, description="list what would be re-run, re-run nothing")
    cursor: str | None = None


class BulkRow(_Out):
    id: str
    kind: str
    name: str
    owner: str
    message: str
    run: int | None = Field(default=None, description="POST /rerun: the run number (recurring objects)")
    finished: str | None = Field(default=None, description="POST /rerun: when that run ended")


class PausedAll(_Out):
    reason: str
    by: str
    at: str


class BulkOut(_Out):
    paused: list[BulkRow] | None = Field(default=None, description="POST /pause: each object paused (or, dry, that would be)")  # fmt: skip
    rerun: list[BulkRow] | None = Field(default=None, description="POST /rerun: each failed run of the range that is re-run (or, dry, would be), a row per run: a recurring object's runs one after another, oldest first")  # fmt: skip
    resumed: list[BulkRow] | None = Field(default=None, description="POST /resume: each object resumed (`skipped` when skipMissed cancelled it)")  # fmt: skip
    refused: list[BulkRow] | None = Field(default=None, description="objects that could not be changed, and why (a one-time object whose call is out)")  # fmt: skip
    next: str | None = Field(
        default=None, description="more matched: send the request again with this cursor"
    )
    dryRun: bool | None = None
    pausedAll: PausedAll | None = Field(default=None, description="with all: the pause of everything (null once ended)")  # fmt: skip


class RunObject(_Out):
    id: str
    kind: str
    name: str
    owner: str
    href: str = Field(description="the object, with its calls (attempts) and, for a recurring one, its runs")


class RunOut(_Out):
    id: str = Field(description="its place in the list (a `cursor`)")
    object: RunObject
    labels: dict[str, str] | None = None
    generation: int
    run: int | None = Field(default=None, description="a recurring object's run number")
    due: str | None = Field(default=None, description="its time on the schedule (recurring objects)")
    started: str | None = None
    finished: str
    result: str = Field(description="completed, failed or cancelled")
    reason: str | None = None
    failedStep: str | None = None
    trigger: str | None = Field(default=None, description="off the schedule: now, rerun, backfill")
    rerun: int | None = None
    rerunOf: int | None = None
    calls: int | None = Field(
        default=None, description="the calls this run made (retries and condition checks included)"
    )
    lastCall: dict[str, Any] | None = Field(default=None, description="the call that ended it: step, attempt, key, status, error, at")  # fmt: skip


class RunsOut(_Out):
    runs: list[RunOut]
    next: str | None = Field(description="cursor for the next page, or null")


MODELS: list[type[BaseModel]] = [
    RunsOut,
    RunOut,
    RunObject,
    ActOut,
    RerunIn,
    BackfillIn,
    CreatedOut,
    PauseIn,
    ResumeIn,
    BulkOut,
    BulkRow,
    PausedAll,
]


def paths(ref: Any, answers: Any, body: Any, ids: list[dict[str, Any]]) -> dict[str, Any]:
    """The paths of these routes, for both kinds."""
    out: dict[str, Any] = {}
    for base, kind in (("/tasks", "Task"), ("/tasksets", "TaskSet")):
        out[f"{base}/{{object_id}}/run"] = {"post": {"summary": f"run a {kind} now: a recurring one once (its next scheduled run unchanged; with its overlap policy while a run goes on), a scheduled one-time one brought forward, a finished one-time one again as its next generation", "parameters": ids, "responses": answers("ActOut", "200", 404, 409)}}  # fmt: skip
        out[f"{base}/{{object_id}}/rerun"] = {"post": {"summary": f"run a failed run of a {kind} again, from its failed step (keeping the steps that succeeded) or from the start; its calls carry the Idempotency-Key suffix -rerun<N>", "parameters": ids, "requestBody": {**body(ref("RerunIn")), "required": False}, "responses": answers("ActOut", "200", 404, 409, 422)}}  # fmt: skip
        out[f"{base}/{{object_id}}/backfill"] = {"post": {"summary": f"make the runs a recurring {kind}'s schedule would have made in [start, end), each recorded as a backfill run: one after another, or with parallelism at most that many at once", "parameters": ids, "requestBody": body(ref("BackfillIn")), "responses": answers("ActOut", "200", 404, 409, 422)}}  # fmt: skip
    params = [
        {"name": "state", "in": "query", "required": False, "schema": {"type": "string", "enum": ["failed", "completed", "cancelled"]}, "description": "how the run ended (default: any)"},
        {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}, "description": "ended at or after: a time with an offset, or a duration back from now (24h)"},
        {"name": "labelSelector", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the objects' labels, kubectl syntax: team=billing,env!=dev"},
        {"name": "kind", "in": "query", "required": False, "schema": {"type": "string", "enum": ["Task", "TaskSet"]}},
        {"name": "prefix", "in": "query", "required": False, "schema": {"type": "string"}, "description": "only the runs of the caller's objects whose name starts with this (still newest first; the cursor stays a run's `id`)"},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the `next` of the previous page"},
    ]  # fmt: skip
    out["/runs"] = {"get": {"summary": "the caller's ended runs across objects, newest first: each names its object, number, times, result, reason and last call; kept 30 days; a page reads a bounded range and may hold fewer than limit with a `next`", "parameters": params, "responses": answers("RunsOut", "200", 422)}}  # fmt: skip
    out["/rerun"] = {"post": {"summary": "re-run the failed runs of the caller's objects (matching a label selector and kind) that ended in [since, until): every one of a recurring object, one after another, oldest first; a one-time object's latest; from its failed step or the start; dryRun lists them", "requestBody": body(ref("RerunManyIn")), "responses": answers("BulkOut", "200", 403, 422)}}  # fmt: skip
    out["/pause"] = {
        "get": {
            "summary": "whether everything is paused (the kill switch): {pausedAll: {reason, by, at} or null}",
            "responses": answers("BulkOut"),
        },  # fmt: skip
        "post": {
            "summary": "pause the caller's objects matching a label selector and kind (an admin: another owner's, or everything with all and a reason); a recurring object stops after the run going on, a one-time one keeps its time aside",
            "requestBody": body(ref("PauseIn")),
            "responses": answers("BulkOut", "200", 403, 422),
        },  # fmt: skip
    }
    out["/resume"] = {"post": {"summary": "resume what /pause paused: recurring objects from their next run time, one-time ones at their time (at once when it passed, or skipped with skipMissed)", "requestBody": body(ref("ResumeIn")), "responses": answers("BulkOut", "200", 403, 422)}}  # fmt: skip
    return out
