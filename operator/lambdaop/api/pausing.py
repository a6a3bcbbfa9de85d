"""Many objects at once: `POST /pause` and `POST /resume` (by label selector, owner and kind, or
everything: an admin's kill switch), `GET /pause` (is everything paused, why, by whom), and
`POST /rerun` (the failed runs of a time range, with a dry run).

Thin: read the body, ask the app's bulk operations, answer what was done object by
object. Called by the app factory.
"""

from __future__ import annotations

from typing import Any

import falcon

from lambdaop.api.auth import user_of
from lambdaop.api.bodies import read_fields
from lambdaop.api.objects import label_selector
from lambdaop.api.runs import RERUN_FROM, time_or_ago
from lambdaop.app.bulk import Bulk, Selection
from lambdaop.core.clock import Clock, to_utc
from lambdaop.core.errors import Forbidden, Problem, SpecInvalid
from lambdaop.spec import Kind, kind_named

PAUSE_FIELDS = ("labelSelector", "owner", "kind", "reason", "all", "dryRun", "cursor")
RESUME_FIELDS = ("labelSelector", "owner", "kind", "all", "dryRun", "cursor", "skipMissed")
RERUN_FIELDS = ("labelSelector", "owner", "kind", "since", "until", "from", "dryRun", "cursor")


def _fields(req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    fields = read_fields(req)
    unknown = [k for k in fields if k not in allowed]
    if unknown:
        raise SpecInvalid("invalid request", [Problem(f"unknown field (this route takes {', '.join(allowed)})", field=k) for k in unknown])  # fmt: skip
    return fields


def flag(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", ""):
        return value.lower() in ("true", "1", "on")
    raise SpecInvalid("invalid request", [Problem("expected true or false", field=name)])


def selection(req: falcon.Request, fields: dict[str, Any]) -> Selection:
    user = user_of(req)
    owner = fields.get("owner") or user.name
    if not isinstance(owner, str):
        raise SpecInvalid("invalid request", [Problem("expected a user name", field="owner")])
    if owner != user.name and not user.admin:
        raise Forbidden("only an admin pauses or resumes another user's objects")
    raw = fields.get("kind")
    kinds: tuple[Kind, ...] = (Kind.TASK, Kind.TASKSET)
    if raw:
        kind = kind_named(raw) if isinstance(raw, str) else None
        if kind is None:
            raise SpecInvalid("invalid request", [Problem("expected Task or TaskSet (leave it out for both)", field="kind")])  # fmt: skip
        kinds = (Kind(kind),)
    return Selection(owner, kinds, label_selector(fields.get("labelSelector")))


class Pausing:
    def __init__(self, bulk: Bulk) -> None:
        self.bulk = bulk

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user_of(req)
        resp.media = {"pausedAll": self.bulk.paused_all()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = _fields(req, PAUSE_FIELDS)
        reason = fields.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise SpecInvalid("invalid request", [Problem("expected a few words saying why", field="reason")])
        if flag(fields, "all"):
            user = _admin(req, fields, "pauses everything")
            resp.media = {"pausedAll": self.bulk.pause_all(user, reason or "")}
            return
        which, dry = selection(req, fields), flag(fields, "dryRun")
        resp.media = self.bulk.pause(which, reason, dry, _cursor(fields)).as_dict("paused", dry)

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = _fields(req, RESUME_FIELDS)
        if flag(fields, "all"):
            if flag(fields, "skipMissed"):  # the pause of everything holds calls back; it suspends no object
                raise SpecInvalid("invalid request", [Problem("the pause of everything holds due calls back and they leave when it ends; skipMissed is for objects paused by selector (leave it out, or cancel those calls first)", field="skipMissed")])  # fmt: skip
            self.bulk.resume_all(_admin(req, fields, "ends the pause of everything"))
            resp.media = {"pausedAll": None}
            return
        which, dry = selection(req, fields), flag(fields, "dryRun")
        answer = self.bulk.resume(which, flag(fields, "skipMissed"), dry, _cursor(fields))
        resp.media = answer.as_dict("resumed", dry)


def _admin(req: falcon.Request, fields: dict[str, Any], what: str) -> str:
    user = user_of(req)
    if not user.admin:
        raise Forbidden(f"only an admin {what}")
    mixed = [k for k in ("labelSelector", "owner", "kind", "cursor") if fields.get(k)]
    if mixed:
        raise SpecInvalid("invalid request", [Problem("`all` is about everything: leave this out", field=k) for k in mixed])  # fmt: skip
    return user.name


def _cursor(fields: dict[str, Any]) -> str | None:
    cursor = fields.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise SpecInvalid("invalid request", [Problem("expected the `next` of a previous answer", field="cursor")])  # fmt: skip
    return cursor or None


class Rerunning:
    """`POST /rerun`: re-run every failed run of the selected objects that ended in [since, until)."""

    def __init__(self, bulk: Bulk, clock: Clock) -> None:
        self.bulk, self.clock = bulk, clock

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = _fields(req, RERUN_FIELDS)
        now = to_utc(self.clock.now())
        since = time_or_ago(fields.get("since"), now, "since")
        if since is None:
            raise SpecInvalid("invalid request", [Problem("required: from when (a time with an offset, or a duration back from now: 24h)", field="since")])  # fmt: skip
        until = time_or_ago(fields.get("until"), now, "until")
        if until is not None and until <= since:
            raise SpecInvalid("invalid request", [Problem("must be after since", field="until")])
        start = fields.get("from", "failed")
        if start not in RERUN_FROM:
            raise SpecInvalid("invalid request", [Problem("expected `failed` (from the failed step) or `start`", field="from")])  # fmt: skip
        which, dry = selection(req, fields), flag(fields, "dryRun")
        answer = self.bulk.rerun(which, since, until, start == "failed", dry, _cursor(fields))
        resp.media = answer.as_dict("rerun", dry)
