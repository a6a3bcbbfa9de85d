"""Lists and single objects: `GET /tasks`, `/tasksets`, the original retrieve routes, the dashboard,
and suspend/resume. Thin: read the parameters, ask the service, present. Called by the app factory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import falcon

from lambdaop.api import seed
from lambdaop.api.auth import user_of
from lambdaop.api.bodies import check_cursor, limit_value, query_params, read_fields
from lambdaop.app.operate import Operations
from lambdaop.app.service import Service
from lambdaop.app.view import present, present_run_record
from lambdaop.core import labels
from lambdaop.core.clock import Clock, iso, to_utc
from lambdaop.core.errors import NotFound, Problem, SpecInvalid
from lambdaop.core.labels import Selector
from lambdaop.core.metrics import Metrics
from lambdaop.engine.record import StoredObject
from lambdaop.spec import Kind

LIST_PARAMS = (*seed.STATE, "limit", "cursor", "name", "page", "labelSelector", "prefix")
NAME_CURSOR = "name:"  # the `next` of a name search: the last name of its page
MAX_PAGED = 10_000  # `page=N` reads the N-1 pages before it: no further than this many objects


class Objects:
    """Lists (`GET /tasks`, the original retrieve routes) and one object (`GET /tasks/{id}`).

    On the original routes (`original`) lists are also fetched with POST (a form's
    `taskInstance`), and a finished TaskSet is reported as `success`, as there.
    """

    def __init__(
        self,
        service: Service,
        kind: Kind,
        key: str,
        original: bool = False,
        paused: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.service, self.kind, self.key, self.original = service, kind, key, original
        self.paused = paused  # the pause of everything, shown on one object's answer

    def _present(self, record: StoredObject, viewer: str, history: Any = None) -> dict[str, Any]:
        waiting = self.service.waiting_for(record, look=history is not None)  # (a list: this process's)
        out = present(record, history, self.service.live_state(record.id), viewer, waiting)
        if self._success and out["state"] == "completed":
            out["state"] = "success"
        return out

    @property
    def _success(self) -> bool:
        """A finished TaskSet reads `success` on the original routes, as the original clients expect."""
        return self.original and self.kind is Kind.TASKSET

    def _counts(self, owner: str | None) -> dict[str, int]:
        counts = self.service.counts(owner, self.kind)
        if self._success and "completed" in counts:  # the same word as the rows of the same answer
            counts = {("success" if k == "completed" else k): v for k, v in counts.items()}
        return counts

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._list(req, resp, query_params(req, LIST_PARAMS))

    def _list(self, req: falcon.Request, resp: falcon.Response, params: dict[str, Any]) -> None:
        unknown = [k for k in params if k not in LIST_PARAMS]
        if unknown:
            raise SpecInvalid("invalid request", [Problem("unknown field", field=k) for k in unknown])
        state = seed.state_filter(params)
        limit = limit_value(params.get("limit"))
        prefix = params.get("prefix") or None
        if prefix is not None and not isinstance(prefix, str):
            raise SpecInvalid("invalid request", [Problem("expected the start of a name", field="prefix")])
        cursor = params.get("cursor")
        check_cursor(cursor)
        before: str | None = cursor.strip() if isinstance(cursor, str) and cursor else None
        if before is not None and before.startswith(NAME_CURSOR) != (prefix is not None):
            raise SpecInvalid("invalid request", [Problem("expected the `next` value of a previous page of the same list", field="cursor")])  # fmt: skip
        if before is not None and prefix is not None:
            before = cursor[len(NAME_CURSOR) :]  # type: ignore[index]  # the name itself, spaces and all
        selector = label_selector(params.get("labelSelector"))
        page = page_number(params.get("page"), limit)
        if page is not None and cursor:
            raise SpecInvalid("invalid request", [Problem("give `page` or `cursor`, not both", field="page")])
        user = user_of(req)
        owner: str | None = user.name
        if state == "all":
            owner, state = None, None
        if prefix is not None and owner is None:
            raise SpecInvalid("invalid request", [Problem("a name search lists your own objects; leave out state=all", field="prefix")])  # fmt: skip
        name = params.get("name")
        following: str | None = None
        if isinstance(name, str) and name:  # one object by name (the caller's)
            found = self.service.find(user.name, self.kind, name)
            records = [found] if found is not None else []
        else:
            records, following = self.service.page(self.kind, owner, state, before, limit, selector, prefix)
            for _ in range((page or 1) - 1):  # page N: the pages before it, each a bounded range read
                if following is None:
                    records = []
                    break
                records, following = self.service.page(self.kind, owner, state, following, limit, selector, prefix)  # fmt: skip
            if following is not None and prefix is not None:
                following = NAME_CURSOR + following
        out: dict[str, Any] = {
            self.key: [self._present(r, user.name) for r in records],
            "next": following,
            "counts": self._counts(owner),
        }
        if page is not None:
            out["page"] = page
        resp.media = out

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = user_of(req)
        record = self.service.get(object_id, user.name)
        if record.kind != self.kind:
            raise NotFound(f"no {self.kind.value} {object_id}")
        resp.media = self._present(record, user.name, self.service.history(record))
        if self.paused is not None:
            resp.media["pausedAll"] = self.paused()


def label_selector(value: Any) -> Selector | None:
    """The `labelSelector` of a list (kubectl's syntax), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpecInvalid("invalid request", [Problem("expected one selector such as team=billing,env!=dev", field="labelSelector")])  # fmt: skip
    try:
        return labels.parse(value)
    except labels.SelectorError as exc:
        raise SpecInvalid("invalid request", [Problem(str(exc), field="labelSelector")]) from None


def page_number(raw: Any, limit: int) -> int | None:
    """`page=N` (1-based), as the original clients page; at most MAX_PAGED objects deep."""
    if raw is None or raw == "":
        return None
    try:
        page = int(str(raw).strip())
    except ValueError:
        raise SpecInvalid("invalid request", [Problem(f"expected a page number (1, 2, …), got {str(raw)[:40]!r}", field="page")]) from None  # fmt: skip
    if page < 1:
        raise SpecInvalid("invalid request", [Problem(f"pages are numbered from 1, got {page}", field="page")])  # fmt: skip
    if (page - 1) * limit >= MAX_PAGED:
        raise SpecInvalid("invalid request", [Problem(f"page {page} of {limit} starts past the newest {MAX_PAGED:,} objects; page further with `cursor` (each answer's `next`)", field="page")])  # fmt: skip
    return page


class OriginalObjects(Objects):
    """The original retrieve routes: lists also by POST (a form's `taskInstance`), finished sets as `success`."""

    def __init__(self, service: Service, kind: Kind, key: str) -> None:
        super().__init__(service, kind, key, original=True)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = read_fields(req)
        self._list(req, resp, {**query_params(req, LIST_PARAMS), **fields})


RUNS_SHOWN = 120  # a recurring object's runs drawn in the next hour (every 30 s at most)
UPCOMING_SHOWN = 500
UPCOMING_READ = 200  # objects read from the due index for the next hour
# the widest window of that read: a quiet half hour before a busy one is not read at once
UPCOMING_WINDOW = dt.timedelta(seconds=60)
ATTENTION_SHOWN = 20  # failed runs, late calls and suspended objects the dashboard lists first
LATE_AFTER = dt.timedelta(minutes=1)  # a call this far past its due time, not yet made, is late


class Dashboard:
    """`GET /dashboard`: the caller's counts, what comes due in the next hour, and calls per minute."""

    def __init__(
        self,
        service: Service,
        metrics: Metrics,
        clock: Clock,
        paused: Callable[[], dict[str, Any] | None] | None = None,
        operations: Operations | None = None,
    ) -> None:
        self.service, self.metrics, self.clock, self.paused = service, metrics, clock, paused
        self.operations = operations

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = user_of(req)
        now = to_utc(self.clock.now())
        horizon = now + dt.timedelta(hours=1)
        # what is due within the hour: a bounded read of the due index; a recurring object there
        # is drawn at each of its runs in the hour
        found, complete = self.service.upcoming(
            user.name, now, horizon, UPCOMING_READ, widest=UPCOMING_WINDOW
        )
        upcoming = []
        for coming in found:
            for at in coming.runs(horizon, RUNS_SHOWN):
                upcoming.append({"id": coming.id, "kind": coming.kind, "name": coming.name, "due": iso(at),
                                 "recurring": coming.recurring})  # fmt: skip
        upcoming.sort(key=lambda u: u["due"] or "")
        resp.media = {
            "now": iso(now),
            "counts": {kind.value: self.service.counts(user.name, kind) for kind in Kind},
            "upcoming": upcoming[:UPCOMING_SHOWN],
            "upcomingMore": max(0, len(upcoming) - UPCOMING_SHOWN),
            "upcomingComplete": complete,  # false: more is due within the hour than one read shows
            "callsPerMinute": self.metrics.last_hour(user.name),
            "callsSince": iso(self.metrics.started),
            "pausedAll": self.paused() if self.paused is not None else None,
            "attention": self._attention(user.name, now),
        }

    def _attention(self, owner: str, now: dt.datetime) -> dict[str, Any]:
        """What needs the person on call first, each a bounded read: runs failed in the last 24 h
        (the runs list), calls more than a minute late (the due index), and suspended objects (the
        paused index)."""
        out: dict[str, Any] = {"failed": [], "failedMore": False, "late": [], "lateMore": False}
        if self.operations is not None:
            failed, more = self.operations.runs(
                owner, "failed", now - dt.timedelta(hours=24), None, ATTENTION_SHOWN
            )
            out["failed"], out["failedMore"] = [present_run_record(r) for r in failed], more is not None
        # the most recent first: when many calls are late, the crowd of them is the latest
        late, complete = self.service.upcoming(owner, now - dt.timedelta(hours=24), now - LATE_AFTER, ATTENTION_SHOWN, latest_first=True)  # fmt: skip
        out["late"] = [{"id": r.id, "kind": r.kind, "name": r.name, "due": iso(r.due)} for r in late]
        out["lateMore"] = not complete or len(late) >= ATTENTION_SHOWN
        paused, out["pausedMore"] = self.service.paused(owner, now, ATTENTION_SHOWN)
        out["paused"] = [p.shown() for p in paused]
        return out


class Pause:
    """`POST /tasks/{id}/suspend|resume` (and for TaskSets): pause an object, with an optional
    `reason` (a recurring one after the run going on; a one-time one keeps its time aside), or
    resume it (`skipMissed`: a one-time one whose time passed meanwhile is cancelled, not run)."""

    def __init__(self, service: Service, kind: Kind, operations: Operations | None = None) -> None:
        self.service, self.kind = service, kind
        self.operations = operations or Operations(service)

    def on_post_suspend(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        fields = _only(read_fields(req), ("reason",))
        reason = fields.get("reason") or None
        if reason is not None and not isinstance(reason, str):
            raise SpecInvalid("invalid request", [Problem("expected a few words saying why", field="reason")])
        user = user_of(req)
        self.service.get(object_id, user.name, self.kind)
        done = self.operations.pause(object_id, user.name, reason)
        resp.media = {"suspended": True, "object": present(done.record, viewer=user.name), "afterThisRun": done.message != "paused"}  # fmt: skip

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        fields = _only(read_fields(req), ("skipMissed",))
        skip = fields.get("skipMissed", False)
        if not isinstance(skip, bool):
            raise SpecInvalid("invalid request", [Problem("expected true or false", field="skipMissed")])
        user = user_of(req)
        self.service.get(object_id, user.name, self.kind)
        done = self.operations.unpause(object_id, user.name, skip)
        resp.media = {"suspended": False, "object": present(done.record, viewer=user.name), "message": done.message}  # fmt: skip


def _only(fields: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = [k for k in fields if k not in allowed]
    if unknown:
        raise SpecInvalid("invalid request", [Problem(f"unknown field (this route takes {', '.join(allowed)})", field=k) for k in unknown])  # fmt: skip
    return fields
