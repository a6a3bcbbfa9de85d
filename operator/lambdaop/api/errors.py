"""Errors as JSON: `{"error", "message", "details"}` with the status `core.errors.STATUS` gives.

Bad input never yields a 500; an unexpected error is logged and answered 500
without its internals. Called by the app factory (error handlers).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from lambdaop.core.errors import STATUS, LambdaopError

log = logging.getLogger("lambdaop.api")


def send_error(
    resp: falcon.Response, status: int, code: str, message: str, details: list[Any], **extra: Any
) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"error": code, "message": message, "details": details, **extra}, default=str)
    if status == 401:
        resp.set_header("WWW-Authenticate", 'Bearer realm="lambdaop"')


def handle_lambdaop_error(req: falcon.Request, resp: falcon.Response, ex: LambdaopError, params: Any) -> None:
    status = next((s for cls, s in STATUS.items() if isinstance(ex, cls)), 500)
    details = [p.as_dict() for p in ex.problems]
    message = ex.message if not details else f"{ex.message}: " + "; ".join(str(p) for p in ex.problems[:5])
    send_error(resp, status, ex.code, message, details)
    retry = getattr(ex, "retry_after", None)
    if isinstance(retry, int):
        resp.set_header("Retry-After", str(retry))


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any) -> None:
    code = ex.status_code
    if isinstance(ex, falcon.HTTPRouteNotFound):
        send_error(resp, 404, "not_found", f"no route {req.path}: the routes are listed at /docs (and /openapi.json)", [])  # fmt: skip
        return
    if isinstance(ex, falcon.HTTPMethodNotAllowed):
        allowed = dict(ex.headers or {}).get("Allow", "")
        send_error(resp, 405, "method_not_allowed", f"{req.method} is not accepted on {req.path}" + (f"; use {allowed}" if allowed else ""), [])  # fmt: skip
        if allowed:
            resp.set_header("Allow", allowed)
        return
    send_error(
        resp, code, (ex.title or "error").lower().replace(" ", "_"), ex.description or ex.title or "", []
    )


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    if isinstance(ex, falcon.HTTPError):
        return handle_http_error(req, resp, ex, params)
    log.exception("unexpected error on %s %s", req.method, req.path)
    send_error(resp, 500, "internal", "an unexpected error happened; it is logged", [])
