"""The REST API: a Falcon WSGI app built by `create_app`, served by waitress from runtime.

Resources are thin: read the body, validate (seed/spec), call the service,
answer JSON. Every error is `{"error", "message", "details"}` with the status
`errors.STATUS` gives it; bad input never yields a 500. Every route but
health, login and the OpenAPI document needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import falcon

from lambdaop.api import seed
from lambdaop.app.service import Service, managed_message, manager_of
from lambdaop.app.users import User, Users
from lambdaop.core.clock import Clock, iso, to_utc
from lambdaop.core.errors import (
    STATUS,
    BadRequest,
    Conflict,
    Forbidden,
    LambdaopError,
    NotFound,
    PayloadTooLarge,
    Problem,
    SpecInvalid,
    TooManyRequests,
    UnsupportedMediaType,
)
from lambdaop.core.metrics import Metrics
from lambdaop.engine import recurrence
from lambdaop.spec import Schedule, load_documents, parse_duration
from lambdaop.spec.limits import Limit, load_json, storable
from lambdaop.store.mongo import OBJECT_ID, Store, new_id

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
LIST_PARAMS = (*seed.STATE, "limit", "cursor", "name")
PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/auth/login"}
KINDS = {"tasks": "Task", "tasksets": "TaskSet", "task": "Task", "taskset": "TaskSet"}
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


# --------------------------------------------------------------------------- presentation


SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}
SUMMARY = ("id", "kind", "name", "displayName", "owner", "state", "generation", "created", "updated", "due", "started", "finished", "calls", "attempt", "inFlight", "taskId", "taskSetId", "run", "suspended", "nextRuns")  # fmt: skip


def mask_url(url: str) -> str:
    """A URL with the password of its user part masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def masked(value: Any) -> Any:
    """A spec or call record with secret header values and URL passwords masked (secrets by
    reference, `fromEnv`, are names only and stay)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "headers" and isinstance(item, dict):
                out[key] = {h: ("***" if h.lower() in SECRET_HEADERS and isinstance(v, str) else masked(v)) for h, v in item.items()}  # fmt: skip
            elif key == "url" and isinstance(item, str):
                out[key] = mask_url(item)
            else:
                out[key] = masked(item)
        return out
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return mask_url(value)
    return value


def present_attempt(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in masked(a).items() if v is not None and k != "o"}
    if isinstance(out.get("at"), dt.datetime):
        out["at"] = iso(out["at"])
    if "_id" in out:
        out.pop("_id")
    return out


def present_schedule(doc: dict[str, Any], count: int = 5) -> dict[str, Any]:
    """A recurring object's schedule in words, its next run times, last run, and whether it is suspended."""
    raw = (doc.get("spec") or {}).get("schedule")
    if not raw:
        return {}
    try:
        schedule = Schedule.model_validate(raw)
    except ValueError:
        return {}
    p = doc.get("progress", {})
    out: dict[str, Any] = {
        "schedule": {**raw, "description": recurrence.describe(schedule)},
        "run": p.get("run", 1),
        "suspended": bool(p.get("suspended")),
        "skippedRuns": p.get("skipped", 0),
        "lastRun": present_attempt(doc["lastRun"]) if doc.get("lastRun") else None,
        "nextRuns": [],
    }
    scheduled = p.get("scheduled")
    if (
        isinstance(scheduled, dt.datetime)
        and not p.get("suspended")
        and p.get("phase") in ("scheduled", "running")
    ):
        anchor = p.get("anchor") or scheduled
        first = [scheduled] if p.get("phase") == "scheduled" else []
        out["nextRuns"] = [
            iso(t) for t in first + recurrence.upcoming(schedule, scheduled, anchor, count - len(first))
        ]
    return out


def present(
    doc: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
    live: str | None = None,
    viewer: User | None = None,
) -> dict[str, Any]:
    """An object as the API shows it to `viewer`: its owner sees it whole (secret header values
    and URL passwords masked); anybody else, admins too, sees only kind, name, owner, state,
    times and counts.

    `history` is for one object's answer; `live` overrides the stored state.
    """
    p = doc.get("progress", {})
    out: dict[str, Any] = {
        "id": doc["_id"],
        "kind": doc["kind"],
        "name": doc["name"],
        "owner": doc["owner"],
        "state": live or doc["state"],
        "labels": doc.get("labels", {}),
        "generation": doc.get("generation", 1),
        "created": iso(doc.get("created")),
        "updated": iso(doc.get("updated")),
        "due": iso(doc.get("due")),
        "step": p.get("step"),
        "attempt": p.get("attempt"),
        "calls": p.get("calls", 0),
        "inFlight": live == "running",
        "reason": p.get("reason"),
        "failedStep": p.get("failed_step"),
        "started": iso(p.get("started")),
        "finished": iso(p.get("finished")),
        "displayName": doc.get("display") or doc["name"],
        "pruned": bool(doc.get("pruned")),
        "manager": manager_of(doc),
        "last": present_attempt(doc["last"]) if doc.get("last") else None,
        "spec": masked(doc.get("spec", {})),
    }
    if doc["kind"] == "Task":
        out["taskId"] = doc["_id"]
        invoke = out["spec"].get("invoke", {})
        out["url"] = invoke.get("url") if isinstance(invoke, dict) else None
    else:
        out["taskSetId"] = doc["_id"]
    out.update(present_schedule(doc))
    if history is not None:
        out["attempts"] = [present_attempt(a) for a in history]
        out["runs"] = [present_attempt(r) for r in doc.get("runs", [])] if "schedule" in out else None
        if doc.get("source"):
            out["source"] = doc["source"]
    if viewer is not None and viewer.name != doc["owner"]:
        return {k: out[k] for k in SUMMARY if k in out} | {"redacted": True}
    return out


# --------------------------------------------------------------------------- request bodies


def read_body(req: falcon.Request) -> bytes:
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise PayloadTooLarge(f"the body is {length} bytes; at most {MAX_BODY} are accepted")
    data = req.bounded_stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise PayloadTooLarge(f"the body is over {MAX_BODY} bytes")
    return data


def _media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";")[0].strip().lower()


def read_fields(req: falcon.Request) -> dict[str, Any]:
    """A JSON object or an HTML form, as a dict (form fields given twice become lists)."""
    data = read_body(req)
    kind = _media_type(req)
    if not data.strip():
        if kind and kind not in JSON_TYPES + FORM_TYPES:
            raise UnsupportedMediaType(
                _media_message(kind, "application/json or application/x-www-form-urlencoded")
            )
        return {}
    if kind in JSON_TYPES or (not kind and data.lstrip()[:1] in (b"{", b"[")):
        try:
            value = load_json(data)
        except Limit as exc:
            raise SpecInvalid("invalid request", [Problem(exc.message)]) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return _storable(value)
    if kind in FORM_TYPES or not kind:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise BadRequest("the form body is not UTF-8") from None
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False)
        return _storable({k: v[0] if len(v) == 1 else v for k, v in parsed.items()})
    raise UnsupportedMediaType(_media_message(kind, "application/json or application/x-www-form-urlencoded"))


def _storable(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse what the store or a call cannot hold (NUL or `$` keys, huge numbers, lone surrogates)."""
    problems = storable(fields)
    if problems:
        raise SpecInvalid("invalid request", problems)
    return fields


def _media_message(kind: str, accepted: str) -> str:
    return f"content type {kind!r} is not accepted here; send {accepted}"


def _bearer(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _user(req: falcon.Request) -> User:
    user: User = req.context.user
    return user


def _limit_value(raw: Any) -> int:
    if raw is None or raw == "":
        return 50
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SpecInvalid(
            "invalid request", [Problem("expected a whole number 1-500", field="limit")]
        ) from None
    if not 1 <= value <= 500:
        raise SpecInvalid("invalid request", [Problem("must be between 1 and 500", field="limit")])
    return value


def _params(req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    params = _storable(dict(req.params))
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise SpecInvalid("invalid request", [Problem("unknown query parameter", field=k) for k in unknown])
    cursor = params.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and OBJECT_ID.match(cursor)):
        raise SpecInvalid(
            "invalid request", [Problem("expected the `next` value of a previous page", field="cursor")]
        )
    return params


# --------------------------------------------------------------------------- middleware and errors


class AuthMiddleware:
    def __init__(self, users: Users, public: frozenset[str] = frozenset()) -> None:
        self.users = users
        self.public = PUBLIC | public

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (
            req.path in self.public
            or req.method == "OPTIONS"
            or req.path == "/"
            or req.path.startswith("/ui/")
        ):
            return
        req.context.user = self.users.authenticate(_bearer(req))


def _send_error(
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
    _send_error(resp, status, ex.code, message, details)
    if isinstance(ex, TooManyRequests):
        resp.set_header("Retry-After", str(ex.retry_after))


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any) -> None:
    code = ex.status_code
    _send_error(
        resp, code, (ex.title or "error").lower().replace(" ", "_"), ex.description or ex.title or "", []
    )


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    if isinstance(ex, falcon.HTTPError):
        return handle_http_error(req, resp, ex, params)
    log.exception("unexpected error on %s %s", req.method, req.path)
    _send_error(resp, 500, "internal", "an unexpected error happened; it is logged", [])


# --------------------------------------------------------------------------- resources


class Health:
    def __init__(self, problems: Callable[[], list[str]] | None = None) -> None:
        self.problems = problems

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = self.problems() if self.problems is not None else []
        if found:
            _send_error(resp, 503, "not_ready", "; ".join(found), [{"message": p} for p in found])
            return
        resp.media = {"ok": True}


class Login:
    """`POST /auth/login` (`name` or `username`, and `password`): a web session token."""

    def __init__(self, users: Users) -> None:
        self.users = users

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        f = seed.Fields(read_fields(req))
        _, name = f.take(("name", "username"))
        _, password = f.take(("password",))
        if not isinstance(name, str) or not isinstance(password, str):
            f.problem("name", "name (or username) and password are required")
        f.finish()
        assert isinstance(name, str) and isinstance(password, str)
        token = self.users.login(name.strip(), password, req.remote_addr or "")
        resp.media = {"token": token, "name": name.strip(), "expiresInHours": self.users.session_hours}


class Logout:
    def __init__(self, users: Users) -> None:
        self.users = users

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.users.logout(_bearer(req))
        resp.media = {"signedOut": True}


def _admin(req: falcon.Request) -> User:
    user = _user(req)
    if not user.admin:
        raise Forbidden("only an admin manages users")
    return user


def _admin_or_self(req: falcon.Request, name: str) -> None:
    user = _user(req)
    if not user.admin and user.name != name:
        raise Forbidden("only an admin manages other users' tokens")


class UsersRoute:
    """`/users` (admin): list, create; `/users/{name}`: remove; `/users/{name}/tokens[/{prefix}]`: tokens."""

    def __init__(self, users: Users) -> None:
        self.users = users

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _admin(req)
        resp.media = {"users": [{**u, "created": iso(u.get("created"))} for u in self.users.listing()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _admin(req)
        f = seed.Fields(read_fields(req))
        _, name = f.take(("name", "username"))
        _, admin = f.take(("admin",))
        f.finish()
        if not isinstance(name, str):
            raise SpecInvalid("invalid request", [Problem("the user's name is required", field="name")])
        token = self.users.add(name, admin=admin in (True, "true", "on", "1"))
        resp.status = falcon.HTTP_201
        resp.media = {"name": name, "token": token}

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        admin = _admin(req)
        if name == admin.name:
            raise Conflict("an admin cannot remove itself; ask another admin")
        self.users.remove(name)
        resp.media = {"removed": name}

    def on_get_tokens(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _admin_or_self(req, name)
        resp.media = {"tokens": [{k: iso(v) if isinstance(v, dt.datetime) else v for k, v in t.items()} for t in self.users.tokens(name)]}  # fmt: skip

    def on_post_tokens(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _admin_or_self(req, name)
        f = seed.Fields(read_fields(req))
        expires = f.millis(("expiresIn",))
        f.finish()
        try:
            lifetime = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise SpecInvalid("invalid request", [Problem(str(exc), field="expiresIn")]) from None
        token = self.users.issue_token(name, lifetime)
        resp.status = falcon.HTTP_201
        resp.media = {"name": name, "token": token}

    def on_delete_token(self, req: falcon.Request, resp: falcon.Response, name: str, prefix: str) -> None:
        _admin_or_self(req, name)
        resp.media = {"revoked": self.users.revoke(name, prefix)}


class Me:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = _user(req)
        resp.media = {"name": user.name, "admin": user.admin}


class Objects:
    """Lists (`GET /tasks`, the original retrieve routes) and one object (`GET /tasks/{id}`).

    On the original routes (`original`) lists are also fetched with POST (a form's
    `taskInstance`), and a finished TaskSet is reported as `success`, as there.
    """

    def __init__(self, service: Service, store: Store, kind: str, key: str, original: bool = False) -> None:
        self.service, self.store, self.kind, self.key = service, store, kind, key
        self.original = original

    def _present(
        self, doc: dict[str, Any], user: User, history: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        out = present(doc, history, self.service.loop.live_state(doc["_id"]), user)
        if self.original and self.kind == "TaskSet" and out["state"] == "completed":
            out["state"] = "success"
        return out

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._list(req, resp, _params(req, LIST_PARAMS))

    def _list(self, req: falcon.Request, resp: falcon.Response, params: dict[str, Any]) -> None:
        unknown = [k for k in params if k not in LIST_PARAMS]
        if unknown:
            raise SpecInvalid("invalid request", [Problem("unknown field", field=k) for k in unknown])
        state = seed.state_filter(params)
        limit = _limit_value(params.get("limit"))
        cursor = params.get("cursor")
        if cursor is not None and not (isinstance(cursor, str) and OBJECT_ID.match(cursor.strip())):
            raise SpecInvalid("invalid request", [Problem("expected the `next` value of a previous page", field="cursor")])  # fmt: skip
        user = _user(req)
        owner: str | None = user.name
        if state == "all":
            owner, state = None, None
        name = params.get("name")
        if isinstance(name, str) and name:  # one object by name (the caller's)
            found = self.store.find_by_name(user.name, self.kind, name)
            docs = [found] if found is not None else []
        else:
            docs = self.store.list_objects(self.kind, owner, state, cursor.strip() if cursor else None, limit)
        resp.media = {
            self.key: [self._present(d, user) for d in docs],
            "next": docs[-1]["_id"] if len(docs) == limit else None,
            "counts": self.store.counts(owner, self.kind),
        }

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = _user(req)
        doc = self.service.get(object_id, user.name)
        if doc["kind"] != self.kind:
            raise NotFound(f"no {self.kind} {object_id}")
        resp.media = self._present(doc, user, self.store.history(doc))


class MetricsRoute:
    """`GET /metrics`: Prometheus text (token-protected unless serve runs with --metrics-public)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self.metrics.render()


class Dashboard:
    """`GET /dashboard`: the caller's counts, what comes due in the next hour, and calls per minute."""

    def __init__(self, service: Service, store: Store, metrics: Metrics, clock: Clock) -> None:
        self.service, self.store, self.metrics, self.clock = service, store, metrics, clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = _user(req)
        now = to_utc(self.clock.now())
        horizon = now + dt.timedelta(hours=1)
        upcoming = []
        for kind in ("Task", "TaskSet"):
            for doc in self.store.list_objects(kind, user.name, "scheduled", None, 500):
                due = doc.get("due")
                if isinstance(due, dt.datetime) and due <= horizon:
                    upcoming.append(
                        {
                            "id": doc["_id"],
                            "kind": kind,
                            "name": doc.get("display") or doc["name"],
                            "due": iso(due),
                        }
                    )
        upcoming.sort(key=lambda u: u["due"] or "")
        resp.media = {
            "now": iso(now),
            "counts": {kind: self.store.counts(user.name, kind) for kind in ("Task", "TaskSet")},
            "upcoming": upcoming[:200],
            "callsPerMinute": self.metrics.last_hour(user.name),
        }


class Pause:
    """`POST /tasks/{id}/suspend|resume` (and for TaskSets): pause or resume a recurring object."""

    def __init__(self, service: Service, kind: str) -> None:
        self.service, self.kind = service, kind

    def on_post_suspend(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = _user(req)
        doc = self.service.suspend(object_id, user.name, kind=self.kind)
        resp.media = {"suspended": True, "object": present(doc, viewer=user), "afterThisRun": bool(doc.get("suspendAfterRun"))}  # fmt: skip

    def on_post_resume(self, req: falcon.Request, resp: falcon.Response, object_id: str) -> None:
        user = _user(req)
        doc = self.service.resume(object_id, user.name, kind=self.kind)
        resp.media = {"suspended": False, "object": present(doc, viewer=user)}


class OriginalObjects(Objects):
    """The original retrieve routes: lists also by POST (a form's `taskInstance`), finished sets as `success`."""

    def __init__(self, service: Service, store: Store, kind: str, key: str) -> None:
        super().__init__(service, store, kind, key, original=True)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = read_fields(req)
        self._list(req, resp, {**_params(req, LIST_PARAMS), **fields})


class Create:
    def __init__(self, service: Service, clock: Clock, zone: str, kind: str) -> None:
        self.service, self.clock, self.zone, self.kind = service, clock, zone, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = read_fields(req)
        now = to_utc(self.clock.now())
        policy = self.service.policy
        oid = new_id()  # the object's id, and the end of its name
        if self.kind == "Task":
            obj: Any
            obj, display = seed.schedule(fields, now, self.zone, oid, policy)
        else:
            obj, display = seed.orchestrate(fields, now, self.zone, oid, policy)
        user = _user(req)
        doc = self.service.create(
            obj, user.name, {"_id": oid, "display": display} if display else {"_id": oid}
        )
        resp.status = falcon.HTTP_201
        resp.media = present(doc, viewer=user)


class Modify:
    def __init__(self, service: Service, clock: Clock, zone: str, kind: str) -> None:
        self.service, self.clock, self.zone, self.kind = service, clock, zone, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        oid, at = seed.modify(read_fields(req), to_utc(self.clock.now()), self.zone)
        try:
            doc = self.service.modify(oid, _user(req).name, at, kind=self.kind)
        except Conflict as exc:
            _send_error(resp, 409, exc.code, exc.message, [], modified=False, reason=exc.message)
            return
        resp.media = {"modified": True, "task" if self.kind == "Task" else "taskSet": present(doc)}


class Cancel:
    def __init__(self, service: Service, kind: str) -> None:
        self.service, self.kind = service, kind

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        oid = seed.cancel(read_fields(req))
        try:
            doc = self.service.cancel(oid, _user(req).name, kind=self.kind)
        except Conflict as exc:
            _send_error(resp, 409, exc.code, exc.message, [], cancelled=False, reason=exc.message)
            return
        resp.media = {"cancelled": True, "task" if self.kind == "Task" else "taskSet": present(doc)}


class Specs:
    def __init__(self, service: Service) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = _media_type(req)
        if kind and kind not in YAML_TYPES + JSON_TYPES:
            raise UnsupportedMediaType(_media_message(kind, "application/yaml or application/json"))
        try:
            text = read_body(req).decode()
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
        docs = load_documents(text)
        problems = [p for d in docs for p in d.problems]
        seen: dict[tuple[str, str], int] = {}
        for d in docs:
            if d.spec is None:
                continue
            key = (d.spec.kind, d.spec.metadata.name)
            if key in seen:
                problems.append(
                    Problem(
                        f"{key[0]} {key[1]!r} is also defined by document {seen[key]} (line {docs[seen[key]].line})",
                        field="metadata.name",
                        line=d.line,
                        document=d.index,
                    )
                )
            seen.setdefault(key, d.index)
        for d in docs:
            if d.spec is not None:
                problems += self.service.target_problems(d.spec, d.line, d.index)
        if not docs:
            problems.append(Problem("no spec documents in the body"))
        if problems:
            raise SpecInvalid("invalid spec; nothing was applied", problems)
        user = _user(req)
        force = req.get_param_as_bool("force", default=False)
        if not force:
            managed = self.service.managed_by_folder(docs, user.name)
            if managed:
                raise Conflict(
                    "some documents change objects the specs folder manages; nothing was applied", managed
                )
        if req.get_param_as_bool("dryRun", default=False):
            resp.media = {
                "results": [{"action": "valid", "kind": d.kind, "name": d.name, "line": d.line} for d in docs]
            }
            return
        results = self.service.apply_documents(docs, user.name, manager=f"api:{user.name}", force=force)
        resp.media = {"results": [r.as_dict() for r in results]}

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        real = KINDS.get(kind.lower(), kind if kind in ("Task", "TaskSet") else None)
        if real is None:
            raise NotFound(f"no kind {kind!r}; use Task or TaskSet")
        user = _user(req)
        current = self.service.store.find_by_name(user.name, real, name)
        managed = current is not None and manager_of(current).startswith("folder:")
        if managed and current is not None and not req.get_param_as_bool("force", default=False):
            raise Conflict(managed_message(current))
        doc = self.service.prune(user.name, real, name)
        resp.media = {"deleted": True, "object": present(doc, viewer=user)}


UI_DIR = Path(__file__).with_name("ui")


class Page:
    """The web page (`/`): static files from the package, Bootstrap included; nothing from a CDN."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (UI_DIR / "index.html").read_text()
        resp.cache_control = ["no-cache"]


class OpenAPI:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document


# --------------------------------------------------------------------------- the app


def create_app(
    service: Service,
    users: Users,
    store: Store,
    clock: Clock,
    zone: str = "UTC",
    ready: Callable[[], list[str]] | None = None,
    metrics: Metrics | None = None,
    metrics_public: bool = False,
) -> falcon.App:
    from lambdaop.api.openapi import openapi_document

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

    tasks = Objects(service, store, "Task", "tasks")
    tasksets = Objects(service, store, "TaskSet", "taskSets")
    original_tasks = OriginalObjects(service, store, "Task", "tasks")
    original_tasksets = OriginalObjects(service, store, "TaskSet", "taskSets")
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Health(ready or (lambda: [] if store.ping() else ["the store does not answer"])))
    app.add_route("/auth/login", Login(users))
    app.add_route("/metrics", MetricsRoute(metrics))
    app.add_route("/dashboard", Dashboard(service, store, metrics, clock))
    app.add_route("/auth/logout", Logout(users))
    user_routes = UsersRoute(users)
    app.add_route("/users", user_routes)
    app.add_route("/users/{name}", user_routes, suffix="one")
    app.add_route("/users/{name}/tokens", user_routes, suffix="tokens")
    app.add_route("/users/{name}/tokens/{prefix}", user_routes, suffix="token")
    app.add_route("/auth/me", Me())
    app.add_route("/scheduler/schedule", Create(service, clock, zone, "Task"))
    app.add_route("/scheduler/retrieve-tasks", original_tasks)
    app.add_route("/scheduler/retrieve-tasks/{object_id}", original_tasks, suffix="one")
    app.add_route("/scheduler/modify", Modify(service, clock, zone, "Task"))
    app.add_route("/scheduler/cancel", Cancel(service, "Task"))
    app.add_route("/orchestrator/orchestrate", Create(service, clock, zone, "TaskSet"))
    app.add_route("/orchestrator/retrieve-tasks", original_tasksets)
    app.add_route("/orchestrator/retrieve-tasks/{object_id}", original_tasksets, suffix="one")
    app.add_route("/orchestrator/cancel", Cancel(service, "TaskSet"))
    app.add_route("/orchestrator/modify", Modify(service, clock, zone, "TaskSet"))
    specs = Specs(service)
    app.add_route("/specs", specs)
    app.add_route("/specs/{kind}/{name}", specs, suffix="one")
    app.add_route("/tasks", tasks)
    app.add_route("/tasks/{object_id}", tasks, suffix="one")
    app.add_route("/tasks/{object_id}/suspend", Pause(service, "Task"), suffix="suspend")
    app.add_route("/tasks/{object_id}/resume", Pause(service, "Task"), suffix="resume")
    app.add_route("/tasksets", tasksets)
    app.add_route("/tasksets/{object_id}", tasksets, suffix="one")
    app.add_route("/tasksets/{object_id}/suspend", Pause(service, "TaskSet"), suffix="suspend")
    app.add_route("/tasksets/{object_id}/resume", Pause(service, "TaskSet"), suffix="resume")
    app.add_route("/openapi.json", OpenAPI(openapi_document()))
    app.add_route("/", Page())
    app.add_static_route("/ui", str(UI_DIR))
    return app
