"""The original routes' field names, turned into specs and arguments.

Earlier implementations of the original specification each named fields their
own way; this module accepts all of them (see README, "Seed-compatible
fields"), from JSON or HTML forms (where every value is a string). Bare numbers
for delays are milliseconds. Unknown fields are refused, naming the field.
Called by api.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import zoneinfo
from typing import Any

from pydantic import ValidationError

from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.loop.outbound import Policy, Refused
from lambdaop.spec import (
    MAX_DURATION,
    Task,
    TaskSet,
    parse_duration,
    parse_time,
    targets,
    validation_problems,
)

URL = ("url", "URL", "taskURL", "taskUrl")
NAME = ("name", "taskName", "title")
AT = ("at", "scheduledTime", "dateTime")
DATE, TIME, ZONE = ("datefield",), ("timefield",), ("timezone",)
DELAY = ("delay", "timeInMs", "delayInMS", "timeDelay")
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
PARAMS = ("params", "parameters", "queryParams")
_ROW = re.compile(r"^(checkbox|key|value)(\d+)$")
CHECK_URL = ("conditionCheckUrl", "conditionCheckURL", "conditionCheckTaskUrl", "conditionCheckTaskURL")
FALLBACK_URL = ("fallbackTaskUrl", "fallbackTaskURL", "fallbackUrl")
INITIAL_DELAY = ("initialDelay", "initialDelayInMS")
CHECK_DELAY = ("timeDelayForConditionCheck", "conditionCheckDelayInMS", "conditionCheckTaskDelay")
CHECK_RETRIES = ("conditionCheckRetries",)
CHECK_RETRY_DELAY = ("timeDelayBetweenRetries", "timeDelayForRetries", "timeDelayBetweenRetriesInMS")
# lambdaop's own extras on the seed routes (what the web page's forms send)
INVOKE_EXTRAS = ("method", "headers", "body", "timeout", "successWhen", "query")
LABELS = ("labels",)

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


class Fields:
    """A request's fields: takes each by any of its names, and reports what was left unused."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.used: set[str] = set()
        self.problems: list[Problem] = []

    def take(self, names: tuple[str, ...]) -> tuple[str | None, Any]:
        present = [n for n in names if n in self.data and self.data[n] not in (None, "")]
        self.used.update(n for n in names if n in self.data)
        if len(present) > 1 and len({json.dumps(self.data[n], default=str) for n in present}) > 1:
            self.problems.append(
                Problem(f"{' and '.join(present)} mean the same thing; send one", field=present[0])
            )
        if not present:
            return None, None
        return present[0], self.data[present[0]]

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(message, field=field))

    def params(self) -> dict[str, str] | None:
        """The Lambda's query parameters: a JSON object, or the form's rows (checkboxN=on, keyN, valueN)."""
        name, value = self.take(PARAMS)
        query: dict[str, str] = {}
        if name is not None:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int | float | bool) for v in value.values()
            ):
                self.problem(name, "expected an object of parameter names and plain values")
                return None
            query.update(
                {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
            )
        rows: dict[int, dict[str, Any]] = {}
        for field_name, field_value in self.data.items():
            match = _ROW.match(field_name)
            if match:
                self.used.add(field_name)
                rows.setdefault(int(match.group(2)), {})[match.group(1)] = field_value
        for number in sorted(rows):
            row = rows[number]
            if str(row.get("checkbox", "")).strip().lower() not in ("on", "true", "1", "yes", "checked"):
                continue  # an unticked row does not count
            key = str(row.get("key") or "").strip()
            if not key:
                self.problem(f"key{number}", "a ticked row needs a parameter name")
                continue
            query[key] = str(row.get("value") if row.get("value") is not None else "")
        return query or None

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                self.problems.append(Problem("unknown field", field=name))
        if self.problems:
            raise SpecInvalid("invalid request", self.problems)

    # ----- typed takes

    def integer(self, names: tuple[str, ...], minimum: int = 0) -> int | None:
        name, value = self.take(names)
        if name is None:
            return None
        try:
            number = (
                int(str(value).strip()) if not isinstance(value, int) or isinstance(value, bool) else value
            )
        except ValueError:
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        if isinstance(value, bool):
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        if number < minimum:
            self.problem(name, f"must be at least {minimum}, got {number}")
            return None
        return number

    def millis(self, names: tuple[str, ...]) -> str | None:
        """A delay: a bare number is milliseconds; a string with a unit (30s, PT30S) is taken as is."""
        name, value = self.take(names)
        if name is None:
            return None
        if isinstance(value, bool):
            self.problem(name, f"expected milliseconds, got {value!r}")
            return None
        text = str(value).strip()
        try:
            ms = float(text)
        except ValueError:
            return text  # a duration with a unit; the spec model checks it
        if not math.isfinite(ms):
            self.problem(name, f"expected milliseconds, got {value!r}")
            return None
        if ms < 0:
            self.problem(name, f"must not be negative, got {value}")
            return None
        if ms > MAX_DURATION.total_seconds() * 1000:
            self.problem(name, f"must be at most {int(MAX_DURATION.total_seconds() * 1000)} ms (ten years)")
            return None
        return f"{int(ms)}ms" if ms == int(ms) else f"{ms}ms"

    def when(self, now: dt.datetime, zone: str, required: bool = False) -> dict[str, Any]:
        """`at` (absolute), a date/time pair, or `after` (a delay in ms)."""
        out: dict[str, Any] = {}
        at_name, at = self.take(AT)
        date_name, date = self.take(DATE)
        time_name, time_ = self.take(TIME)
        zone_name, zone_value = self.take(ZONE)
        delay = self.millis(DELAY)
        given = [n for n in (at_name, date_name or time_name, delay and "delay") if n]
        if len(given) > 1:
            self.problem(given[1], f"give one of {given[0]} and {given[1]}")
            return out
        if at_name is not None:
            if isinstance(at, bool) or not isinstance(at, int | float | str):
                self.problem(at_name, "expected an ISO 8601 time with an offset, or epoch milliseconds")
                return out
            epoch = _epoch_ms(at)
            if epoch is False:
                self.problem(at_name, "epoch milliseconds must fall between 1970 and 2999")
                return out
            out["at"] = epoch if epoch is not None else at
        elif date_name or time_name:
            if not (date_name and time_name):
                self.problem(
                    "datefield" if not date_name else "timefield", "datefield and timefield go together"
                )
                return out
            tz_name = str(zone_value) if zone_name else zone
            tz = time_zone(tz_name)
            if tz is None:
                self.problem(
                    zone_name or "timezone",
                    f"unknown time zone {tz_name[:80]!r}; use an IANA name such as Europe/Berlin",
                )
                return out
            try:
                local = dt.datetime.fromisoformat(f"{str(date).strip()}T{str(time_).strip()}")
            except ValueError:
                self.problem("datefield", f"expected YYYY-MM-DD and HH:MM, got {date!r} and {time_!r}")
                return out
            out["at"] = local.replace(tzinfo=tz).isoformat()
        elif delay is not None:
            out["after"] = delay
        elif required:
            self.problem(
                "at", "a new time is needed: at, scheduledTime, dateTime, datefield+timefield, or delay"
            )
        return out


_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$")


def time_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone of that name, or None (never an OSError for a strange name)."""
    if not isinstance(name, str) or len(name) > 64 or not _ZONE.match(name):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _epoch_ms(value: float | str) -> str | None | bool:
    """Epoch milliseconds (a number, or digits as a form sends them) as ISO 8601; None if not a number.

    False when the number is outside 1970-2999.
    """
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"\d{1,16}", text):
            return None
        value = int(text)
    if not math.isfinite(value) or not 0 <= value < 32503680000000:
        return False
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat()


def _name(fields: Fields, kind: str, object_id: str) -> tuple[str, str]:
    """(object name, display name): on the original routes a name is a label (any text, used
    again or not); the object's name is made from it and the object's id, so it is unique."""
    _, given = fields.take(NAME)
    display = str(given).strip() if given not in (None, "") else ""
    if not display:
        return f"{kind.lower()}-{object_id}", ""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", display).strip("-._")[:60].strip("-._") or kind.lower()
    return f"{slug}-{object_id}", display[:200]


def _invoke(fields: Fields, url: Any, query: dict[str, str] | None) -> dict[str, Any]:
    invoke: dict[str, Any] = {"url": url}
    for extra in INVOKE_EXTRAS:
        name, value = fields.take((extra,))
        if name is not None:
            invoke[extra] = value
    if query:
        own = invoke.get("query")
        invoke["query"] = {**query, **(own if isinstance(own, dict) else {})}
    return invoke


def _validate(
    model: type[Task] | type[TaskSet],
    data: dict[str, Any],
    fields: Fields,
    where: dict[str, str],
    policy: Policy | None = None,
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
    if obj is not None and policy is not None:
        for path, invoke in targets(obj):
            try:
                policy.check_url(invoke.url)
            except Refused as exc:
                problems.append(Problem(str(exc), field=_seed_field(path, where)))
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
    policy: Policy | None = None,
) -> tuple[Task, str]:
    """POST /scheduler/schedule -> a Task spec, and the display name the client gave."""
    f = Fields(data)
    url_name, url = f.take(URL)
    if url_name is None:
        f.problem("url", "the Lambda URL is required (url, URL, taskURL or taskUrl)")
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
        "spec.invoke.url": url_name or "url",
        "spec.invoke.query": "params",
        "spec.at": "at",
        "spec.after": "delay",
        "metadata.name": "name",
    }
    return _validate(Task, {"kind": "Task", "metadata": meta, "spec": spec}, f, where, policy), display


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
    policy: Policy | None = None,
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
        tasks = [_with_query(t, query) for t in tasks]
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
    if fb_name is not None:
        spec["fallback"] = {"invoke": fb_url, "on": ["check"]}
    _, labels = f.take(LABELS)
    name, display = _name(f, "TaskSet", object_id)
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    where = {
        "spec.tasks": tasks_name or "tasks",
        "spec.conditionCheck.invoke": check_name or "conditionCheckUrl",
        "spec.fallback.invoke": fb_name or "fallbackUrl",
        "spec.initialDelay": "initialDelay",
        "metadata.name": "name",
    }
    return _validate(TaskSet, {"kind": "TaskSet", "metadata": meta, "spec": spec}, f, where, policy), display


def _with_query(task: Any, query: dict[str, str]) -> Any:
    """A task of the set with the request's parameters (its own, if any, win)."""
    if isinstance(task, str):
        return {"url": task, "query": query}
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
