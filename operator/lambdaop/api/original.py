"""The original system's write routes: schedule, orchestrate, modify, cancel (field names in `seed`).

Called by the app factory.
"""

from __future__ import annotations

from typing import Any

import falcon

from lambdaop.api import seed
from lambdaop.api.auth import user_of
from lambdaop.api.bodies import read_fields
from lambdaop.api.errors import send_error
from lambdaop.app.batch import Checker
from lambdaop.app.service import Service
from lambdaop.app.view import present
from lambdaop.core.clock import Clock, to_utc
from lambdaop.core.errors import Conflict
from lambdaop.engine.ondemand import past_times
from lambdaop.spec import Kind


def _key(kind: Kind) -> str:
    return "task" if kind is Kind.TASK else "taskSet"


class Create:
    def __init__(self, service: Service, checker: Checker, clock: Clock, zone: str, kind: Kind) -> None:
        self.service, self.checker, self.clock, self.zone, self.kind = service, checker, clock, zone, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = read_fields(req)
        now = to_utc(self.clock.now())
        oid = self.service.new_id()  # the object's id, and the end of its name
        obj: Any
        if self.kind is Kind.TASK:
            obj, display = seed.schedule(fields, now, self.zone, oid, self.checker.targets)
        else:
            obj, display = seed.orchestrate(fields, now, self.zone, oid, self.checker.targets)
        user = user_of(req)
        record = self.service.create(obj, user.name, object_id=oid, display=display or None)
        resp.status = falcon.HTTP_201
        resp.media = present(record, viewer=user.name)
        warnings = past_times(obj.spec, now)
        if warnings:  # taken, and told: a time already past runs now
            resp.media["warnings"] = warnings


class Modify:
    def __init__(self, service: Service, clock: Clock, zone: str, kind: Kind) -> None:
        self.service, self.clock, self.zone, self.kind = service, clock, zone, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        oid, at = seed.modify(read_fields(req), to_utc(self.clock.now()), self.zone)
        try:
            record = self.service.modify(oid, user_of(req).name, at, kind=self.kind)
        except Conflict as exc:
            send_error(resp, 409, exc.code, exc.message, [], modified=False, reason=exc.message)
            return
        resp.media = {"modified": True, _key(self.kind): present(record)}


class Cancel:
    def __init__(self, service: Service, kind: Kind) -> None:
        self.service, self.kind = service, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        oid = seed.cancel(read_fields(req))
        try:
            record = self.service.cancel(oid, user_of(req).name, kind=self.kind)
        except Conflict as exc:
            send_error(resp, 409, exc.code, exc.message, [], cancelled=False, reason=exc.message)
            return
        resp.media = {"cancelled": True, _key(self.kind): present(record)}
