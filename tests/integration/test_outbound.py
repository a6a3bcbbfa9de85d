"""Calls reach only what they may, are bounded, and can be verified: real calls to 127.0.0.1 only.

Names are resolved through a resolver stub (to 127.0.0.1), so nothing here
leaves the machine; literal internal addresses are only ever validated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from helpers import final
from lambdaop.cli.main import main
from lambdaop.core.clock import SystemClock
from lambdaop.loop.invoker import CallResult, Invoker, Job
from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.spec import Invoke, load_one
from lambdaop.tools.demo import DemoLambda

LOOPBACK = Policy.parse("127.0.0.1")


def to_loopback(host: str, port: int) -> list[Any]:
    """A resolver stub: every name is 127.0.0.1 (as a hostile DNS answer would make it)."""
    return [ipaddress.ip_address("127.0.0.1")]


def call(invoke: dict[str, Any], policy: Policy = LOOPBACK, resolver: Any = None, env: dict[str, str] | None = None) -> CallResult:  # fmt: skip
    results: list[CallResult] = []
    invoker = Invoker(results.append, SystemClock(), env or {}, policy=policy, **({"resolver": resolver} if resolver else {}))  # fmt: skip
    try:
        return invoker.call(Job("o1", 0, "task", 1, "o1-g1-task", Invoke.model_validate(invoke)))
    finally:
        invoker.shutdown()


def test_a_name_that_resolves_to_loopback_is_refused_at_call_time_and_nothing_is_sent(
    demo: DemoLambda,
) -> None:
    port = demo.url.rsplit(":", 1)[1]
    result = call({"url": f"http://evil.test:{port}/ok"}, policy=SECURE, resolver=to_loopback)
    assert not result.ok and result.status is None
    assert "refused by the outbound policy: evil.test resolves to 127.0.0.1, a loopback address" in (
        result.error or ""
    )
    assert not demo.calls(), "no request was sent"


def test_redirects_are_not_followed_unless_asked_and_every_hop_is_checked(demo: DemoLambda) -> None:
    result = call({"url": f"{demo.url}/redirect?to=/ok"})
    assert not result.ok and result.status == 302 and "set followRedirects" in (result.error or "")
    assert [c.path for c in demo.calls()] == ["/redirect"]
    demo.reset()
    result = call({"url": f"{demo.url}/redirect?to=/ok", "followRedirects": True})
    assert result.ok and result.status == 200 and [c.path for c in demo.calls()] == ["/redirect", "/ok"]
    demo.reset()
    result = call({"url": f"{demo.url}/redirect?to=http://169.254.169.254/latest/", "followRedirects": True})
    assert not result.ok and "169.254.169.254, a link-local address" in (result.error or "")
    assert [c.path for c in demo.calls()] == ["/redirect"]


def test_a_dripping_endpoint_ends_at_the_timeout_as_a_failed_attempt(demo: DemoLambda) -> None:
    t0 = time.monotonic()
    result = call({"url": f"{demo.url}/drip?secs=30", "timeout": "2s"})
    took = time.monotonic() - t0
    assert not result.ok and result.error == "timed out after 2s"
    assert 1.9 <= took < 4, f"took {took:.1f}s"


def test_four_100_mb_answers_at_once_stay_under_150_mb(demo: DemoLambda) -> None:
    script = f"""
import re, threading
from lambdaop.core.clock import SystemClock
from lambdaop.loop.invoker import Invoker, Job
from lambdaop.loop.outbound import Policy
from lambdaop.spec import Invoke
results = []
inv = Invoker(results.append, SystemClock(), {{}}, policy=Policy.parse("127.0.0.1"))
for i in range(4):
    inv.submit(Job(f"o{{i}}", 0, "task", 1, f"k{{i}}", Invoke.model_validate({{"url": "{demo.url}/big?mb=100", "timeout": "60s"}})))
inv.shutdown(wait=True)
peak = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(len(results), [r.ok for r in results], [len(r.response or "") for r in results], peak)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, oks, *rest = out.stdout.rsplit(maxsplit=0)[0].split("] ")
    peak_kb = int(out.stdout.split()[-1])
    assert out.stdout.startswith("4 [True, True, True, True]"), out.stdout
    assert "[4096, 4096, 4096, 4096]" in out.stdout, "a 4 KiB excerpt is kept"
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB"


def test_signed_calls_verify_with_the_readme_code(make_runtime, demo: DemoLambda) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    runtime = make_runtime(env={"WEBHOOK_SECRET": secret})
    text = (
        f"kind: Task\nmetadata: {{name: signed}}\nspec:\n  invoke:\n    url: '{demo.url}/ok'\n    method: POST\n"
        "    body: {report: daily}\n    sign: {secretFromEnv: WEBHOOK_SECRET}\n"
    )
    (obj,) = load_one(text)
    oid = runtime.applier.apply(obj, "admin").id or ""
    (received,) = demo.wait_for(1, "/ok")
    assert final(runtime, oid)["state"] == "completed"
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert verify(secret, headers, received.body.encode()), headers
    assert not verify(secret, headers, received.body.encode() + b" "), "a changed body fails"
    assert headers["webhook-id"] == received.idempotency_key
    assert secret not in repr(runtime.store.get(oid))


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The verifier shown in the README (Standard Webhooks), word for word."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, sig.split(",", 1)[1])
        for sig in headers["webhook-signature"].split()
        if sig.startswith("v1,")
    )


def test_sixteen_slow_calls_do_not_hold_up_an_ordinary_task(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime(workers=16)
    slow = "---\n".join(
        f"kind: Task\nmetadata: {{name: slow{i}}}\nspec: {{invoke: {{url: '{demo.url}/drip?secs=60', timeout: 8s}}}}\n"
        for i in range(16)
    )
    for obj in load_one(slow):
        runtime.applier.apply(obj, "admin")
    demo.wait_for(16, "/drip", timeout=20)
    due = time.time() + 1.0
    at = dt.datetime.fromtimestamp(due, dt.UTC).isoformat()
    (obj,) = load_one(
        f"kind: Task\nmetadata: {{name: ordinary}}\nspec: {{invoke: '{demo.url}/ok', at: '{at}'}}\n"
    )
    runtime.applier.apply(obj, "admin")
    (ordinary,) = demo.wait_for(1, "/ok", timeout=20)
    assert due <= ordinary.at < due + 1.0, f"{ordinary.at - due:.3f}s late with 16 slow calls out"


def test_internal_targets_are_refused_by_validate_the_specs_route_and_the_original_routes(make_runtime, tmp_path: Path, capsys: Any) -> None:  # fmt: skip
    path = tmp_path / "internal.yaml"
    path.write_text(
        "kind: Task\nmetadata: {name: meta}\nspec: {invoke: 'http://169.254.169.254/latest/meta-data/'}\n---\n"
        "kind: TaskSet\nmetadata: {name: set}\nspec:\n  tasks: ['https://example.com/a', 'http://2130706433/b']\n"
        "  fallback: {invoke: 'http://[::ffff:10.0.0.1]/c'}\n"
    )
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "spec.invoke.url: 169.254.169.254, a link-local address" in err
    assert "spec.tasks[1].url: 2130706433 resolves to 127.0.0.1, a loopback address" in err
    assert "spec.fallback.invoke.url" in err
    runtime = make_runtime(allow_hosts=SECURE)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    r = session.post(runtime.url + "/specs?dryRun=true", data=path.read_bytes(), headers={"Content-Type": "application/yaml"}, timeout=30)  # fmt: skip
    assert r.status_code == 422
    fields = {d["field"] for d in r.json()["details"]}
    assert fields == {"spec.invoke.url", "spec.tasks[1].url", "spec.fallback.invoke.url"}
    r = session.post(
        runtime.url + "/scheduler/schedule", json={"taskURL": "http://localhost:9000/x"}, timeout=30
    )
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "taskURL"
    r = session.post(
        runtime.url + "/orchestrator/orchestrate", json={"tasks": ["http://[::1]/a"]}, timeout=30
    )
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "tasks"
    assert json.loads(session.get(runtime.url + "/tasks", timeout=30).text)["tasks"] == []
