"""Lambda by ARN and AWS_IAM Function URLs, end to end: moto's real server (IAM enforced) and a loopback
Invoke API that verifies every SigV4 signature with botocore. Nothing leaves 127.0.0.1.

moto's quirks, as found: without Docker (POST /moto-api/config) its Lambda echoes the event; IAM is
enforced from POST /moto-api/reset-auth on, checks the action `lambda:Invoke` (so policies here say
`lambda:Invoke*`; real AWS wants `lambda:InvokeFunction`) against resource "*", and refuses an empty
signed body. `FakeLambda` answers what moto cannot, as the Invoke API documents: function errors,
429 with Retry-After, 5xx, Event 202, DryRun 204, slow and oversized answers, Function URLs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hmac
import io
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer

from helpers import final
from lambdaop.core.clock import SystemClock
from lambdaop.engine.outcomes import Failure
from lambdaop.loop.invoker import CallResult, Invoker, Job
from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.spec import Invoke, load_one

ACCOUNT, REGION = "123456789012", "us-east-1"
LOOPBACK = Policy.parse("127.0.0.1")
NO_FILES = {"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$"
)


def arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def verify_sigv4(method: str, raw_path: str, headers: dict[str, str], body: bytes, keys: dict[str, tuple[str, str | None]]) -> str:  # fmt: skip
    """'' when the signature is right (recomputed with the known secret, as AWS does), else AWS's error code."""
    h = {k.lower(): v for k, v in headers.items()}
    m = AUTH.match(h.get("authorization", ""))
    if not m:
        return "MissingAuthenticationTokenException"
    akid, day, region, service, _ = m[1].split("/")
    signed = m[2].split(";")
    when = dt.datetime.strptime(h.get("x-amz-date", "19700101T000000Z"), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=dt.UTC
    )
    if (
        "host" not in signed
        or not h["x-amz-date"].startswith(day)
        or abs(time.time() - when.timestamp()) > 300
    ):
        return "InvalidSignatureException"
    if akid not in keys or (keys[akid][1] is not None and h.get("x-amz-security-token") != keys[akid][1]):
        return "UnrecognizedClientException"
    request = AWSRequest(method=method, url=f"http://{h['host']}{raw_path}", data=body, headers={s: h[s] for s in signed})  # fmt: skip
    request.context["timestamp"] = h["x-amz-date"]
    auth = SigV4Auth(Credentials(akid, keys[akid][0], keys[akid][1]), service, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return "" if service == "lambda" and hmac.compare_digest(expected, m[3]) else "InvalidSignatureException"


class FakeLambda:
    """The Invoke API (POST /2015-03-31/functions/NAME/invocations) and a Function URL (any other path).

    Functions: handled, unhandled, timeout (function errors), throttled (429, Retry-After: 3), broken
    (500), slow (3 s), big (2 MiB); `script(name, [(status, body, headers), ...])` queues answers;
    anything else echoes {"echo": event, "clientContext": …}. Every request is kept in `requests`.
    """

    def __init__(self, keys: dict[str, tuple[str, str | None]]) -> None:
        self.keys, self.requests, self.scripts = keys, [], {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, name: str, answers: list[tuple[int, Any, dict[str, str]]]) -> None:
        self.scripts[name] = list(answers)

    def _answer(self, name: str, kind: str, event: Any, context: Any) -> tuple[int, Any, dict[str, str]]:
        if self.scripts.get(name):
            return self.scripts[name].pop(0)
        error = {"x-amzn-ErrorType": ""}
        answers: dict[str, tuple[int, Any, dict[str, str]]] = {
            "handled": (
                200,
                {"errorMessage": "bad input", "errorType": "ValueError", "stackTrace": ["app.py:2"]},
                {"X-Amz-Function-Error": "Handled"},
            ),  # fmt: skip
            "unhandled": (
                200,
                {"errorType": "Runtime.ExitError", "errorMessage": "exit status 1"},
                {"X-Amz-Function-Error": "Unhandled"},
            ),  # fmt: skip
            "timeout": (
                200,
                {"errorMessage": "Task timed out after 3.00 seconds"},
                {"X-Amz-Function-Error": "Unhandled"},
            ),  # fmt: skip
            "throttled": (
                429,
                {
                    "Type": "User",
                    "message": "Rate Exceeded.",
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                },
                {**error, "x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "3"},
            ),  # fmt: skip
            "broken": (
                500,
                {"Type": "Service", "Message": "An internal error occurred."},
                {**error, "x-amzn-ErrorType": "ServiceException"},
            ),  # fmt: skip
            "big": (200, '"' + "x" * (2 * 1024 * 1024) + '"', {}),
        }
        if name == "slow":
            time.sleep(3)
        if name in answers:
            return answers[name]
        return {"Event": (202, "", {}), "DryRun": (204, "", {})}.get(kind, (200, {"echo": event, "clientContext": context}, {}))  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                refused = verify_sigv4(self.command, self.path, headers, body, fake.keys)
                fake.requests.append({"method": self.command, "path": self.path, "headers": headers, "body": body, "refused": refused})  # fmt: skip
                parts = urlsplit(self.path)
                if refused:
                    return self.reply(403, {"message": "The security token included in the request is invalid." if refused == "UnrecognizedClientException" else "The request signature we calculated does not match the signature you provided."}, {"x-amzn-ErrorType": refused})  # fmt: skip
                if not parts.path.startswith("/2015-03-31/functions/"):  # a Function URL: echo what arrived
                    return self.reply(200, {"path": parts.path, "query": parse_qs(parts.query), "body": body.decode()}, {})  # fmt: skip
                name = unquote(parts.path.split("/")[3]).split(":function:")[-1].split(":")[0]
                context = self.headers.get("X-Amz-Client-Context")
                context = json.loads(base64.b64decode(context)) if context else None
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                self.reply(*fake._answer(name, kind, json.loads(body or b"null"), context))

            do_GET = do_PUT = do_POST

            def reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {
                    "Content-Type": "application/json",
                    "x-amzn-RequestId": "req-1",
                    **headers,
                }.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # the caller stopped reading (deadline, 1 MiB cap)
                    self.wfile.write(raw)

        return Handler


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLambda]:
    server = FakeLambda({"AKIDFAKE": ("fake-secret-key", None), "ASIAFAKE": ("temp-secret", "temp-token")})
    yield server
    server.stop()


def handler_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return event\n")
    return out.getvalue()


@pytest.fixture(scope="module")
def moto() -> Iterator[SimpleNamespace]:
    """moto on 127.0.0.1 without Docker: five functions, users alice (may invoke), bob (may not) and
    dave (may only assume `invoker`, whose trust policy wants ExternalId ext-123); then IAM enforced."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    assert requests.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10).ok
    admin = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}  # fmt: skip
    iam, lam = boto3.client("iam", **admin), boto3.client("lambda", **admin)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip
    role = iam.create_role(RoleName="fn-exec", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for name in ("report", "step-a", "step-b", "check", "fallback"):
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=role, Code={"ZipFile": handler_zip()})  # fmt: skip

    def user(name: str, action: str, resource: str = "*") -> dict[str, str]:
        iam.create_user(UserName=name)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
        }
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    invoker = f"arn:aws:iam::{ACCOUNT}:role/invoker"
    keys = {"alice": user("alice", "lambda:Invoke*"), "bob": user("bob", "lambda:GetFunction"), "dave": user("dave", "sts:AssumeRole", invoker)}  # fmt: skip
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/dave"}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "ext-123"}}}]}  # fmt: skip
    iam.create_role(RoleName="invoker", AssumeRolePolicyDocument=json.dumps(trust))
    may_invoke = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:Invoke*", "Resource": "*"}]}  # fmt: skip
    iam.put_role_policy(RoleName="invoker", PolicyName="invoke", PolicyDocument=json.dumps(may_invoke))
    assert requests.post(
        f"{url}/moto-api/reset-auth", data=b"0", timeout=10
    ).ok  # from here on every call is checked
    yield SimpleNamespace(url=url, keys=keys, role=invoker)
    server.stop()


def env_for(moto: SimpleNamespace, who: str | None) -> dict[str, str]:
    """What lambdaop's entry point would pass on: an emulator endpoint, one user's keys, no files, no IMDS."""
    return {**NO_FILES, "AWS_ENDPOINT_URL": moto.url, **(moto.keys[who] if who else {})}


def call(invoke: dict[str, Any], env: dict[str, str], policy: Policy = LOOPBACK) -> CallResult:
    invoker = Invoker(lambda r: None, SystemClock(), env, policy=policy)
    try:
        return invoker.call(Job("o1", 0, "task", 1, "o1-g1-task", Invoke.model_validate(invoke)))
    finally:
        invoker.shutdown()


def apply(runtime: Any, text: str) -> dict[str, Any]:
    (obj,) = load_one(text)
    return final(runtime, runtime.applier.apply(obj, "admin").id or "", timeout=30)


def task(invoke: str, extra: str = "") -> str:
    return f"kind: Task\nmetadata: {{name: t{time.monotonic_ns()}}}\nspec:\n  invoke: {invoke}\n{extra}"


def test_a_task_by_arn_completes_with_permitted_credentials_and_no_secret_is_kept_logged_or_shown(make_runtime, moto: SimpleNamespace, caplog: Any) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    runtime = make_runtime(env=env_for(moto, "alice"))
    doc = apply(runtime, task(f"{{lambda: '{arn('report')}', payload: {{report: daily}}}}"))
    assert doc["state"] == "completed", doc["attempts"]
    (attempt,) = doc["attempts"]
    assert (
        attempt["ok"] and attempt["status"] == 200 and json.loads(attempt["response"]) == {"report": "daily"}
    )
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    answers = [s.get(f"{runtime.url}{p}", timeout=30).text for p in (f"/tasks/{doc['_id']}", "/tasks", "/scheduler/retrieve-tasks?taskState=All", "/dashboard")]  # fmt: skip
    assert arn("report") in answers[0]
    dump = json.dumps(
        [list(runtime.store.db[c].find()) for c in runtime.store.db.list_collection_names()], default=str
    )
    secret = moto.keys["alice"]["AWS_SECRET_ACCESS_KEY"]
    for where, text in (("store", dump), ("logs", caplog.text), *(("api", a) for a in answers)):
        assert secret not in text, f"the secret key is in the {where}"
    assert "AWS credentials found (env)" in caplog.text


def test_without_permission_the_attempt_fails_with_awss_access_denied_message(make_runtime, moto: SimpleNamespace) -> None:  # fmt: skip
    runtime = make_runtime(env=env_for(moto, "bob"))
    doc = apply(runtime, task(f"'{arn('report')}'"))
    assert doc["state"] == "failed"
    (attempt,) = doc["attempts"]
    assert attempt["status"] == 403
    assert f"AccessDenied: User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: lambda:Invoke" in attempt["error"]  # fmt: skip


def test_unknown_or_missing_credentials_fail_clearly(moto: SimpleNamespace) -> None:
    unknown = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000", "AWS_SECRET_ACCESS_KEY": "nope"}
    result = call({"lambda": arn("report"), "payload": {}}, env_for(moto, None) | unknown)
    assert not result.ok and result.status == 403 and result.failure == Failure.CLIENT
    assert "InvalidClientTokenId: The security token included in the request is invalid." in (
        result.error or ""
    )
    result = call({"lambda": arn("report")}, env_for(moto, None))
    assert not result.ok and result.status is None and result.failure == Failure.CONFIG
    assert (result.error or "").startswith("no AWS credentials found")


def test_an_assumed_role_with_its_external_id_works_and_a_wrong_one_is_refused(make_runtime, moto: SimpleNamespace) -> None:  # fmt: skip
    env = env_for(moto, "dave") | {"INVOKER_EXTERNAL_ID": "ext-123"}
    assert call({"lambda": arn("report"), "payload": {}}, env).status == 403, "dave himself may not invoke"
    runtime = make_runtime(env=env)
    role = f"roleArn: '{moto.role}', externalId: {{fromEnv: INVOKER_EXTERNAL_ID}}, sessionName: nightly"
    doc = apply(runtime, task(f"{{lambda: '{arn('report')}', payload: {{a: 1}}, {role}}}"))
    assert doc["state"] == "completed", doc["attempts"]
    dump = json.dumps(
        [list(runtime.store.db[c].find()) for c in runtime.store.db.list_collection_names()], default=str
    )
    assert moto.keys["dave"]["AWS_SECRET_ACCESS_KEY"] not in dump and "ext-123" not in dump
    result = call({"lambda": arn("report"), "payload": {}, "roleArn": moto.role, "externalId": "wrong"}, env)
    assert not result.ok and result.failure == Failure.CLIENT
    assert f"assuming {moto.role}: status 403, AccessDenied: User: arn:aws:iam::{ACCOUNT}:user/dave is not authorized to perform: sts:AssumeRole" in (result.error or "")  # fmt: skip


def test_a_taskset_of_arns_runs_the_seeds_flow_and_a_check_that_gives_up_runs_the_fallback(make_runtime, moto: SimpleNamespace) -> None:  # fmt: skip
    runtime = make_runtime(env=env_for(moto, "alice"))

    def taskset(status: str) -> str:  # moto echoes the event: the check answers the status it is sent
        return (
            f"kind: TaskSet\nmetadata: {{name: set-{status}}}\nspec:\n  tasks: ['{arn('step-a')}', {{lambda: '{arn('step-b')}', payload: {{n: 2}}}}]\n"  # fmt: skip
            f"  conditionCheck:\n    invoke: {{lambda: '{arn('check')}', payload: {{status: {status}}}, successWhen: {{json: {{path: status, equals: success}}}}}}\n"  # fmt: skip
            f"    retries: 1\n    retryDelay: 100ms\n  fallback:\n    invoke: '{arn('fallback')}'\n"
        )

    done = apply(runtime, taskset("success"))
    assert done["state"] == "completed"
    assert [(a["step"], a["ok"]) for a in done["attempts"]] == [
        ("task:0", True),
        ("check:0", True),
        ("task:1", True),
    ]
    gave_up = apply(runtime, taskset("pending"))
    assert gave_up["state"] == "failed"
    assert [(a["step"], a["attempt"], a["ok"]) for a in gave_up["attempts"]] == [("task:0", 1, True), ("check:0", 1, False), ("check:0", 2, False), ("fallback", 1, True)]  # fmt: skip
    assert "status is 'pending', not 'success'" in gave_up["attempts"][1]["error"]


def test_the_original_routes_take_an_arn_in_their_url_fields(make_runtime, moto: SimpleNamespace) -> None:
    runtime = make_runtime(env=env_for(moto, "alice"))
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"

    def done(path: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while (body := s.get(runtime.url + path, timeout=30).json())["state"] not in ("completed", "success", "failed") and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.05)
        return body

    r = s.post(f"{runtime.url}/scheduler/schedule", json={"taskUrl": arn("report"), "body": {"report": "weekly"}, "delay": 0}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["invoke"]["lambda"] == arn("report")
    body = done(f"/scheduler/retrieve-tasks/{r.json()['id']}")
    assert body["state"] == "completed" and json.loads(body["attempts"][0]["response"]) == {
        "report": "weekly"
    }
    r = s.post(f"{runtime.url}/scheduler/schedule", data={"taskURL": arn("report"), "delay": "0", "checkbox0": "on", "key0": "region", "value0": "eu"}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    assert json.loads(done(f"/scheduler/retrieve-tasks/{r.json()['id']}")["attempts"][0]["response"]) == {
        "region": "eu"
    }
    fields = {"firstTaskURL": arn("step-a"), "secondTaskURL": arn("step-b"), "conditionCheckUrl": arn("check"), "fallbackUrl": arn("fallback"), "initialDelay": "0"}  # fmt: skip
    r = s.post(f"{runtime.url}/orchestrator/orchestrate", data=fields, timeout=30)
    assert r.status_code == 201, r.text
    body = done(f"/orchestrator/retrieve-tasks/{r.json()['id']}")
    assert body["state"] == "success" and [a["step"] for a in body["attempts"]] == [
        "task:0",
        "check:0",
        "task:1",
    ]
    bad = s.post(f"{runtime.url}/scheduler/schedule", json={"url": "arn:aws:lambda:us-east-1:1:function:x", "delay": 0}, timeout=30)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "url", bad.text


def fake_env(fake: FakeLambda, key: str = "AKIDFAKE", secret: str = "fake-secret-key") -> dict[str, str]:
    return {**NO_FILES, "AWS_ENDPOINT_URL_LAMBDA": fake.url, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}  # fmt: skip


def test_a_function_error_fails_the_attempt_with_its_type_and_message_and_retry_on_selects_it(make_runtime, fake: FakeLambda) -> None:  # fmt: skip
    result = call({"lambda": arn("unhandled")}, fake_env(fake))
    assert not result.ok and result.status == 200 and result.failure == Failure.FUNCTION
    assert result.error == "function error (Unhandled): Runtime.ExitError: exit status 1"
    assert call({"lambda": arn("timeout")}, fake_env(fake)).error == "function error (Unhandled): Task timed out after 3.00 seconds"  # fmt: skip
    runtime = make_runtime(env=fake_env(fake))
    doc = apply(
        runtime, task(f"'{arn('handled')}'", "  retries: 1\n  retryDelay: 100ms\n  retryOn: [function]\n")
    )
    assert doc["state"] == "failed" and len(doc["attempts"]) == 2
    assert doc["attempts"][0]["error"] == "function error (Handled): ValueError: bad input"
    assert json.loads(doc["attempts"][0]["response"])["errorType"] == "ValueError", "the payload is kept"
    doc = apply(
        runtime, task(f"'{arn('handled')}'", "  retries: 3\n  retryDelay: 100ms\n  retryOn: [5xx, '429']\n")
    )
    assert len(doc["attempts"]) == 1, "retryOn without `function` leaves function errors alone"


def test_a_throttle_then_a_5xx_then_success_follow_retry_on_backoff_and_retry_after(make_runtime, fake: FakeLambda) -> None:  # fmt: skip
    throttled = {"Type": "User", "message": "Rate Exceeded.", "Reason": "CallerRateLimitExceeded"}
    fake.script("flaky", [(429, throttled, {"x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "1"}), (502, {"Message": "Functions are not ready."}, {"x-amzn-ErrorType": "ResourceNotReadyException"})])  # fmt: skip
    runtime = make_runtime(env=fake_env(fake))
    doc = apply(runtime, task(f"'{arn('flaky')}'", "  retries: 3\n  retryDelay: 200ms\n  backoff: {factor: 3}\n  retryOn: ['429', 5xx]\n"))  # fmt: skip
    assert doc["state"] == "completed"
    first, second, third = doc["attempts"]
    assert (
        first["status"] == 429
        and "TooManyRequestsException: Rate Exceeded. (CallerRateLimitExceeded)" in first["error"]
    )
    assert first["delayReason"] == "Retry-After asked for 1s" and first["nextDelayMs"] == 1000
    assert (
        second["status"] == 502
        and second["delayReason"] == "backoff 200ms x 3^1"
        and second["nextDelayMs"] == 600
    )
    assert (second["at"] - first["at"]).total_seconds() >= 1.0 and third["ok"]


def test_event_dry_run_and_the_client_context_that_carries_the_idempotency_key(fake: FakeLambda) -> None:
    assert (r := call({"lambda": arn("queued"), "invocationType": "Event", "payload": {"a": 1}}, fake_env(fake))).ok and r.status == 202  # fmt: skip
    assert "X-Amz-Client-Context" not in fake.requests[-1]["headers"], "Lambda hands a ClientContext to synchronous calls only"  # fmt: skip
    assert (
        r := call({"lambda": arn("probe"), "invocationType": "DryRun"}, fake_env(fake))
    ).ok and r.status == 204
    result = call(
        {"lambda": "echo", "qualifier": "$LATEST", "region": REGION, "payload": {"a": 1}}, fake_env(fake)
    )
    assert result.ok and json.loads(result.response or "") == {"echo": {"a": 1}, "clientContext": {"custom": {"idempotencyKey": "o1-g1-task", "attempt": 1}}}  # fmt: skip
    assert fake.requests[-1]["path"] == "/2015-03-31/functions/echo/invocations?Qualifier=%24LATEST"
    temporary = fake_env(fake, "ASIAFAKE", "temp-secret") | {"AWS_SESSION_TOKEN": "temp-token"}
    assert call({"lambda": arn("echo")}, temporary).ok, "a session token is sent and signed"


def test_a_function_url_with_aws_iam_is_signed_and_verified(fake: FakeLambda) -> None:
    url = f"{fake.url}/orders/42?b=x y&a=1"
    invoke = {"url": url, "auth": "aws_iam", "region": REGION, "method": "POST", "body": {"order": 42}, "query": {"c": "ü"}}  # fmt: skip
    result = call(invoke, fake_env(fake))
    assert result.ok, result.error
    received = fake.requests[-1]
    assert received["refused"] == "" and received["path"] == "/orders/42?b=x%20y&a=1&c=%C3%BC"
    signed = AUTH.match(received["headers"]["Authorization"])[2].split(";")  # type: ignore[index]
    assert {"host", "idempotency-key", "x-lambdaop-attempt", "content-type", "x-amz-date"} <= set(signed)
    assert f"/{REGION}/lambda/aws4_request" in received["headers"]["Authorization"]
    wrong = call(invoke, fake_env(fake, secret="not-the-secret"))
    assert not wrong.ok and wrong.status == 403 and "InvalidSignatureException" in (wrong.error or "")


def test_the_deadline_the_cap_and_the_policy_hold_for_aws_calls(fake: FakeLambda) -> None:
    t0 = time.monotonic()
    slow = call({"lambda": arn("slow"), "timeout": "1s"}, fake_env(fake))
    assert not slow.ok and slow.failure == Failure.TIMEOUT and time.monotonic() - t0 < 2.5
    big = call({"lambda": arn("big"), "successWhen": {"json": {"path": "a", "equals": 1}}}, fake_env(fake))
    assert not big.ok and "over 1048576 bytes" in (big.error or "") and len(big.response or "") == 4096
    before = len(fake.requests)
    refused = call({"lambda": arn("echo")}, fake_env(fake), policy=SECURE)
    assert refused.failure == Failure.CONFIG and "refused by the outbound policy: 127.0.0.1, a loopback address" in (refused.error or "")  # fmt: skip
    assert len(fake.requests) == before, "nothing was sent"
    broken = call({"lambda": arn("broken")}, fake_env(fake))
    assert broken.failure == Failure.SERVER and "ServiceException: An internal error occurred." in (
        broken.error or ""
    )


def test_container_credentials_named_by_the_mapping_sign_the_call(fake: FakeLambda) -> None:
    """An ECS task role or EKS Pod Identity: the credentials endpoint and its token come from the mapping."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    asked: list[str | None] = []

    class Credentials(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.headers.get("Authorization"))
            raw = json.dumps({"AccessKeyId": "ASIAFAKE", "SecretAccessKey": "temp-secret", "Token": "temp-token", "Expiration": expiry}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Credentials)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**NO_FILES, "AWS_ENDPOINT_URL_LAMBDA": fake.url, "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_address[1]}/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "pod-token"}  # fmt: skip
        result = call({"lambda": arn("echo"), "payload": {}}, env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, result.error
    assert asked == ["pod-token"] and fake.requests[-1]["headers"]["X-Amz-Security-Token"] == "temp-token"


def test_web_identity_credentials_come_from_the_mapping_and_its_sts_endpoint(
    fake: FakeLambda, tmp_path: Any
) -> None:
    """EKS IRSA: the token file, the role and the STS endpoint all come from the mapping, not os.environ."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    asked: list[dict[str, list[str]]] = []

    class Sts(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked.append(parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            creds = f"<AccessKeyId>ASIAFAKE</AccessKeyId><SecretAccessKey>temp-secret</SecretAccessKey><SessionToken>temp-token</SessionToken><Expiration>{expiry}</Expiration>"  # fmt: skip
            raw = f'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials>{creds}</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>'.encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            return

    token = tmp_path / "token"
    token.write_text("eyJ.web-identity-token")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert "AWS_ENDPOINT_URL_STS" not in os.environ and "AWS_WEB_IDENTITY_TOKEN_FILE" not in os.environ
    try:
        env = {**NO_FILES, "AWS_ENDPOINT_URL_LAMBDA": fake.url, "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{server.server_address[1]}", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/irsa"}  # fmt: skip
        result = call({"lambda": arn("echo"), "payload": {}}, env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, result.error
    assert [a.get("Action") for a in asked] == [["AssumeRoleWithWebIdentity"]], asked
    assert asked[0]["RoleArn"] == ["arn:aws:iam::123456789012:role/irsa"]
    assert asked[0]["WebIdentityToken"] == ["eyJ.web-identity-token"]
    assert fake.requests[-1]["headers"]["X-Amz-Security-Token"] == "temp-token", "signed with what STS gave"
