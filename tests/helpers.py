"""What tests share: bounded waits on events (never fixed sleeps as synchronisation), and a held invoker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")


def quiet_minute() -> int:
    """A minute of the hour half an hour from now: an hourly cron at it (`f"{m} * * * *"`) does not
    fire while a test runs, whatever the time of day (at `0 * * * *` a test that runs across the
    hour sees one run more)."""
    import datetime as dt

    return (dt.datetime.now(dt.UTC).minute + 30) % 60


def wait_until(
    probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Call probe until it answers something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def final(runtime: Any, object_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until an object of a running Runtime reaches a final state; answers it with its `attempts`."""

    def done() -> dict[str, Any] | None:
        doc = runtime.store.get(object_id)
        return doc if doc and doc["state"] in ("completed", "failed", "cancelled") else None

    doc = wait_until(done, timeout, what=f"{object_id} to end")
    return with_history(runtime.store, doc)


def with_history(store: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its call history (kept beside it in the store) as `attempts`."""
    return {**doc, "attempts": store.history(doc["_id"])}


def serve(state: Path, specs: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`lambdaop serve` as a child process on the embedded store, its output appended to log."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambdaop.cli",
            "serve",
            "--state-dir",
            str(state),
            "--specs",
            str(specs),
            "--allow-hosts",
            "127.0.0.1",
            *([] if "--port" in extra else ["--port", "0"]),  # never a fixed port another process may hold
            *extra,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stored_objects(state: Path) -> list[dict[str, Any]]:
    """Every object in a stopped service's embedded store."""
    from lambdaop.store.embedded import EmbeddedServer
    from lambdaop.store.mongo import MongoStore, start_embedded

    server = EmbeddedServer(state)
    start_embedded(server)
    try:
        store = MongoStore(server.uri, embedded=True)
        docs = [with_history(store, d) for d in store.objects.find({"_id": {"$gt": ""}})]
        store.close()
        return docs
    finally:
        server.stop()


class Counting(ThreadingHTTPServer):
    """A loopback endpoint that counts the requests it serves at once: `/work?b=I&ms=N` answers
    `{"branch": I}` after N ms, `/fail` a 500, `/answer-first` POSTs a success to the callback
    URL in its body's `reply` before it answers, anything else `{"got": BODY}`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.events: list[tuple[str, str]] = []  # ("start" | "end", the `b` of a /work call), in order

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def calls(self, path: str) -> list[tuple[str, dict[str, str], Any]]:
        with self.lock:
            return [c for c in self.seen if c[0] == path]


class _Handler(BaseHTTPRequestHandler):
    server: Counting
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size)) if size else None
        server = self.server
        with server.lock:
            server.now += 1
            server.most = max(server.most, server.now)
            server.seen.append((parts.path, {**query, "key": self.headers.get("Idempotency-Key", "")}, body))
        try:
            if parts.path == "/work":
                with server.lock:
                    server.events.append(("start", query.get("b", "")))
                time.sleep(int(query.get("ms", "100")) / 1000)
                with server.lock:
                    server.events.append(("end", query.get("b", "")))
                self._answer(200, {"branch": int(query.get("b", "-1"))})
            elif parts.path == "/answer-first":  # a quick target: calls back before it answers
                import requests

                reply = requests.post(
                    body["reply"], json={"status": "success", "output": {"by": "quick"}}, timeout=30
                )
                self._answer(200, {"calledBack": reply.status_code})
            elif parts.path == "/fail":
                self._answer(500, {"error": "down"})
            else:
                self._answer(200, {"got": body})
        finally:
            with server.lock:
                server.now -= 1

    do_GET = do_POST = _handle  # noqa: N815 - the base class's names


class HeldCalls:
    """An invoker whose calls stay out until the test answers them (the loop's unit tests hand
    it to a Reconciler and set `deliver` to the loop's)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.jobs: list[Any] = []  # out, not answered yet
        self.made: list[Any] = []  # every call that left, answered or not
        self.deliver: Any = None

    def submit(self, job: Any) -> None:
        self.jobs.append(job)
        self.made.append(job)

    def shutdown(self, wait: bool = True) -> None:
        pass

    def answer(self, job: Any, ok: bool = True, status: int = 200) -> None:
        from lambdaop.loop.invoker import CallResult

        self.jobs.remove(job)
        self.deliver(
            CallResult(job, ok, self.clock.now(), 1.0, status, "{}", None if ok else f"status {status}")
        )

    def answer_all(self, ok: bool = True, status: int = 200) -> None:
        for job in list(self.jobs):
            self.answer(job, ok, status)

    def of(self, object_id: str) -> list[Any]:
        return [j for j in self.made if j.object_id == object_id]
