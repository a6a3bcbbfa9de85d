"""The OpenAPI 3.1 document of the REST API, built from the pydantic models.

Spec kinds (Task, TaskSet) and the answers are pydantic models; the original
routes' request bodies are built from seed's tables of accepted field names
(every URL field also takes a Lambda function ARN). Called by api (`GET /openapi.json`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from lambdaop import __version__
from lambdaop.api import fields, openapi_runs, seed
from lambdaop.app.view import ObjectOut
from lambdaop.spec import Task, TaskSet


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskList(_Out):
    tasks: list[ObjectOut]
    next: str | None = Field(description="cursor for the next page, or null")
    counts: dict[str, int] = Field(description="objects per state (maintained counters)")


class TaskSetList(_Out):
    taskSets: list[ObjectOut]
    next: str | None
    counts: dict[str, int]


class ModifyOut(_Out):
    modified: bool
    task: ObjectOut | None = None
    taskSet: ObjectOut | None = None
    reason: str | None = None


class CancelOut(_Out):
    cancelled: bool
    task: ObjectOut | None = None
    taskSet: ObjectOut | None = None
    reason: str | None = None


class ApplyResult(_Out):
    action: str = Field(description="created, unchanged, rescheduled, restarted, refused or invalid")
    kind: str | None
    name: str | None
    id: str | None = None
    state: str | None = None
    message: str | None = None


class ApplyOut(_Out):
    results: list[ApplyResult]


class DeleteOut(_Out):
    deleted: bool
    object: ObjectOut


class ErrorDetail(_Out):
    message: str
    field: str | None = None
    line: int | None = None
    column: int | None = None
    document: int | None = None


class ErrorOut(_Out):
    error: str
    message: str
    details: list[ErrorDetail]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="the user's name (or send it as `username`)")
    username: str | None = None
    password: str


class LoginOut(_Out):
    token: str = Field(description="a web session token (s.…), not an API token")
    name: str
    expiresInHours: float


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    admin: bool = False


class UserOut(_Out):
    name: str
    admin: bool
    created: str | None = None
    tokens: int


class UserList(_Out):
    users: list[UserOut]


class TokenOut(_Out):
    name: str
    token: str = Field(description="shown once; only a hash is kept")


class TokenInfo(_Out):
    prefix: str | None
    created: str | None
    lastUsed: str | None
    expires: str | None


class TokenList(_Out):
    tokens: list[TokenInfo]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expiresIn: str | int | None = Field(default=None, description="a duration (30d) or milliseconds")


class PauseOut(_Out):
    suspended: bool
    object: ObjectOut
    afterThisRun: bool | None = Field(
        default=None, description="a run is going on: the pause starts when it ends"
    )


class DashboardOut(_Out):
    now: str
    counts: dict[str, dict[str, int]] = Field(description="per kind, objects per state")
    upcoming: list[dict[str, Any]] = Field(
        description="the caller's calls due in the next hour, soonest first (id, kind, name, due, recurring): one per run of a recurring object"
    )
    upcomingMore: int = Field(default=0, description="calls due in the hour beyond those listed")
    callsPerMinute: list[dict[str, int]] = Field(
        description="60 minutes, oldest first: minute (epoch s), ok, failed (counted by this server since callsSince)"
    )
    callsSince: str | None = Field(
        default=None, description="when this server started counting calls (they are kept in memory)"
    )
    pausedAll: dict[str, Any] | None = Field(default=None, description="everything is paused: {reason, by, at}")  # fmt: skip
    attention: dict[str, Any] | None = Field(default=None, description="what needs attention first: failed (the caller's runs failed in the last 24 h, newest first, as GET /runs shows them; failedMore: there are more), late (calls due more than a minute ago not yet made: id, kind, name, due; lateMore), paused (suspended objects, those paused most recently first: id, kind, name, reason; pausedMore)")  # fmt: skip


class Me(_Out):
    name: str
    admin: bool


class Health(_Out):
    ok: bool


MODELS: list[type[BaseModel]] = [
    Task, TaskSet, ObjectOut, TaskList, TaskSetList, ModifyOut, CancelOut, ApplyOut, DeleteOut,
    ErrorOut, LoginIn, LoginOut, Me, Health, PauseOut, DashboardOut, UserIn, UserOut, UserList, TokenOut, TokenInfo, TokenList, TokenIn,
]  # fmt: skip


def _fields(groups: dict[tuple[str, ...], dict[str, Any]], rows: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for names, schema in groups.items():
        for n in names:
            props.setdefault(
                n, {**schema, "description": f"{schema.get('description', '')} (also: {', '.join(names)})"}
            )
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if rows:  # the original form's parameter rows: checkbox0=on&key0=region&value0=eu, numbers may skip
        out["patternProperties"] = {
            r"^checkbox[0-9]+$": {"type": "string", "description": "on: the row counts"},
            r"^key[0-9]+$": {"type": "string", "description": "a query parameter's name"},
            r"^value[0-9]+$": {"type": "string", "description": "its value"},
        }
    return out


_MS = {"type": ["integer", "string"], "description": "milliseconds, or a duration with a unit (30s)"}
_PARAMS = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "the Lambda's query parameters",
}
_STR = {"type": "string"}
_ARN = "a Lambda function URL (or any URL), or a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]), called through the Invoke API"  # fmt: skip
_LAMBDA: dict[tuple[str, ...], dict[str, Any]] = {
    ("payload",): {
        "description": "the event of a Lambda function given by ARN (JSON; default: body, else {})"
    },
    ("qualifier",): {"type": "string", "description": "with an ARN: a version or alias"},
    ("invocationType",): {
        "type": "string",
        "enum": ["RequestResponse", "Event", "DryRun"],
        "description": "with an ARN (default RequestResponse)",
    },  # fmt: skip
    ("region",): {"type": "string", "description": "with an ARN: the AWS region (default: the ARN's)"},
    ("roleArn",): {"type": "string", "description": "an IAM role to assume for the call"},
    ("externalId",): {
        "type": ["string", "object"],
        "description": "roleArn: the ExternalId (or {fromEnv: NAME})",
    },
    ("sessionName",): {"type": "string", "description": "roleArn: the role session's name"},
}
_INT = {"type": ["integer", "string"], "minimum": 0}
_WHEN: dict[tuple[str, ...], dict[str, Any]] = {
    fields.AT: {
        "type": ["string", "integer"],
        "description": "ISO 8601 time (without an offset it is read in `timezone`, else the server's --timezone), a JavaScript Date string (Date.toString(), toUTCString()), or epoch ms",
    },  # fmt: skip
    fields.DATE: {"type": "string", "description": "YYYY-MM-DD, with timefield"},
    fields.TIME: {"type": "string", "description": "HH:MM, with datefield"},
    fields.ZONE: {
        "type": "string",
        "description": "IANA zone for datefield/timefield and for a time without an offset",
    },  # fmt: skip
    fields.DELAY: {**_MS, "description": "run after this many milliseconds"},
}
SCHEDULE_IN = _fields(
    {
        seed.URL: {"type": "string", "format": "uri", "description": _ARN},
        seed.NAME: _STR,
        **_WHEN,
        seed.RETRIES: _INT,
        seed.RETRY_DELAY: _MS,
        ("method",): {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
        ("headers",): {"type": "object"},
        ("query",): {"type": "object"},
        ("body",): {},
        ("timeout",): {"type": "string"},
        ("successWhen",): {"type": "object"},
        ("auth",): {
            "type": "string",
            "enum": ["aws_iam"],
            "description": "with a URL: sign the call with AWS SigV4 (a Lambda Function URL whose auth type is AWS_IAM)",
        },
        **_LAMBDA,
        seed.LABELS: {"type": "object"},
        fields.PARAMS: _PARAMS,
    },
    rows=True,
)
ORCHESTRATE_IN = _fields(
    {
        seed.TASKS: {
            "type": ["array", "string"],
            "description": "URLs, Lambda function ARNs or invoke objects; a string is comma-separated",
        },
        seed.NAME: _STR,
        **_WHEN,
        seed.INITIAL_DELAY: _MS,
        seed.CHECK_URL: {
            "type": ["string", "object"],
            "description": _ARN + "; or an invoke object (url, method, successWhen, …)",
        },  # fmt: skip
        seed.CHECK_DELAY: _MS,
        seed.CHECK_RETRIES: _INT,
        seed.CHECK_RETRY_DELAY: _MS,
        seed.FALLBACK_URL: {
            "type": ["string", "object"],
            "description": "runs when the condition check gives up, as in the original (a URL, a Lambda function ARN or an invoke object); fallbackOn changes when",
        },
        seed.FALLBACK_ON: {
            "type": ["array", "string"],
            "items": {"type": "string", "enum": ["check", "task"]},
            "description": "when the fallback runs: check (the condition check gave up; the default), task (a task failed), or both; a string is comma-separated",
        },
        seed.LABELS: {"type": "object"},
        fields.PARAMS: {**_PARAMS, "description": "query parameters for every task of the set"},
        **{
            names: {
                "type": "string",
                "format": "uri",
                "description": "the tasks in order: firstTaskURL, secondTaskURL, ... (URLs or Lambda function ARNs)",
            }
            for names in seed.NTH_TASK
        },
    },
    rows=True,
)
MODIFY_IN = _fields({seed.TASK_ID: _STR, **_WHEN})
LIST_IN = _fields(
    {
        seed.STATE: {
            "type": "string",
            "description": "scheduled, running, completed (success), failed, cancelled or All",
        },
        ("limit",): _INT,
        ("cursor",): _STR,
        ("page",): {**_INT, "minimum": 1, "description": "a page number (1-based), instead of cursor"},
        ("name",): _STR,
    }
)
CANCEL_IN = _fields({seed.TASK_ID: _STR})


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _body(schema: dict[str, Any], form: bool = True) -> dict[str, Any]:
    content = _json(schema)
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
        content["multipart/form-data"] = {"schema": schema}
    return {"required": True, "content": content}


def _answers(ok: str, status: str = "200", *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {status: {"description": "success", "content": _json(_ref(ok))}}
    for code in (401, *errors):
        out[str(code)] = {"description": _ERRORS[code], "content": _json(_ref("ErrorOut"))}
    return out


_ERRORS = {
    400: "malformed body",
    401: "no or bad token",
    403: "only an admin may",
    429: "too many failed sign-ins (see Retry-After)",
    404: "unknown object, or another user's",
    409: "not in a state that allows it",
    413: "body over 1 MiB",
    415: "wrong content type",
    422: "invalid fields",
    503: "store unreachable",
}
_STATE_PARAMS = [
    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": "scheduled, running, completed (success), failed, cancelled or All"}
    for n in seed.STATE
] + [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the `next` of the previous page"},
    {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}, "description": "a page number (1-based, as the original clients page), instead of cursor; within the newest 10,000"},
    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}, "description": "only the caller's object of this name"},
    {"name": "labelSelector", "in": "query", "required": False, "schema": {"type": "string"}, "description": "only objects whose labels match, kubectl syntax: team=billing,env!=dev (env, !env, env in (a,b), env notin (a))"},
    {"name": "prefix", "in": "query", "required": False, "schema": {"type": "string"}, "description": "only the caller's objects whose name starts with this, by name; the next page's cursor is a name"},
]  # fmt: skip
_ID = [{"name": "object_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]


CALLBACK_IN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"enum": ["success", "failure", "heartbeat"]},
        "output": {"description": "any JSON: the step's output (steps.NAME.output), at most 256 KiB"},
        "error": {"type": "string", "description": "why, with failure (the step's reason)"},
    },
}
CALLBACK_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["accepted", "extended"]},
        "state": {"type": "string"},
        "waitingUntil": {"type": ["string", "null"], "description": "the end of the wait after a heartbeat"},
    },
}
_CALLBACK_ERRORS = {
    403: "a wrong, forged, used or superseded token",
    409: "the object is being written or held by another process: send it again shortly",
    410: "the wait had timed out: the callback is recorded and ignored",
    413: "body over 1 MiB, or output over 256 KiB",
    422: "a body that is not {status, output, error}",
}


def openapi_document() -> dict[str, Any]:
    _, top = models_json_schema(
        [(m, "serialization") for m in MODELS + openapi_runs.MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas = dict(top.get("$defs", {}))
    schemas.update(
        ScheduleIn=SCHEDULE_IN,
        OrchestrateIn=ORCHESTRATE_IN,
        ModifyIn=MODIFY_IN,
        CancelIn=CANCEL_IN,
        ListIn=LIST_IN,
        CallbackIn=CALLBACK_IN,
        CallbackOut=CALLBACK_OUT,
    )
    yaml_body = {
        "required": True,
        "content": {
            "application/yaml": {
                "schema": {"type": "string", "description": "one or many Task/TaskSet documents"}
            },
            "application/json": {"schema": {"oneOf": [_ref("Task"), _ref("TaskSet"), {"type": "array"}]}},
        },
    }
    listing = {"parameters": _STATE_PARAMS}
    paths: dict[str, Any] = {
        "/": {"get": {"summary": "the web page (static files under /ui/)", "security": [], "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/healthz": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "alive", "content": _json(_ref("Health"))}}}},
        "/readyz": {"get": {"summary": "readiness (store reachable)", "security": [], "responses": {"200": {"description": "ready", "content": _json(_ref("Health"))}, "503": {"description": _ERRORS[503], "content": _json(_ref("ErrorOut"))}}}},
        "/callbacks/{token}": {"post": {"summary": "the single-use URL a waitForCallback step hands its target (${{ callback.url }}): success or failure ends the wait, heartbeat moves its end; no API token (the signed token is the proof)", "security": [], "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}], "requestBody": _body(_ref("CallbackIn")), "responses": {"200": {"description": "taken", "content": _json(_ref("CallbackOut"))}, **{str(c): {"description": d, "content": _json(_ref("ErrorOut"))} for c, d in _CALLBACK_ERRORS.items()}}}},
        "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        "/docs": {"get": {"summary": "this document as a page to read (Redoc, served from the package)", "security": [], "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (a token unless serve runs with --metrics-public)", "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"description": _ERRORS[401], "content": _json(_ref("ErrorOut"))}}}},
        "/dashboard": {"get": {"summary": "the caller's counts, what comes due in the next hour, calls per minute over the last hour", "responses": _answers("DashboardOut")}},
        "/auth/login": {"post": {"summary": "sign in with name (or username) and password; answers a web session token", "security": [], "requestBody": _body(_ref("LoginIn")), "responses": _answers("LoginOut", "200", 400, 415, 422, 429)}},
        "/auth/me": {"get": {"summary": "the signed-in user", "responses": _answers("Me")}},
        "/auth/logout": {"post": {"summary": "end this web session", "responses": _answers("Health")}},
        "/users": {"get": {"summary": "every user (admin)", "responses": _answers("UserList", "200", 403)},
                   "post": {"summary": "create a user (admin); answers its first API token", "requestBody": _body(_ref("UserIn")), "responses": _answers("TokenOut", "201", 400, 403, 409, 415, 422)}},
        "/users/{name}": {"delete": {"summary": "remove a user (admin): its tokens and sessions stop at once", "parameters": _NAME, "responses": _answers("Health", "200", 403, 404, 409)}},
        "/users/{name}/tokens": {"get": {"summary": "the user's API tokens (admin, or the user)", "parameters": _NAME, "responses": _answers("TokenList", "200", 403, 404)},
                                 "post": {"summary": "another API token (admin, or the user)", "parameters": _NAME, "requestBody": {**_body(_ref("TokenIn")), "required": False}, "responses": _answers("TokenOut", "201", 403, 404, 422)}},
        "/users/{name}/tokens/{prefix}": {"delete": {"summary": "revoke the tokens starting with this prefix (admin, or the user)", "parameters": [*_NAME, {"name": "prefix", "in": "path", "required": True, "schema": {"type": "string", "minLength": 6}}], "responses": _answers("Health", "200", 403, 404, 422)}},
        "/scheduler/schedule": {"post": {"summary": "create a Task", "requestBody": _body(_ref("ScheduleIn")), "responses": _answers("CreatedOut", "201", 400, 409, 413, 415, 422)}},
        "/scheduler/retrieve-tasks": {"get": {"summary": "list Tasks by state; All lists every user's", **listing, "responses": _answers("TaskList", "200", 422)},
                                      "post": {"summary": "the same list, the state in a form field (taskInstance)", "requestBody": {**_body(_ref("ListIn")), "required": False}, "responses": _answers("TaskList", "200", 400, 415, 422)}},
        "/scheduler/retrieve-tasks/{object_id}": {"get": {"summary": "one Task with its attempt history", "parameters": _ID, "responses": _answers("ObjectOut", "200", 404)}},
        "/scheduler/modify": {"post": {"summary": "new time for a scheduled Task", "requestBody": _body(_ref("ModifyIn")), "responses": _answers("ModifyOut", "200", 400, 404, 409, 415, 422)}},
        "/scheduler/cancel": {"post": {"summary": "cancel a scheduled Task", "requestBody": _body(_ref("CancelIn")), "responses": _answers("CancelOut", "200", 400, 404, 409, 415, 422)}},
        "/orchestrator/orchestrate": {"post": {"summary": "create a TaskSet", "requestBody": _body(_ref("OrchestrateIn")), "responses": _answers("CreatedOut", "201", 400, 409, 413, 415, 422)}},
        "/orchestrator/retrieve-tasks": {"get": {"summary": "list TaskSets by state (a finished one is `success`)", **listing, "responses": _answers("TaskSetList", "200", 422)},
                                         "post": {"summary": "the same list, the state in a form field (taskInstance)", "requestBody": {**_body(_ref("ListIn")), "required": False}, "responses": _answers("TaskSetList", "200", 400, 415, 422)}},
        "/orchestrator/retrieve-tasks/{object_id}": {"get": {"summary": "one TaskSet with its steps' history", "parameters": _ID, "responses": _answers("ObjectOut", "200", 404)}},
        "/orchestrator/modify": {"post": {"summary": "new start time for a scheduled TaskSet", "requestBody": _body(_ref("ModifyIn")), "responses": _answers("ModifyOut", "200", 400, 404, 409, 415, 422)}},
        "/orchestrator/cancel": {"post": {"summary": "cancel a scheduled TaskSet", "requestBody": _body(_ref("CancelIn")), "responses": _answers("CancelOut", "200", 400, 404, 409, 415, 422)}},
        "/specs": {"post": {"summary": "apply Task/TaskSet specs (create or update by owner, kind and name); dryRun=true only validates", "parameters": [{"name": "dryRun", "in": "query", "required": False, "schema": {"type": "boolean"}}, {"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}, "description": "take over objects the specs folder manages (else 409)"}], "requestBody": yaml_body, "responses": _answers("ApplyOut", "200", 400, 409, 413, 415, 422)}},
        "/specs/{kind}/{name}": {"delete": {"summary": "remove a spec: cancel it if still scheduled, mark it pruned", "parameters": [{"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}}, {"name": "kind", "in": "path", "required": True, "schema": {"type": "string", "enum": ["Task", "TaskSet"]}}, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}], "responses": _answers("DeleteOut", "200", 404, 409)}},
        "/tasks": {"get": {"summary": "list Tasks (like retrieve-tasks)", **listing, "responses": _answers("TaskList", "200", 422)}},
        "/tasks/{object_id}": {"get": {"summary": "one Task with its attempt history", "parameters": _ID, "responses": _answers("ObjectOut", "200", 404)}},
        "/tasksets": {"get": {"summary": "list TaskSets", **listing, "responses": _answers("TaskSetList", "200", 422)}},
        "/tasksets/{object_id}": {"get": {"summary": "one TaskSet with its steps' history", "parameters": _ID, "responses": _answers("ObjectOut", "200", 404)}},
        "/tasks/{object_id}/suspend": {"post": {"summary": "pause a Task, with an optional reason: a recurring one after the run going on, a one-time one keeps its time aside", "parameters": _ID, "requestBody": {**_body({"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": False}), "required": False}, "responses": _answers("PauseOut", "200", 404, 409, 422)}},
        "/tasks/{object_id}/resume": {"post": {"summary": "resume a paused Task: a recurring one from its next run time, a one-time one at its time (skipMissed: cancel it when its time passed)", "parameters": _ID, "requestBody": {**_body({"type": "object", "properties": {"skipMissed": {"type": "boolean"}}, "additionalProperties": False}), "required": False}, "responses": _answers("PauseOut", "200", 404, 409, 422)}},
        "/tasksets/{object_id}/suspend": {"post": {"summary": "pause a TaskSet, with an optional reason (as for Tasks)", "parameters": _ID, "requestBody": {**_body({"type": "object", "properties": {"reason": {"type": "string"}}, "additionalProperties": False}), "required": False}, "responses": _answers("PauseOut", "200", 404, 409, 422)}},
        "/tasksets/{object_id}/resume": {"post": {"summary": "resume a paused TaskSet (as for Tasks)", "parameters": _ID, "requestBody": {**_body({"type": "object", "properties": {"skipMissed": {"type": "boolean"}}, "additionalProperties": False}), "required": False}, "responses": _answers("PauseOut", "200", 404, 409, 422)}},
    }  # fmt: skip
    paths.update(openapi_runs.paths(_ref, _answers, _body, _ID))
    return {
        "openapi": "3.1.0",
        "info": {"title": "lambdaop", "version": __version__, "description": "Scheduler and orchestrator for Lambda functions and HTTP endpoints."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }  # fmt: skip
