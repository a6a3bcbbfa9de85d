"""The original routes' field names, turned into specs and arguments.

Earlier implementations of the original specification each named fields their
own way; this module accepts all of them (see README, "Seed-compatible
fields"), from JSON or HTML forms (where every value is a string). Bare numbers
for delays are milliseconds. Unknown fields are refused, naming the field.
Every URL field also takes a Lambda function ARN (arn:aws:lambda:…): the call then
goes through the Invoke API, with the request's `body` (or its parameters, as a
JSON object) as the event. Called by api.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from lambdaop.api.fields import Fields
from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.spec import (
    AnySpec,
    Task,
    TaskSet,
    parse_duration,
    parse_time,
    validation_problems,
)

Targets = Callable[[AnySpec], list[Problem]]  # the problems of a spec's call targets (the outbound policy)

URL = ("url", "URL", "taskURL", "taskUrl")
NAME = ("name", "taskName", "title")
RETRIES = ("retries", "retryCount", "retriesCount")
RETRY_DELAY = (
    "retryDelay",
    "timeDelayBetweenRetries",
    "timeDelayForRetries",
    "retryAfter",
    "retryDelayInMS",
    "timeBetweenRetries",
)
TASK_ID = ("taskId", "task_id", "id", "Taskid", "taskSetId")
STATE = ("taskState", "taskInstance", "state", "status")
TASKS = ("tasks", "taskUrls", "tasksURL")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
NTH_TASK = tuple((f"{o}TaskURL", f"{o}TaskUrl") for o in ORDINALS)  # firstTaskURL, secondTaskURL, ...
CHECK_URL = ("conditionCheckUrl", "conditionCheckURL", "conditionCheckTaskUrl", "conditionCheckTaskURL")
FALLBACK_URL = ("fallbackTaskUrl", "fallbackTaskURL", "fallbackUrl")
INITIAL_DELAY = ("initialDelay", "initialDelayInMS")
CHECK_DELAY = ("timeDelayForConditionCheck", "conditionCheckDelayInMS", "conditionCheckTaskDelay")
CHECK_RETRIES = ("conditionCheckRetries",)
CHECK_RETRY_DELAY = ("timeDelayBetweenRetries", "timeDelayForRetries", "timeDelayBetweenRetriesInMS")
# lambdaop's own extras on the seed routes (what the web page's forms send)
INVOKE_EXTRAS = ("method", "headers", "body", "timeout", "successWhen", "query", "auth")
LAMBDA_EXTRAS = ("payload", "qualifier", "invocationType", "region", "roleArn", "externalId", "sessionName")
LABELS = ("labels",)
# lambdaop's own: when the fallback runs (default: when the check gave up, as in the original)
FALLBACK_ON = ("fallbackOn",)

STATES = {
    "scheduled": "scheduled",
    "running": "running",
    "completed": "completed",
    "success": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "all": "all",
}


def _name(fields: Fields, kind: str, object_id: str) -> tuple[str, str]:
    """(object name, display name): on the original routes a name is a label (any text, used
    again or not); the object's name is made from it and the object's id, so it is unique."""
    _, given = fields.take(NAME)
    display = str(given).strip() if given not in (None, "") else ""
    if not display:
        return f"{kind.lower()}-{object_id}", ""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", display).strip("-._")[:60].strip("-._") or kind.lower()
    return f"{slug}-{object_id}", display[:200]


def is_arn(value: Any) -> bool:
    """Whether a URL field holds a Lambda function ARN (the call then goes through the Invoke API)."""
    return isinstance(value, str) and value.strip().startswith("arn:")


def _invoke(fields: Fields, url: Any, query: dict[str, str] | None) -> dict[str, Any]:
    invoke: dict[str, Any] = {"lambda": url.strip()} if is_arn(url) else {"url": url}
    for extra in INVOKE_EXTRAS + LAMBDA_EXTRAS:
        name, value = fields.take((extra,))
        if name is not None:
            invoke[extra] = value
    if is_arn(url):
        if "body" in invoke and "payload" not in invoke:  # the original clients' body is the event
            invoke["payload"] = invoke.pop("body")
        return _with_query(invoke, query, fields) if query else invoke
    if query:
        own = invoke.get("query")
        invoke["query"] = {**query, **(own if isinstance(own, dict) else {})}
    return invoke


def _validate(
    model: type[Task] | type[TaskSet],
    data: dict[str, Any],
    fields: Fields,
    where: dict[str, str],
    refused: Targets | None = None,
) -> Any:
    """Every problem at once: the request's own (unknown fields, bad numbers), the spec's and the targets'."""
    with contextlib.suppress(SpecInvalid):
        fields.finish()
    problems = list(fields.problems)
    obj = None
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        seen = {p.field for p in problems}
        for p in validation_problems(exc):
            p.field = _seed_field(p.field, where)
            if p.field not in seen:
                problems.append(p)
    if obj is not None and refused is not None:
        for p in refused(obj):
            problems.append(Problem(p.message, field=_seed_field(p.field, where)))
    if problems:
        raise SpecInvalid("invalid request", problems)
    return obj


def _seed_field(field: str | None, where: dict[str, str]) -> str | None:
    """Name the request's own field in errors (spec.invoke.url -> the URL field the client sent)."""
    if field is None:
        return None
    for prefix, name in sorted(where.items(), key=lambda kv: -len(kv[0])):
        if field == prefix or field.startswith((prefix + ".", prefix + "[")):
            return name
    return field


def schedule(
    data: dict[str, Any],
    now: dt.datetime,
    zone: str,
    object_id: str,
    refused: Targets | None = None,
) -> tuple[Task, str]:
    """POST /scheduler/schedule -> a Task spec, and the display name the client gave."""
    f = Fields(data)
    url_name, url = f.take(URL)
    if url_name is None:
        f.problem("url", "the Lambda URL or function ARN is required (url, URL, taskURL or taskUrl)")
    spec: dict[str, Any] = {"invoke": _invoke(f, url, f.params()), **f.when(now, zone)}
    retries = f.integer(RETRIES)
    if retries is not None:
        spec["retries"] = retries
    retry_delay = f.millis(RETRY_DELAY)
    if retry_delay is not None:
        spec["retryDelay"] = retry_delay
    _, labels = f.take(LABELS)
    name, display = _name(f, "Task", object_id)
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    where = {
        "spec.invoke": url_name or "url",
        "spec.invoke.url": url_name or "url",
        "spec.invoke.lambda": url_name or "url",
        "spec.invoke.query": "params",
        "spec.at": "at",
        "spec.after": "delay",
        "metadata.name": "name",
    }
    return _validate(Task, {"kind": "Task", "metadata": meta, "spec": spec}, f, where, refused), display


def _url_list(f: Fields) -> tuple[str | None, list[Any]]:
    name, value = f.take(TASKS)
    nth = [(n, v) for names in NTH_TASK for n, v in [f.take(names)] if n is not None]
    if nth:
        if name is not None:
            f.problem(nth[0][0], f"give the tasks once: {name} or firstTaskURL, secondTaskURL, ...")
        return nth[0][0], [v for _, v in nth]
    if name is None:
        return None, []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                f.problem(name, "expected a JSON list of URLs")
                return name, []
        else:
            value = [u.strip() for u in text.split(",") if u.strip()]
    if not isinstance(value, list):
        f.problem(name, "expected a list of URLs (or a comma-separated string)")
        return name, []
    return name, value


def orchestrate(
    data: dict[str, Any],
    now: dt.datetime,
    zone: str,
    object_id: str,
    refused: Targets | None = None,
) -> tuple[TaskSet, str]:
    """POST /orchestrator/orchestrate -> a TaskSet spec, and the display name the client gave.

    As the original system did, the fallback runs only when the condition check gives up;
    a failing task ends the set `failed` without it.
    """
    f = Fields(data)
    tasks_name, tasks = _url_list(f)
    if tasks_name is None:
        f.problem("tasks", "the tasks to run are required (tasks, taskUrls, tasksURL or firstTaskURL, secondTaskURL, ...)")  # fmt: skip
    query = f.params()
    if query:
        tasks = [_with_query(t, query, f) for t in tasks]
    spec: dict[str, Any] = {"tasks": tasks}
    when = f.when(now, zone)
    if "after" in when:
        spec["initialDelay"] = when["after"]
    if "at" in when:
        spec["at"] = when["at"]
    initial = f.millis(INITIAL_DELAY)
    if initial is not None:
        if "initialDelay" in spec or "at" in spec:
            f.problem("initialDelay", "give one start: initialDelay, a delay or a time")
        spec["initialDelay"] = initial
    check_name, check_url = f.take(CHECK_URL)
    check_delay = f.millis(CHECK_DELAY)
    check_retries = f.integer(CHECK_RETRIES)
    check_retry_delay = f.millis(CHECK_RETRY_DELAY)
    if check_name is not None:
        check: dict[str, Any] = {"invoke": check_url}
        if check_delay is not None:
            check["delay"] = check_delay
        if check_retries is not None:
            check["retries"] = check_retries
        if check_retry_delay is not None:
            check["retryDelay"] = check_retry_delay
        spec["conditionCheck"] = check
    elif any(v is not None for v in (check_delay, check_retries, check_retry_delay)):
        f.problem("conditionCheckUrl", "condition-check settings were given without a condition check URL")
    fb_name, fb_url = f.take(FALLBACK_URL)
    on_name, on = f.take(FALLBACK_ON)
    if isinstance(on, str):
        on = [w.strip() for w in on.split(",") if w.strip()]
    if fb_name is not None:
        spec["fallback"] = {"invoke": fb_url, "on": on if on_name is not None else ["check"]}
    elif on_name is not None:
        f.problem(on_name, "fallbackOn was given without a fallback URL")
    _, labels = f.take(LABELS)
    name, display = _name(f, "TaskSet", object_id)
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    where = {
        "spec.tasks": tasks_name or "tasks",
        "spec.conditionCheck.invoke": check_name or "conditionCheckUrl",
        "spec.fallback.invoke": fb_name or "fallbackUrl",
        "spec.fallback.on": on_name or "fallbackOn",
        "spec.initialDelay": "initialDelay",
        "metadata.name": "name",
    }
    return _validate(TaskSet, {"kind": "TaskSet", "metadata": meta, "spec": spec}, f, where, refused), display


def _with_query(task: Any, query: dict[str, str], fields: Fields) -> Any:
    """A task of the set with the request's parameters (its own, if any, win). A Lambda
    function (an ARN) gets them in its event: the payload, a JSON object."""
    if isinstance(task, str):
        return {"lambda": task.strip(), "payload": query} if is_arn(task) else {"url": task, "query": query}
    if isinstance(task, dict) and ("lambda" in task or is_arn(task.get("url"))):
        own = task.get("payload")
        if own is not None and not isinstance(own, dict):
            fields.problem("params", "a Lambda function takes its parameters in its payload, which is not a JSON object here")  # fmt: skip
            return task
        return {**task, "payload": {**query, **(own or {})}}
    if isinstance(task, dict):
        own = task.get("query")
        return {**task, "query": {**query, **(own if isinstance(own, dict) else {})}}
    return task


def object_id(data: dict[str, Any]) -> tuple[Fields, str]:
    f = Fields(data)
    name, value = f.take(TASK_ID)
    if name is None:
        f.problem("taskId", "the id is required (taskId, task_id, id or Taskid)")
        f.finish()
    return f, str(value).strip()


def modify(data: dict[str, Any], now: dt.datetime, zone: str) -> tuple[str, dt.datetime]:
    """POST /scheduler/modify -> (task id, new time)."""
    f, oid = object_id(data)
    when = f.when(now, zone, required=True)
    f.finish()
    if "after" in when:
        try:
            return oid, now + parse_duration(when["after"])
        except ValueError as exc:
            raise SpecInvalid("invalid request", [Problem(str(exc), field="delay")]) from None
    try:
        at = parse_time(when["at"])
    except ValueError as exc:
        raise SpecInvalid("invalid request", [Problem(str(exc), field="at")]) from None
    if not isinstance(at, dt.datetime):
        raise SpecInvalid(
            "invalid request", [Problem("expected an ISO 8601 time with an offset", field="at")]
        )
    return oid, at


def cancel(data: dict[str, Any]) -> str:
    f, oid = object_id(data)
    f.finish()
    return oid


def state_filter(params: dict[str, Any]) -> str | None:
    """The list's state: None = all of the caller's; 'all' = everybody's (as the original asks)."""
    f = Fields(params)
    name, value = f.take(STATE)
    if name is None:
        return None
    state = STATES.get(str(value).strip().lower())
    if state is None:
        raise SpecInvalid(
            "invalid request",
            [
                Problem(
                    "expected scheduled, running, completed (or success), failed, cancelled or All",
                    field=name,
                )
            ],
        )
    return state
