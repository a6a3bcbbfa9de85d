"""A demo "Lambda": an HTTP server whose paths succeed, fail, sleep or answer a JSON status.

Run it with `python -m lambdaop.tools.demo --port 9000`; tests start it in-process
with `DemoLambda().start()`. Every request is recorded (GET /_calls lists them,
DELETE /_calls clears them).

Paths (any method):
  /ok                      200 {"ok": true}
  /fail                    500
  /flaky/NAME?fails=N      500 for the first N calls of NAME, then 200
  /sleep?ms=N              answers 200 after N milliseconds
  /status/VALUE            200 {"status": "VALUE"}
  /check/NAME?fails=N      200 {"status": "failed"} for the first N calls of NAME,
                           then 200 {"status": "success"}
  /code/NNN                answers status NNN
  /json?K=V&...            200 with the query as a JSON object ({"K": "V", ...}), e.g. /json?id=art-7
  /echo                    200 {"method", "query", "headers", "body"}: what was sent (a JSON body parsed)
  /redirect?to=URL&code=N  answers N (default 302) with Location: URL
  /big?mb=N                200 with N MiB of zeros, streamed
  /drip?secs=N             200, then one byte a second for N seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: str
    at: float  # wall time, seconds
    idempotency_key: str | None
    attempt: str | None
    body: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # one write per response and no Nagle delay, or keep-alive clients wait ~40 ms per call
    wbufsize = 65536
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _answer(self, status: int, payload: Any = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, size: int, chunk: int, pause: float) -> None:
        """A 200 whose body is `size` zero bytes, sent `chunk` at a time with `pause` seconds between."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        sent = 0
        with contextlib.suppress(OSError):
            while sent < size:
                piece = min(chunk, size - sent)
                self.wfile.write(b"0" * piece)
                self.wfile.flush()
                sent += piece
                if pause:
                    time.sleep(pause)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/") or "/"
        if path == "/_calls":
            if self.command == "DELETE":
                self.server.lambda_.reset()
                return self._answer(200, {"cleared": True})
            return self._answer(200, [asdict(c) for c in self.server.lambda_.calls_snapshot()])
        self.server.lambda_.record(
            Call(
                self.command,
                path,
                parts.query,
                time.time(),
                self.headers.get("Idempotency-Key"),
                self.headers.get("X-Lambdaop-Attempt"),
                body,
                dict(self.headers.items()),
            )
        )
        segments = path.strip("/").split("/")
        head = segments[0]
        arg = segments[1] if len(segments) > 1 else ""
        if head == "ok":
            return self._answer(200, {"ok": True})
        if head == "fail":
            return self._answer(500, {"ok": False})
        if head == "flaky":
            n = self.server.lambda_.count(path)
            return self._answer(500 if n <= int(query.get("fails", 1)) else 200, {"call": n})
        if head == "sleep":
            time.sleep(int(query.get("ms", 1000)) / 1000)
            return self._answer(200, {"slept_ms": int(query.get("ms", 1000))})
        if head == "status":
            return self._answer(200, {"status": arg})
        if head == "check":
            n = self.server.lambda_.count(path)
            return self._answer(200, {"status": "failed" if n <= int(query.get("fails", 0)) else "success"})
        if head == "json":
            return self._answer(200, query)
        if head == "echo":
            try:
                sent: Any = json.loads(body) if body else None
            except ValueError:
                sent = body
            return self._answer(200, {"method": self.command, "query": query, "headers": dict(self.headers.items()), "body": sent})  # fmt: skip
        if head == "code" and arg.isdigit():
            return self._answer(int(arg), {"code": int(arg)})
        if head == "redirect":
            self.send_response(int(query.get("code", 302)))
            self.send_header("Location", query.get("to", "/ok"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if head == "big":
            return self._stream(int(float(query.get("mb", 1)) * 1024 * 1024), 65536, 0.0)
        if head == "drip":
            return self._stream(int(query.get("secs", 10)), 1, 1.0)
        return self._answer(404, {"error": f"no demo path {path}"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    lambda_: DemoLambda

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the caller went away (it was stopped or killed): nothing to report
        super().handle_error(request, client_address)


class DemoLambda:
    """The demo server, startable in a thread; `calls` is what it received, in order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.lambda_ = self
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._counts: dict[str, int] = {}
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._changed.notify_all()

    def count(self, path: str) -> int:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            return self._counts[path]

    def calls_snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls(self, prefix: str = "") -> list[Call]:
        return [c for c in self.calls_snapshot() if c.path.startswith(prefix)]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._counts.clear()

    def wait_for(self, n: int, prefix: str = "", timeout: float = 30.0) -> list[Call]:
        """Block until at least n calls whose path starts with prefix arrived (or fail)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self._calls if c.path.startswith(prefix)]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"waited {timeout}s for {n} calls to {prefix!r}, got {len(found)}")
                self._changed.wait(left)

    def start(self) -> DemoLambda:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-lambda", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lambdaop.tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    demo = DemoLambda(args.host, args.port)
    print(f"demo lambda listening on {demo.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        demo.serve_forever()


if __name__ == "__main__":
    main()
