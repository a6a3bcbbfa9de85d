"""Runs: the list across objects (`GET /runs`), and acting on them: `POST /tasks/{id}/run`,
`/rerun`, `/backfill` (and for TaskSets).

Thin: read the parameters or the body, ask the app's operations, answer the
object with what was done in words. Called by the app factory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import falcon

from lambdaop.api.auth import user_of
from lambdaop.api.bodies import check_cursor, limit_value, query_params, read_fields
from lambdaop.api.objects import label_selector
from lambdaop.app.operate import Done, Operations
from lambdaop.app.view import present, present_run_record
from lambdaop.core.clock import Clock, iso, to_utc
from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.spec import Kind, kind_named, parse_duration, parse_time

RERUN_FROM = ("failed", "start")
RUNS_PARAMS = ("state", "since", "labelSelector", "kind", "prefix", "limit", "cursor")
RESULTS = {"failed": "failed", "completed": "completed", "success": "completed", "cancelled": "cancelled"}


def _fields(req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    fields = read_fields(req)
    unknown = [k for k in fields if k not in allowed]
    if unknown:
        raise SpecInvalid("invalid request", [Problem(f"unknown field (this route takes {', '.join(allowed) or 'no fields'})", field=k) for k in unknown])  # fmt: skip
    return fields


def time_field(fields: dict[str, Any], name: str, required: bool = True) -> dt.datetime | None:
    """An ISO 8601 time with an offset, named in the error when it is not one."""
    raw = fields.get(name)
    if raw is None or raw == "":
        if required:
            raise SpecInvalid("invalid request", [Problem("required: an ISO 8601 time with an offset", field=name)])  # fmt: skip
        return None
    try:
        value = parse_time(raw)
    except (ValueError, TypeError) as exc:
        raise SpecInvalid("invalid request", [Problem(str(exc), field=name)]) from None
    if not isinstance(value, dt.datetime):
        raise SpecInvalid(
            "invalid request", [Problem("expected an ISO 8601 time with an offset", field=name)]
        )
    return value


def answer(done: Done, viewer: str, **extra: Any) -> dict[str, Any]:
    return {
        "action": done.what,
        "message": done.message,
        "object": present(done.record, viewer=viewer),
        **extra,
    }


class Act:
    """`POST /{kind}/{id}/run|rerun|backfill`."""

    def __init__(self, operations: Operations, kind: Kind) -> None:
        self.operations, self.kind = operations, kind

    def on_post_run(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        _fields(req, ())
        user = user_of(req)
        resp.media = answer(self.operations.run_now(object_id, user.name, kind=self.kind), user.name)

    def on_post_rerun(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        fields = _fields(req, ("from", "run"))
        start = fields.get("from", "failed")
        if start not in RERUN_FROM:
            raise SpecInvalid("invalid request", [Problem(f"expected `failed` (the failed step, keeping the steps that succeeded) or `start`, got {str(start)[:40]!r}", field="from")])  # fmt: skip
        run = run_number(fields.get("run"))
        user = user_of(req)
        done = self.operations.rerun(object_id, user.name, start == "failed", run, kind=self.kind)
        resp.media = answer(done, user.name)

    def on_post_backfill(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        fields = _fields(req, ("start", "end", "parallelism"))
        start, end = time_field(fields, "start"), time_field(fields, "end")
        assert start is not None and end is not None
        parallelism = whole_number(fields.get("parallelism", 1), "parallelism")
        user = user_of(req)
        done, times = self.operations.backfill(object_id, user.name, start, end, kind=self.kind, parallelism=parallelism)  # fmt: skip
        made = {"copies": [{"id": i, "href": f"/{self.kind.value.lower()}s/{i}"} for i in done.made]} if done.made else {}  # fmt: skip
        resp.media = answer(done, user.name, runs=[iso(t) for t in times], **made)


def whole_number(raw: Any, field: str, what: str = "a whole number") -> int:
    """A JSON number or a string of digits, named in the error when it is neither."""
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError
        return int(str(raw).strip())
    except ValueError:
        raise SpecInvalid("invalid request", [Problem(f"expected {what}, got {str(raw)[:40]!r}", field=field)]) from None  # fmt: skip


def run_number(raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    value = whole_number(raw, "run", "a run number (1, 2, …)")
    if value < 1:
        raise SpecInvalid("invalid request", [Problem("runs are numbered from 1", field="run")])
    return value


class RunsList:
    """`GET /runs?state=failed&since=24h&labelSelector=team=billing&prefix=web-`: the caller's ended
    runs across objects, newest first, paged by `next`."""

    def __init__(self, operations: Operations, clock: Clock) -> None:
        self.operations, self.clock = operations, clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req, RUNS_PARAMS)
        state = params.get("state") or None
        if state is not None and (not isinstance(state, str) or state.lower() not in RESULTS):
            raise SpecInvalid("invalid request", [Problem("expected failed, completed or cancelled (leave it out for all)", field="state")])  # fmt: skip
        raw_kind = params.get("kind") or None
        kind = kind_named(raw_kind) if isinstance(raw_kind, str) else None
        if raw_kind is not None and kind is None:
            raise SpecInvalid("invalid request", [Problem("expected Task or TaskSet (leave it out for both)", field="kind")])  # fmt: skip
        prefix = params.get("prefix") or None
        if prefix is not None and not isinstance(prefix, str):
            raise SpecInvalid("invalid request", [Problem("expected the start of a name", field="prefix")])
        cursor = params.get("cursor") or None
        check_cursor(cursor)
        user = user_of(req)
        found, following = self.operations.runs(
            user.name,
            RESULTS[state.lower()] if state else None,
            time_or_ago(params.get("since"), to_utc(self.clock.now()), "since"),
            cursor,
            limit_value(params.get("limit")),
            label_selector(params.get("labelSelector")),
            kind,
            prefix,
        )
        resp.media = {"runs": [present_run_record(r) for r in found], "next": following}


def time_or_ago(raw: Any, now: dt.datetime, name: str) -> dt.datetime | None:
    """A time with an offset, or a duration back from now (24h); None when not given."""
    if raw is None or raw == "":
        return None
    try:
        return now - parse_duration(raw)
    except (ValueError, TypeError):
        pass
    try:
        return to_utc(parse_time(raw))
    except (ValueError, TypeError) as exc:
        why = str(exc) if "offset" in str(exc) and "got" not in str(exc) else "expected a time with an offset (2026-11-28T09:00:00Z) or a duration back from now (24h)"  # fmt: skip
        raise SpecInvalid("invalid request", [Problem(why, field=name)]) from None
