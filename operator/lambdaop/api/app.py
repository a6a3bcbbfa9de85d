"""The REST API and the web page: a Falcon WSGI app built by `create_app`, served by waitress from runtime.

Resources are thin: read the body, validate (`seed`, `spec`, the batch
validator), ask the app's service, answer JSON. Every error is `{"error",
"message", "details"}` with the status `core.errors.STATUS` gives it; bad
input never yields a 500. Every route but health, login, the OpenAPI
document and its page (`/docs`) needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

from lambdaop.api.auth import AuthMiddleware, Login, Logout, Me, UsersRoute
from lambdaop.api.callbacks import CallbackRoute
from lambdaop.api.errors import handle_http_error, handle_lambdaop_error, handle_unexpected, send_error
from lambdaop.api.objects import Dashboard, Objects, OriginalObjects, Pause
from lambdaop.api.original import Cancel, Create, Modify
from lambdaop.api.pausing import Pausing, Rerunning
from lambdaop.api.runs import Act, RunsList
from lambdaop.api.specs import Specs
from lambdaop.app.applying import Applier
from lambdaop.app.bulk import Bulk
from lambdaop.app.callbacks import Callbacks
from lambdaop.app.operate import Operations
from lambdaop.app.users import Users
from lambdaop.core.clock import Clock
from lambdaop.core.errors import LambdaopError
from lambdaop.core.metrics import Metrics
from lambdaop.spec import Kind

UI_DIR = Path(__file__).with_name("ui")


class Health:
    def __init__(self, problems: Callable[[], list[str]] | None = None) -> None:
        self.problems = problems

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = self.problems() if self.problems is not None else []
        if found:
            send_error(resp, 503, "not_ready", "; ".join(found), [{"message": p} for p in found])
            resp.set_header("Retry-After", "1")
            return
        resp.media = {"ok": True}


class MetricsRoute:
    """`GET /metrics`: Prometheus text (token-protected unless serve runs with --metrics-public)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self.metrics.render()


class Page:
    """The web page (`/`): static files from the package, Bootstrap included; nothing from a CDN."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (UI_DIR / "index.html").read_text()
        resp.cache_control = ["no-cache"]


class Docs:
    """`/docs`: the OpenAPI document as a page to read (Redoc, vendored from npm under ui/vendor)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (UI_DIR / "docs.html").read_text()
        resp.cache_control = ["no-cache"]


class OpenAPI:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


def create_app(
    applier: Applier,
    users: Users,
    clock: Clock,
    zone: str = "UTC",
    ready: Callable[[], list[str]] | None = None,
    metrics: Metrics | None = None,
    live: Callable[[], list[str]] | None = None,
    metrics_public: bool = False,
    callbacks: Callbacks | None = None,
) -> falcon.App:
    from lambdaop.api.openapi import openapi_document

    service = applier.service
    operations = Operations(service)
    bulk = Bulk(operations)
    metrics = metrics or Metrics()
    app = falcon.App(
        middleware=[AuthMiddleware(users, frozenset({"/metrics"}) if metrics_public else frozenset())]
    )
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=lambda obj: json.dumps(obj, default=str)
    )
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(LambdaopError, handle_lambdaop_error)

    app.add_route("/healthz", Health(live))
    app.add_route("/readyz", Health(ready or (lambda: [] if service.store_answers() else ["the store does not answer"])))  # fmt: skip
    app.add_route("/auth/login", Login(users))
    app.add_route("/auth/logout", Logout(users))
    app.add_route("/auth/me", Me())
    app.add_route("/metrics", MetricsRoute(metrics))
    app.add_route("/dashboard", Dashboard(service, metrics, clock, bulk.paused_all, operations))
    user_routes = UsersRoute(users)
    app.add_route("/users", user_routes)
    app.add_route("/users/{name}", user_routes, suffix="one")
    app.add_route("/users/{name}/tokens", user_routes, suffix="tokens")
    app.add_route("/users/{name}/tokens/{prefix}", user_routes, suffix="token")
    for kind, original, key in (
        (Kind.TASK, "scheduler", "tasks"),
        (Kind.TASKSET, "orchestrator", "taskSets"),
    ):
        listed = OriginalObjects(service, kind, key)
        create = "/scheduler/schedule" if kind is Kind.TASK else "/orchestrator/orchestrate"
        app.add_route(create, Create(service, applier.checker, clock, zone, kind))
        app.add_route(f"/{original}/retrieve-tasks", listed)
        app.add_route(f"/{original}/retrieve-tasks/{{object_id}}", listed, suffix="one")
        app.add_route(f"/{original}/modify", Modify(service, clock, zone, kind))
        app.add_route(f"/{original}/cancel", Cancel(service, kind))
        objects, pause, base = Objects(service, kind, key, paused=bulk.paused_all), Pause(service, kind, operations), f"/{key.lower()}"  # fmt: skip
        app.add_route(base, objects)
        app.add_route(f"{base}/{{object_id}}", objects, suffix="one")
        app.add_route(f"{base}/{{object_id}}/suspend", pause, suffix="suspend")
        app.add_route(f"{base}/{{object_id}}/resume", pause, suffix="resume")
        act = Act(operations, kind)
        for verb in ("run", "rerun", "backfill"):
            app.add_route(f"{base}/{{object_id}}/{verb}", act, suffix=verb)
    pausing = Pausing(bulk)
    app.add_route("/runs", RunsList(operations, clock))
    app.add_route("/rerun", Rerunning(bulk, clock))
    app.add_route("/pause", pausing)
    app.add_route("/resume", pausing, suffix="resume")
    specs = Specs(applier)
    app.add_route("/specs", specs)
    app.add_route("/specs/{kind}/{name}", specs, suffix="one")
    app.add_route("/callbacks/{token}", CallbackRoute(callbacks))
    app.add_route("/openapi.json", OpenAPI(openapi_document()))
    app.add_route("/docs", Docs())
    app.add_route("/", Page())
    app.add_static_route("/ui", str(UI_DIR))
    return app
