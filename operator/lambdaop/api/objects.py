"""Lists and single objects: `GET /tasks`, `/tasksets`, the original retrieve routes, the dashboard,
and suspend/resume. Thin: read the parameters, ask the service, present. Called by the app factory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import falcon

from lambdaop.api import seed
from lambdaop.api.auth import user_of
from lambdaop.api.bodies import check_cursor, limit_value, query_params, read_fields
from lambdaop.app.service import Service
from lambdaop.app.view import present
from lambdaop.core.clock import Clock, iso, to_utc
from lambdaop.core.errors import NotFound, Problem, SpecInvalid
from lambdaop.core.metrics import Metrics
from lambdaop.engine.record import StoredObject
from lambdaop.spec import Kind

LIST_PARAMS = (*seed.STATE, "limit", "cursor", "name")


class Objects:
    """Lists (`GET /tasks`, the original retrieve routes) and one object (`GET /tasks/{id}`).

    On the original routes (`original`) lists are also fetched with POST (a form's
    `taskInstance`), and a finished TaskSet is reported as `success`, as there.
    """

    def __init__(self, service: Service, kind: Kind, key: str, original: bool = False) -> None:
        self.service, self.kind, self.key, self.original = service, kind, key, original

    def _present(self, record: StoredObject, viewer: str, history: Any = None) -> dict[str, Any]:
        out = present(record, history, self.service.live_state(record.id), viewer)
        if self.original and self.kind is Kind.TASKSET and out["state"] == "completed":
            out["state"] = "success"
        return out

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._list(req, resp, query_params(req, LIST_PARAMS))

    def _list(self, req: falcon.Request, resp: falcon.Response, params: dict[str, Any]) -> None:
        unknown = [k for k in params if k not in LIST_PARAMS]
        if unknown:
            raise SpecInvalid("invalid request", [Problem("unknown field", field=k) for k in unknown])
        state = seed.state_filter(params)
        limit = limit_value(params.get("limit"))
        cursor = params.get("cursor")
        check_cursor(cursor)
        user = user_of(req)
        owner: str | None = user.name
        if state == "all":
            owner, state = None, None
        name = params.get("name")
        if isinstance(name, str) and name:  # one object by name (the caller's)
            found = self.service.find(user.name, self.kind, name)
            records = [found] if found is not None else []
        else:
            records = self.service.page(self.kind, owner, state, cursor.strip() if cursor else None, limit)
        resp.media = {
            self.key: [self._present(r, user.name) for r in records],
            "next": records[-1].id if len(records) == limit else None,
            "counts": self.service.counts(owner, self.kind),
        }

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = user_of(req)
        record = self.service.get(object_id, user.name)
        if record.kind != self.kind:
            raise NotFound(f"no {self.kind.value} {object_id}")
        resp.media = self._present(record, user.name, self.service.history(record))


class OriginalObjects(Objects):
    """The original retrieve routes: lists also by POST (a form's `taskInstance`), finished sets as `success`."""

    def __init__(self, service: Service, kind: Kind, key: str) -> None:
        super().__init__(service, kind, key, original=True)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = read_fields(req)
        self._list(req, resp, {**query_params(req, LIST_PARAMS), **fields})


class Dashboard:
    """`GET /dashboard`: the caller's counts, what comes due in the next hour, and calls per minute."""

    def __init__(self, service: Service, metrics: Metrics, clock: Clock) -> None:
        self.service, self.metrics, self.clock = service, metrics, clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = user_of(req)
        now = to_utc(self.clock.now())
        horizon = now + dt.timedelta(hours=1)
        upcoming = []
        for kind in Kind:
            for record in self.service.page(kind, user.name, "scheduled", None, 500):
                if record.due is not None and record.due <= horizon:
                    name = record.display or record.name
                    upcoming.append(
                        {"id": record.id, "kind": kind.value, "name": name, "due": iso(record.due)}
                    )
        upcoming.sort(key=lambda u: u["due"] or "")
        resp.media = {
            "now": iso(now),
            "counts": {kind.value: self.service.counts(user.name, kind) for kind in Kind},
            "upcoming": upcoming[:200],
            "callsPerMinute": self.metrics.last_hour(user.name),
        }


class Pause:
    """`POST /tasks/{id}/suspend|resume` (and for TaskSets): pause or resume a recurring object."""

    def __init__(self, service: Service, kind: Kind) -> None:
        self.service, self.kind = service, kind

    def on_post_suspend(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = user_of(req)
        answer = self.service.suspend(object_id, user.name, kind=self.kind)
        resp.media = {"suspended": True, "object": present(answer.record, viewer=user.name), "afterThisRun": answer.later}  # fmt: skip

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = user_of(req)
        record = self.service.resume(object_id, user.name, kind=self.kind)
        resp.media = {"suspended": False, "object": present(record, viewer=user.name)}
