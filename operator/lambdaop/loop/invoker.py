"""HTTP and AWS Lambda calls on a pool of threads; results go back to the loop through a callback.

Called by the reconciler (`submit`). Each call:

- resolves its host and checks every address against the outbound policy,
  then connects to the address it checked (the name goes in `Host` and TLS
  SNI, the certificate is verified for the name), so a name that resolves
  elsewhere later cannot redirect it;
- has one total deadline, `timeout`, for connecting, sending and receiving: a
  reaper thread shuts the socket when it passes, whatever the peer does;
- reads at most 1 MiB of the answer (4 KiB of it are kept as the excerpt);
- follows redirects only when `followRedirects` is set, checking every hop again;
- carries `Idempotency-Key` and `X-Lambdaop-Attempt`, and when `sign` is set the
  Standard Webhooks headers (an HMAC-SHA256 of id, timestamp and body);
- reads `fromEnv` secrets (headers, query, body fields) at call time, never stored or logged,
  and takes every secret it sent out of what is kept (`answers`: excerpt, error, output);
- keeps a named step's answer as its output (`keep_output`, bounded by `answers.output_of`);
- calls Lambda functions by ARN (the Invoke API) and `auth: aws_iam` Function URLs, signed
  with SigV4 (`aws`: botocore's credentials, endpoints and signing) and sent this same way,
  and judges the answer as Lambda means it (a function error is a `function` failure).

A call never raises: every failure becomes a `CallResult` with `ok=False` and
an error that says what happened. Threads start only as calls need them (up
to `max_threads`), so calls held by slow endpoints never leave a due call
waiting for a free thread. Keep-alive connections are reused per thread.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from lambdaop import __version__
from lambdaop.core.clock import Clock
from lambdaop.engine.outcomes import Failure
from lambdaop.loop import aws
from lambdaop.loop.answers import Secrets, output_of
from lambdaop.loop.deadlines import Reaper
from lambdaop.loop.outbound import SECURE, IPAddress, Policy, Refused, resolve
from lambdaop.spec import FromEnv, Invoke, SuccessWhen

log = logging.getLogger(__name__)

EXCERPT_BYTES = 4096
MAX_RESPONSE = 1024 * 1024
MAX_HOPS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Job:
    """One call to make: which object and step it serves, and how to call."""

    object_id: str
    fence: int
    step: str
    attempt: int
    idempotency_key: str
    invoke: Invoke
    keep_output: bool = False  # a named step: its answer is kept as its output (steps.NAME.output)
    refused: str | None = None  # the call cannot be made as configured (an expression failed): why
    redact: tuple[str, ...] = ()  # secrets it carries that are not fromEnv (a callback URL's token)


@dataclass(frozen=True)
class CallResult:
    job: Job
    ok: bool
    started: dt.datetime
    duration_ms: float
    status: int | None = None
    response: str | None = None
    error: str | None = None
    failure: Failure | None = None  # what kind of failure it was
    retry_after: float | None = None  # seconds a 429 or 503 asked to wait
    output: Any = None  # a named step's answer as its output (JSON, or its text), secrets taken out
    output_size: int = 0  # bytes of `output` as JSON


class ConfigError(Exception):
    """The call cannot be made as configured (e.g. a missing fromEnv variable)."""


class _Expired(Exception):
    """The call's deadline passed."""


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to an address already checked, with SNI and certificate checks for the name."""

    def __init__(self, ip: str, port: int, hostname: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(ip, port, timeout=timeout, context=context)
        self.hostname = hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.hostname)  # type: ignore[attr-defined]


class Invoker:
    def __init__(
        self,
        on_result: Callable[[CallResult], None],
        clock: Clock,
        env: Mapping[str, str],
        workers: int = 16,
        policy: Policy = SECURE,
        resolver: Callable[[str, int], list[IPAddress]] = resolve,
        max_threads: int = 256,
    ) -> None:
        self._on_result = on_result
        self._clock = clock
        self._env = env
        self.workers = workers
        self.policy = policy
        self._resolve = resolver
        self._pool = ThreadPoolExecutor(max_workers=max(workers, max_threads), thread_name_prefix="invoker")
        self._local = threading.local()
        self._reaper = Reaper(clock)
        self._tls = ssl.create_default_context()
        sts = lambda m, u, h, b: self._exchange(m, u, h, b, self._clock.monotonic() + aws.STS_TIMEOUT, h)  # noqa: E731 (a roleArn's AssumeRole)
        self._aws = aws.Aws(env, sts, clock)

    def submit(self, job: Job) -> None:
        self._pool.submit(self._run, job)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _run(self, job: Job) -> None:
        try:
            result = self.call(job)
        except Exception as exc:  # never lose a result: an unexpected error is a failed attempt
            log.exception("object %s: unexpected error calling %s", job.object_id, job.invoke.target)
            result = CallResult(job, False, self._clock.now(), 0.0, error=f"internal error: {exc}")
        self._on_result(result)

    # ----- one call

    def call(self, job: Job) -> CallResult:
        """Make the call; what is kept of it (excerpt, error, output) holds none of its secrets."""
        secrets = self._local.secrets = Secrets()
        for value in job.redact:
            secrets.add(value)
        if job.refused is not None:
            return CallResult(job, False, self._clock.now(), 0.0, error=secrets.redact(job.refused), failure=Failure.CONFIG)  # fmt: skip
        result, raw = self._call(job)
        response = None if result.response is None else secrets.redact(result.response)
        error = None if result.error is None else secrets.redact(result.error)
        result = replace(result, response=response, error=error)
        if not job.keep_output or raw is None:
            return result
        output, size, why = output_of(raw, secrets)
        if why is not None and result.ok:  # a later step could not read it: the step fails
            return replace(result, ok=False, error=why, failure=Failure.BODY)
        return replace(result, output=output, output_size=size)

    def _call(self, job: Job) -> tuple[CallResult, bytes | None]:
        inv = job.invoke
        started = self._clock.now()
        t0 = self._clock.monotonic()
        timeout = inv.timeout.total_seconds()
        deadline = self._clock.monotonic() + timeout

        def fail(error: str, failure: Failure) -> tuple[CallResult, None]:
            return CallResult(job, False, started, elapsed(), None, error=error, failure=failure), None

        def elapsed() -> float:
            return round((self._clock.monotonic() - t0) * 1000, 3)

        method = "POST" if inv.lambda_ is not None else inv.method
        try:
            headers, body, url = self._request(job, started)
            external_id = None if inv.externalId is None else self._secret(inv.externalId, "externalId")
        except (ConfigError, aws.AwsFailed) as exc:
            return fail(str(exc), getattr(exc, "failure", Failure.CONFIG))
        signer = (lambda: self._aws.sign(inv, method, url, headers, body, external_id)) if inv.aws else None
        try:
            if inv.aws:  # its endpoint comes from the environment: judged here, before any credential is read
                self.policy.check_url(url)
            for _hop in range(MAX_HOPS + 1):
                status, raw, truncated, answer = self._exchange(method, url, headers, body, deadline, inv.headers, signer)  # fmt: skip
                if status in _REDIRECTS and (location := answer.get("location")) and inv.followRedirects:
                    url = urljoin(url, location)
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                        headers.pop("Content-Type", None)
                    continue
                break
            else:
                return fail(f"more than {MAX_HOPS} redirects", Failure.CLIENT)
        except Refused as exc:
            return fail(f"refused by the outbound policy: {exc}", Failure.CONFIG)
        except aws.AwsFailed as exc:
            return fail(str(exc), exc.failure)
        except _Expired:
            return fail(f"timed out after {timeout:g}s", Failure.TIMEOUT)
        except ConfigError as exc:
            return fail(str(exc), Failure.CONNECTION)
        except ssl.SSLError as exc:
            return fail(f"TLS failed: {_short(exc)}", Failure.CONNECTION)
        except (OSError, http.client.HTTPException) as exc:
            if self._clock.monotonic() >= deadline:
                return fail(f"timed out after {timeout:g}s", Failure.TIMEOUT)
            return fail(f"connection failed: {_short(exc)}", Failure.CONNECTION)
        duration = elapsed()
        excerpt = raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        if status in _REDIRECTS and not inv.followRedirects and inv.successWhen is None:
            return CallResult(job, False, started, duration, status, excerpt, f"status {status} (a redirect; set followRedirects to follow it)", Failure.CLIENT), raw  # fmt: skip
        wait = retry_after(answer.get("retry-after"), self._clock.now()) if status in (429, 503) else None
        if inv.aws and (found := aws.failure_of(inv, status, raw, answer)) is not None:
            return CallResult(job, False, started, duration, status, excerpt, *found, wait), raw
        ok, why = judge(inv.successWhen, status, raw, truncated)
        if ok:
            return CallResult(job, True, started, duration, status, excerpt), raw
        return CallResult(job, False, started, duration, status, excerpt, why, Failure.of_status(status), wait), raw  # fmt: skip

    def _request(self, job: Job, started: dt.datetime) -> tuple[dict[str, str], bytes | None, str]:
        inv = job.invoke
        headers = {"User-Agent": f"lambdaop/{__version__}"}
        if inv.lambda_ is not None:
            url, api_headers, event = self._aws.invoke(inv, job.idempotency_key, job.attempt, self._fill)
            return headers | api_headers, event, url
        for name, value in inv.headers.items():
            headers[name] = self._secret(value, f"header {name}")
        headers["Idempotency-Key"] = job.idempotency_key
        headers["X-Lambdaop-Attempt"] = str(job.attempt)
        body: bytes | None = None
        if inv.body is not None:
            if isinstance(inv.body, str):
                body = inv.body.encode()
            else:
                body = json.dumps(self._fill(inv.body), separators=(",", ":")).encode()
                headers.setdefault("Content-Type", "application/json")
        url = inv.url or ""
        if inv.query:
            query = urlencode({k: self._secret(v, f"query {k}") for k, v in inv.query.items()})
            url += ("&" if urlsplit(url).query else "?") + query
        if inv.sign is not None:
            secret = self._env.get(inv.sign.secretFromEnv)
            if secret is None:
                raise ConfigError(f"sign: environment variable {inv.sign.secretFromEnv} is not set in the lambdaop process")  # fmt: skip
            self._used(secret)
            headers.update(sign(secret, job.idempotency_key, int(started.timestamp()), body or b""))
        return headers, body, aws.canonical_url(url) if inv.auth == "aws_iam" else url

    def _secret(self, value: str | FromEnv, where: str) -> str:
        if isinstance(value, FromEnv):
            if value.fromEnv not in self._env:
                raise ConfigError(
                    f"{where}: environment variable {value.fromEnv} is not set in the lambdaop process"
                )
            return self._used(self._env[value.fromEnv])
        return value

    def _used(self, secret: str) -> str:
        """A secret this call sends: taken out of what is kept of the call."""
        secrets: Secrets | None = getattr(self._local, "secrets", None)
        return secret if secrets is None else secrets.add(secret)

    def _fill(self, value: Any) -> Any:
        """The body with every `{fromEnv: NAME}` replaced by the variable's value."""
        if isinstance(value, dict):
            if set(value) == {"fromEnv"} and isinstance(value["fromEnv"], str):
                return self._secret(FromEnv(fromEnv=value["fromEnv"]), "body")
            return {k: self._fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v) for v in value]
        return value

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        deadline: float,
        declared: Mapping[str, object],
        signer: Callable[[], dict[str, str]] | None = None,
    ) -> tuple[int, bytes, bool, dict[str, str]]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"{url!r} is not an http(s) URL")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot resolve {host}: {_short(exc)}") from None
        if not addresses:
            raise ConfigError(f"{host} resolves to no address")
        for address in addresses:
            self.policy.check_address(address, host)
        if signer is not None:  # signed last, over every header it sends (Host too)
            headers = declared = signer()
        ip = str(addresses[0])
        for _try in (1, 2):  # a kept-alive connection the peer closed meanwhile gets one fresh try
            if self._clock.monotonic() >= deadline:
                raise _Expired()
            conn, fresh = self._connection(parts.scheme, ip, port, host, deadline)
            try:
                return self._send(conn, method, parts, host, port, headers, body, deadline, declared)
            except _Expired:
                self._drop(parts.scheme, ip, port, host)
                raise
            except (OSError, http.client.HTTPException):
                self._drop(parts.scheme, ip, port, host)
                if fresh:
                    raise
        raise ConfigError("the connection failed twice")

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        parts: Any,
        host: str,
        port: int,
        headers: dict[str, str],
        body: bytes | None,
        deadline: float,
        declared: Mapping[str, object],
    ) -> tuple[int, bytes, bool, dict[str, str]]:
        """One request and its (bounded) answer on this connection, under the deadline."""
        assert conn.sock is not None
        token = self._reaper.watch(conn.sock, deadline)
        keep = False
        try:
            conn.sock.settimeout(max(0.001, deadline - self._clock.monotonic()))
            send = dict(headers)
            if "host" not in {k.lower() for k in declared}:
                default = 443 if parts.scheme == "https" else 80
                send["Host"] = host if port == default else f"{host}:{port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, path, body=body, headers=send)
            resp = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_RESPONSE and method != "HEAD":
                chunk = resp.read(min(65536, MAX_RESPONSE + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            truncated = size > MAX_RESPONSE
            fired, token = self._reaper.unwatch(token), -1
            if fired:  # the deadline shut the socket: what was read is not the whole answer
                raise _Expired()
            if not truncated and resp.length:  # the peer closed before the end it announced
                raise http.client.IncompleteRead(b"", resp.length)
            raw = b"".join(chunks)[:MAX_RESPONSE]
            keep = not truncated and not resp.will_close and resp.isclosed()
            return resp.status, raw, truncated, {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException):
            if (token >= 0 and self._reaper.unwatch(token)) or self._clock.monotonic() >= deadline:
                token = -1
                raise _Expired() from None
            raise
        finally:
            if token >= 0 and self._reaper.unwatch(token):
                keep = False
            if not keep:
                conn.close()

    def _connection(
        self, scheme: str, ip: str, port: int, host: str, deadline: float
    ) -> tuple[http.client.HTTPConnection, bool]:
        conns: dict[tuple[str, str, int, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})  # fmt: skip
        key = (scheme, ip, port, host)
        conn = conns.get(key)
        if conn is not None and conn.sock is not None:
            return conn, False
        remaining = max(0.001, deadline - self._clock.monotonic())
        if scheme == "https":
            conn = _Pinned(ip, port, host, remaining, self._tls)
        else:
            conn = http.client.HTTPConnection(ip, port, timeout=remaining)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[key] = conn
        return conn, True

    def _drop(self, scheme: str, ip: str, port: int, host: str) -> None:
        conns = self._local.__dict__.get("conns", {})
        conn = conns.pop((scheme, ip, port, host), None)
        if conn is not None:
            conn.close()


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds, or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")).

    A secret written `whsec_<base64>` is the base64 key (the Standard Webhooks
    form); any other text is used as the key's bytes.
    """
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{digest}",
    }


def judge(
    when: SuccessWhen | None, status: int, body: bytes, truncated: bool = False
) -> tuple[bool, str | None]:
    """Success: 2xx (or one of `status`), and the JSON test if there is one."""
    if when is not None and when.status:
        if status not in when.status:
            return False, f"status {status} is not one of {when.status}"
    elif not 200 <= status < 300:
        return False, f"status {status}"
    if when is None or when.json_ is None:
        return True, None
    test = when.json_
    if truncated:
        return False, f"the body is over {MAX_RESPONSE} bytes, so {test.path} cannot be tested"
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
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
