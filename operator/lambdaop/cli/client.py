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


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self.server + path, timeout=self.timeout, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
        if response.status_code >= 400:
            raise ClientError(response.status_code, body)
        return body if isinstance(body, dict) else {"value": body}

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
        self, kind: str = "Task", state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["taskState"] = state
        if cursor:
            params["cursor"] = cursor
        return self._call("GET", _path(kind), params=params)

    def get(self, object_id: str, kind: str = "Task") -> dict[str, Any]:
        return self._call("GET", f"{_path(kind)}/{quote(object_id, safe='')}")

    def find(self, kind: str, name_or_id: str) -> dict[str, Any]:
        """One of the caller's objects by id, or else by name (404 when neither)."""
        if OBJECT_ID.match(name_or_id):
            try:
                return self.get(name_or_id, kind)
            except ClientError as exc:
                if exc.status != 404:
                    raise
        rows = self._call("GET", _path(kind), params={"name": name_or_id})[
            "tasks" if kind == "Task" else "taskSets"
        ]
        if not rows:
            raise ClientError(404, {"message": f"you have no {kind} named or numbered {name_or_id!r}"})
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

    def pause(self, object_id: str, kind: str, action: str) -> dict[str, Any]:
        """suspend or resume a recurring object."""
        return self._call("POST", f"{_path(kind)}/{quote(object_id, safe='')}/{action}")


def _path(kind: str) -> str:
    return "/tasks" if kind == "Task" else "/tasksets"
