"""Notifications of a run's events (`notify:`) end to end, at a real loopback endpoint."""

from __future__ import annotations

import json

from helpers import final, wait_until, with_history
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def test_a_task_tells_of_its_start_and_its_success(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: Task
metadata: {{name: told}}
spec:
  invoke: '{demo.url}/ok?job'
  notify:
    - {{on: [started, succeeded, failed], invoke: '{demo.url}/echo?all'}}
    - {{on: [failed], invoke: '{demo.url}/echo?failures'}}
""",
    )
    doc = wait_until(lambda: (d := runtime.store.get(oid)) and not d["progress"]["notify"] and d["state"] == "completed" and d)  # fmt: skip
    order = [c.path + "?" + c.query for c in demo.calls_snapshot()]
    assert order == ["/echo?all", "/ok?job", "/echo?all"]
    started, succeeded = (json.loads(c.body) for c in demo.calls("/echo"))
    assert (started["event"], succeeded["event"]) == ("run.started", "run.succeeded")
    assert started["lastAttempt"] == {} and started["reason"] is None and started["at"]
    assert succeeded["lastAttempt"]["step"] == "task" and succeeded["lastAttempt"]["status"] == 200
    keys = [c.idempotency_key for c in demo.calls("/echo")]
    assert keys == [f"{oid}-g1-notify:started:0", f"{oid}-g1-notify:succeeded:0"]
    steps = [a["step"] for a in with_history(runtime.store, doc)["attempts"]]
    assert steps == ["notify:started:0", "task", "notify:succeeded:0"]
    assert doc["progress"]["notified"] == "delivered"


def test_a_failed_set_tells_its_notify_entries_and_on_failure(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: falls}}
spec:
  tasks: ['{demo.url}/code/500']
  fallback: {{invoke: '{demo.url}/ok?fallback'}}
  notify:
    - {{on: [failed], invoke: '{demo.url}/code/503', retries: 1, retryDelay: 100ms}}
    - {{on: [succeeded], invoke: '{demo.url}/ok?never'}}
  onFailure: {{invoke: '{demo.url}/echo?alert'}}
""",
    )
    doc = wait_until(lambda: (d := runtime.store.get(oid)) and not d["progress"]["notify"] and d["state"] == "failed" and d)  # fmt: skip
    steps = [(a["step"], a["status"]) for a in with_history(runtime.store, doc)["attempts"]]
    assert steps == [("task:0", 500), ("fallback", 200), ("notify:failed:0", 503), ("notify:failed:0", 503), ("notify", 200)]  # fmt: skip
    (alert,) = (json.loads(c.body) for c in demo.calls("/echo"))
    assert alert["event"] == "run.failed" and alert["failedStep"] == "task:0"
    assert doc["progress"]["notified"] == "failed", "one of its notifications was not delivered"
    assert doc["progress"]["reason"] == "task 1 failed after 1 attempt(s): status 500", (
        "the result is the run's"
    )
    assert [c.query for c in demo.calls("/ok")] == ["fallback"]


def test_a_started_notification_that_is_down_does_not_stop_the_run(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: Task
metadata: {{name: runs-anyway}}
spec:
  invoke: '{demo.url}/ok?job'
  notify: [{{on: [started], invoke: '{demo.url}/code/500', retries: 0}}]
""",
    )
    doc = final(runtime, oid)
    assert doc["state"] == "completed"
    assert [a["step"] for a in doc["attempts"]] == ["notify:started:0", "task"]
