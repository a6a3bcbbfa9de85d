"""Recurring objects, retry policies and failure notifications end to end: real store, real calls."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from helpers import wait_until, with_history
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def apply(runtime: Any, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def api(runtime: Any) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    return s


def test_a_task_every_two_seconds_runs_three_times_each_with_its_own_key(
    make_runtime, demo: DemoLambda
) -> None:
    runtime = make_runtime()
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: pulse}}\nspec:\n  invoke: '{demo.url}/ok'\n  schedule: {{every: 2s}}\n")  # fmt: skip
    calls = demo.wait_for(3, "/ok", timeout=30)
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert all(g >= 1.5 for g in gaps), gaps
    keys = [c.idempotency_key for c in calls]
    assert keys == [f"{oid}-g1-r{r}-task" for r in (1, 2, 3)], keys
    s = api(runtime)
    doc = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["lastRun"] and d["run"] >= 3 and d)  # fmt: skip
    assert doc["state"] in ("scheduled", "running"), "a recurring object stays scheduled between runs"
    assert doc["schedule"]["description"] == "every 2s" and len(doc["nextRuns"]) == 5
    assert [r["result"] for r in doc["runs"]][:2] == ["completed", "completed"]
    paused = s.post(runtime.url + f"/tasks/{oid}/suspend", timeout=10)
    assert paused.status_code == 200 and paused.json()["suspended"] is True
    wait_until(lambda: s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()["suspended"])
    time.sleep(0.5)
    seen = len(demo.calls("/ok"))
    time.sleep(4.5)
    assert len(demo.calls("/ok")) <= seen + 1, "no run starts while suspended"
    assert s.post(runtime.url + f"/tasks/{oid}/resume", timeout=10).json()["suspended"] is False
    demo.wait_for(len(demo.calls("/ok")) + 1, "/ok", timeout=10)
    assert s.post(runtime.url + "/scheduler/cancel", json={"taskId": oid}, timeout=10).status_code in (
        200,
        409,
    )


def test_a_failed_task_notifies_once_with_the_documented_event(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"kind: Task\nmetadata: {{name: doomed}}\nspec:\n  invoke: '{demo.url}/code/503'\n  retries: 1\n  retryDelay: 100ms\n"
        f"  onFailure: {{invoke: '{demo.url}/ok?alert'}}\n",
    )
    (alert,) = demo.wait_for(1, "/ok", timeout=20)
    event = json.loads(alert.body)
    assert alert.method == "POST" and alert.idempotency_key == f"{oid}-g1-notify"
    assert {k: event[k] for k in ("event", "kind", "name", "owner", "id", "run")} == {
        "event": "run.failed", "kind": "Task", "name": "doomed", "owner": "admin", "id": oid, "run": 1,
    }  # fmt: skip
    assert (
        event["reason"] == "failed after 2 attempt(s): status 503" and event["lastAttempt"]["status"] == 503
    )
    assert event["failedStep"] == "task", "as the README shows"
    assert event["at"].endswith("Z") and event["lastAttempt"]["at"].endswith("Z"), "one time format"
    doc = wait_until(lambda: (d := runtime.store.get(oid)) and d["progress"]["notified"] == "delivered" and d)
    assert doc["state"] == "failed"
    steps = [(a["step"], a.get("status")) for a in with_history(runtime.store, doc)["attempts"]]
    assert steps == [("task", 503), ("task", 503), ("notify", 200)]
    time.sleep(1)
    assert len(demo.calls("/ok")) == 1, "delivered once"


def test_retry_after_and_backoff_show_in_the_history(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"kind: Task\nmetadata: {{name: throttled}}\nspec:\n  invoke: '{demo.url}/flaky/t?fails=2'\n  retries: 3\n"
        "  retryDelay: 100ms\n  backoff: {factor: 3, max: 2s}\n",
    )
    doc = wait_until(lambda: (d := runtime.store.get(oid)) and d["state"] == "completed" and d, timeout=20)
    attempts = with_history(runtime.store, doc)["attempts"]
    assert [(a["nextDelayMs"], a["delayReason"]) for a in attempts[:2]] == [
        (100.0, "retryDelay 100ms"), (300.0, "backoff 100ms x 3^1"),
    ]  # fmt: skip
    assert "nextDelayMs" not in attempts[2]
