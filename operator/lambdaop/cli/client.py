"""A Python client of the REST API, used by the CLI verbs (apply, get, describe, cancel)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import requests

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")

BODY_LIMIT = 900 * 1024


def split_documents(text: str, limit: int = BODY_LIMIT) -> list[tuple[int, str]]:
    """Cut a multi-document YAML text at `---` lines into pieces under `limit` bytes.

    Answers (line offset, piece) pairs; a piece's line N is line offset+N of the text.
    """
    if len(text.encode()) <= limit:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []
    current: list[str] = []
    size = 0
    start = 0
    for number, line in enumerate(text.splitlines(keepends=True)):
        if line.startswith("---") and current and size + len(line.encode()) > limit:
            pieces.append((start, "".join(current)))
            current, size, start = [], 0, number
        current.append(line)
        size += len(line.encode())
    if current:
        pieces.append((start, "".join(current)))
    return pieces


class ClientError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body.get('message') or body.get('reason') or body}")


class NotLambdaop(Exception):
    """The server answered, but not as lambdaop does (its errors are JSON with `error` and
    `message`, its answers JSON objects): --server points at something else."""

    def __init__(self, server: str, method: str, path: str, status: int, what: str) -> None:
        self.server = server
        said = f"{method} {path} answered {status} with {what}"
        hint = "pass --server or set LAMBDAOP_SERVER to the address `lambdaop serve` prints"
        if status >= 500:  # a proxy in front of a lambdaop that is down answers like this too
            super().__init__(f"{server} did not answer as lambdaop does: {said} (a proxy in front of a stopped lambdaop, or not lambdaop at all: {hint})")  # fmt: skip
        else:
            super().__init__(f"{server} is not a lambdaop server: {said} ({hint})")


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, expect: str | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self.server + path, timeout=self.timeout, **kwargs)
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            kind = (response.headers.get("Content-Type") or "no content type").split(";")[0]
            raise NotLambdaop(
                self.server, method, path, status, f"a body that is not JSON ({kind})"
            ) from None
        if not isinstance(body, dict):
            raise NotLambdaop(self.server, method, path, status, "JSON that is not an object")
        if status >= 400:
            if not {"error", "message"} <= set(body):
                raise NotLambdaop(self.server, method, path, status, "an error lambdaop never sends")
            raise ClientError(status, body)
        if expect is not None and expect not in body:
            raise NotLambdaop(self.server, method, path, status, f"an answer without `{expect}`")
        return body

    def apply(
        self, text: str, content_type: str = "application/yaml", force: bool = False, dry_run: bool = False
    ) -> dict[str, Any]:
        params = {k: "true" for k, on in (("force", force), ("dryRun", dry_run)) if on} or None
        return self._call(
            "POST", "/specs", data=text.encode(), headers={"Content-Type": content_type}, params=params
        )

    def delete_spec(self, kind: str, name: str, force: bool = False) -> dict[str, Any]:
        return self._call(
            "DELETE", f"/specs/{kind}/{quote(name, safe='')}", params={"force": "true"} if force else None
        )

    def list(
        self,
        kind: str = "Task",
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        selector: str | None = None,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (
            ("taskState", state),
            ("cursor", cursor),
            ("labelSelector", selector),
            ("prefix", prefix),
        ):
            if value:
                params[key] = value
        return self._call("GET", _path(kind), expect=_key(kind), params=params)

    def runs(
        self,
        state: str | None = None,
        since: str | None = None,
        selector: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        """Ended runs across objects, newest first (GET /runs); `prefix`: of objects whose name starts with it."""
        pairs = (("state", state), ("since", since), ("labelSelector", selector), ("kind", kind), ("prefix", prefix))  # fmt: skip
        params = {"limit": limit, **{k: v for k, v in pairs if v}}
        return self._call("GET", "/runs", expect="runs", params=params)

    def get(self, object_id: str, kind: str = "Task") -> dict[str, Any]:
        return self._call("GET", f"{_path(kind)}/{quote(object_id, safe='')}", expect="id")

    def find(self, kind: str, name_or_id: str) -> dict[str, Any]:
        """One of the caller's objects by id, or else by name (404 when neither)."""
        if OBJECT_ID.match(name_or_id):
            try:
                return self.get(name_or_id, kind)
            except ClientError as exc:
                if exc.status != 404:
                    raise
        name = (
            name_or_id.split("/", 1)[1] if name_or_id.lower().startswith(f"{kind.lower()}/") else name_or_id
        )
        rows = self._call("GET", _path(kind), expect=_key(kind), params={"name": name})[_key(kind)]
        if not rows:
            raise ClientError(404, {"error": "not_found", "message": f"you have no {kind} named or numbered {name_or_id!r}"})  # fmt: skip
        return dict(rows[0])

    def describe(self, object_id: str) -> dict[str, Any]:
        """One object of either kind."""
        try:
            return self.get(object_id, "Task")
        except ClientError as exc:
            if exc.status != 404:
                raise
            return self.get(object_id, "TaskSet")

    def schedule(self, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/scheduler/schedule", json=fields)

    def orchestrate(self, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/orchestrator/orchestrate", json=fields)

    def modify(self, object_id: str, at: str, kind: str = "Task") -> dict[str, Any]:
        route = "/scheduler/modify" if kind == "Task" else "/orchestrator/modify"
        return self._call("POST", route, json={"taskId": object_id, "at": at})

    def cancel(self, object_id: str, kind: str | None = None) -> dict[str, Any]:
        """Cancel a scheduled Task or TaskSet (either, when the kind is not given)."""
        if kind is not None:
            return self._call("POST", "/scheduler/cancel" if kind == "Task" else "/orchestrator/cancel", json={"taskId": object_id})  # fmt: skip
        try:
            return self._call("POST", "/scheduler/cancel", json={"taskId": object_id})
        except ClientError as exc:
            if exc.status != 404:
                raise
            return self._call("POST", "/orchestrator/cancel", json={"taskId": object_id})

    def pause(
        self, object_id: str, kind: str, action: str, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """suspend (with a reason) or resume an object."""
        return self._call("POST", f"{_path(kind)}/{quote(object_id, safe='')}/{action}", json=fields)

    def act(
        self, object_id: str, kind: str, action: str, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """run, rerun or backfill an object."""
        return self._call("POST", f"{_path(kind)}/{quote(object_id, safe='')}/{action}", expect="object", json=fields or {})  # fmt: skip

    def bulk(self, verb: str, fields: dict[str, Any]) -> dict[str, Any]:
        """pause or resume many objects (POST /pause, /resume)."""
        return self._call("POST", f"/{verb}", json=fields)


def _path(kind: str) -> str:
    return "/tasks" if kind == "Task" else "/tasksets"


def _key(kind: str) -> str:
    return "tasks" if kind == "Task" else "taskSets"
