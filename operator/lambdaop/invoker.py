"""HTTP calls on a bounded thread pool; results go back to the loop through a callback.

Called by the reconciler (`submit`). Each worker thread keeps its own
`requests.Session` (connection pooling). A call never raises: every failure
(timeout, connection error, unwanted status, a body test that does not hold, a
missing `fromEnv` variable) becomes a `CallResult` with `ok=False` and an
error that says what happened. Secrets named by `fromEnv` are read from the
environment mapping at call time and are never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .clock import Clock
from .spec import FromEnv, Invoke, SuccessWhen

log = logging.getLogger(__name__)

EXCERPT_BYTES = 4096


@dataclass(frozen=True)
class Job:
    """One call to make: which object and step it serves, and how to call."""

    object_id: str
    fence: int
    step: str
    attempt: int
    idempotency_key: str
    invoke: Invoke


@dataclass(frozen=True)
class CallResult:
    job: Job
    ok: bool
    started: dt.datetime
    duration_ms: float
    status: int | None = None
    response: str | None = None
    error: str | None = None


class ConfigError(Exception):
    """The call cannot be made as configured (e.g. a missing fromEnv variable)."""


class Invoker:
    def __init__(
        self,
        on_result: Callable[[CallResult], None],
        clock: Clock,
        env: Mapping[str, str],
        workers: int = 16,
    ) -> None:
        self._on_result = on_result
        self._clock = clock
        self._env = env
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invoker")
        self._local = threading.local()

    def submit(self, job: Job) -> None:
        self._pool.submit(self._run, job)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = f"lambdaop/{__version__}"
            self._local.session = session
        return session

    def _run(self, job: Job) -> None:
        try:
            result = self.call(job)
        except Exception as exc:  # never lose a result: an unexpected error is a failed attempt
            log.exception("object %s: unexpected error calling %s", job.object_id, job.invoke.url)
            result = CallResult(job, False, self._clock.now(), 0.0, error=f"internal error: {exc}")
        self._on_result(result)

    def call(self, job: Job) -> CallResult:
        inv = job.invoke
        started = self._clock.now()
        t0 = self._clock.monotonic()

        def elapsed() -> float:
            return round((self._clock.monotonic() - t0) * 1000, 3)

        try:
            headers = self._headers(inv)
        except ConfigError as exc:
            return CallResult(job, False, started, elapsed(), error=str(exc))
        headers["Idempotency-Key"] = job.idempotency_key
        headers["X-Lambdaop-Attempt"] = str(job.attempt)
        kwargs: dict[str, Any] = {"headers": headers, "params": inv.query or None}
        if inv.body is not None:
            if isinstance(inv.body, str):
                kwargs["data"] = inv.body.encode()
            else:
                kwargs["json"] = inv.body
        timeout = inv.timeout.total_seconds()
        try:
            response = self._session().request(
                inv.method, inv.url, timeout=(min(timeout, 10.0), timeout), allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            return CallResult(job, False, started, elapsed(), error=f"timed out after {timeout:g}s")
        except requests.ConnectionError as exc:
            return CallResult(job, False, started, elapsed(), error=f"connection failed: {_short(exc)}")
        except requests.RequestException as exc:
            return CallResult(job, False, started, elapsed(), error=f"request failed: {_short(exc)}")
        duration = elapsed()
        raw = response.content
        excerpt = raw[:EXCERPT_BYTES].decode(response.encoding or "utf-8", errors="replace")
        ok, why = judge(inv.successWhen, response.status_code, raw)
        return CallResult(job, ok, started, duration, response.status_code, excerpt, None if ok else why)

    def _headers(self, inv: Invoke) -> dict[str, str]:
        out = {}
        for name, value in inv.headers.items():
            if isinstance(value, FromEnv):
                if value.fromEnv not in self._env:
                    raise ConfigError(
                        f"header {name}: environment variable {value.fromEnv} is not set in the lambdaop process"
                    )
                out[name] = self._env[value.fromEnv]
            else:
                out[name] = value
        return out


def judge(when: SuccessWhen | None, status: int, body: bytes) -> tuple[bool, str | None]:
    """Success: 2xx (or one of `status`), and the JSON test if there is one."""
    if when is not None and when.status:
        if status not in when.status:
            return False, f"status {status} is not one of {when.status}"
    elif not 200 <= status < 300:
        return False, f"status {status}"
    if when is None or when.json_ is None:
        return True, None
    test = when.json_
    try:
        doc = json.loads(body)
    except ValueError:
        return False, f"body is not JSON, so {test.path} cannot be tested"
    found, value = _dig(doc, test.path)
    if not found:
        return False, f"body has no field {test.path}"
    if test.in_ is not None:
        if value in test.in_:
            return True, None
        return False, f"{test.path} is {value!r}, not one of {test.in_!r}"
    if value == test.equals:
        return True, None
    return False, f"{test.path} is {value!r}, not {test.equals!r}"


def _dig(doc: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return False, None
    return True, doc


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "…"
