"""The engine end to end: real embedded store, real HTTP endpoint on 127.0.0.1, real time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from helpers import final, wait_until
from lambdaop.core.errors import Conflict
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def task_yaml(name: str, url: str, **spec: object) -> str:
    lines = [f"kind: Task\nmetadata: {{name: {name}}}\nspec:\n  invoke: {json.dumps(url)}\n"]
    for key, value in spec.items():
        lines.append(f"  {key}: {json.dumps(value)}\n")
    return "".join(lines)


def apply(runtime: Runtime, text: str, owner: str = "admin") -> list[str]:
    return [runtime.applier.apply(obj, owner).id or "" for obj in load_one(text)]


def iso_in(seconds: float) -> str:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_task_due_in_one_second_is_called_once_on_time(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    at = iso_in(1.0)
    (oid,) = apply(runtime, task_yaml("soon", demo.url + "/ok", at=at))
    (call,) = demo.wait_for(1, "/ok", timeout=10)
    due = dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    assert due <= call.at < due + 2.0, (
        f"called {call.at - due:.3f}s after its time"
    )  # precision: benchmarks/lateness.py
    doc = final(runtime, oid)
    assert doc["state"] == "completed"
    assert len(demo.calls("/ok")) == 1
    assert [a["status"] for a in doc["attempts"]] == [200]
    assert "due" not in doc and "lease_owner" not in doc


def test_fails_twice_then_completes_with_spaced_retries(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    (oid,) = apply(runtime, task_yaml("flaky", demo.url + "/flaky/a?fails=2", retries=3, retryDelay="400ms"))
    doc = final(runtime, oid)
    calls = demo.calls("/flaky/a")
    assert doc["state"] == "completed" and len(calls) == 3
    for before, after in zip(calls, calls[1:], strict=False):
        assert after.at - before.at >= 0.4, "never before its retry delay"
    assert [c.attempt for c in calls] == ["1", "2", "3"]
    assert len({c.idempotency_key for c in calls}) == 1, "every attempt of a step carries the same key"
    assert [(a["attempt"], a["status"], a["ok"]) for a in doc["attempts"]] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all(a["duration_ms"] >= 0 and a["at"] for a in doc["attempts"])


def test_retries_used_up_ends_failed_with_every_attempt(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    (oid,) = apply(runtime, task_yaml("doomed", demo.url + "/fail", retries=2, retryDelay="100ms"))
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert [a["status"] for a in doc["attempts"]] == [500, 500, 500]
    assert doc["progress"]["reason"] == "failed after 3 attempt(s): status 500"
    assert '"ok": false' in doc["attempts"][0]["response"]


def test_a_timeout_is_a_failed_attempt(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    url = demo.url + "/sleep?ms=1500"
    text = f"kind: Task\nmetadata: {{name: slow}}\nspec:\n  invoke: {{url: '{url}', timeout: 300ms}}\n  retries: 1\n  retryDelay: 100ms\n"
    (oid,) = apply(runtime, text)
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert [a["error"] for a in doc["attempts"]] == ["timed out after 0.3s"] * 2
    assert all(250 <= a["duration_ms"] < 1000 for a in doc["attempts"])


def test_success_when_json_decides(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    test = "successWhen: {json: {path: status, equals: success}}"
    good, bad = apply(
        runtime,
        f"kind: Task\nmetadata: {{name: good}}\nspec:\n  invoke: {{url: '{demo.url}/status/success', {test}}}\n---\n"
        f"kind: Task\nmetadata: {{name: bad}}\nspec:\n  invoke: {{url: '{demo.url}/status/failed', {test}}}\n",
    )
    assert final(runtime, good)["state"] == "completed"
    doc = final(runtime, bad)
    assert doc["state"] == "failed"
    assert doc["attempts"][0]["error"] == "status is 'failed', not 'success'"


def test_success_when_status_list(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    (oid,) = apply(
        runtime,
        f"kind: Task\nmetadata: {{name: s}}\nspec:\n  invoke: {{url: '{demo.url}/code/404', successWhen: {{status: [404]}}}}\n",
    )
    assert final(runtime, oid)["state"] == "completed"


def test_secrets_from_env_are_sent_never_stored(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime(env={"TRIAL_KEY": "s3cret-value"})
    text = (
        f"kind: Task\nmetadata: {{name: keyed}}\nspec:\n  invoke:\n    url: '{demo.url}/ok'\n    method: POST\n"
        "    headers: {x-api-key: {fromEnv: TRIAL_KEY}}\n    body: {report: daily}\n---\n"
        f"kind: Task\nmetadata: {{name: unset}}\nspec:\n  invoke:\n    url: '{demo.url}/ok'\n"
        "    headers: {x-api-key: {fromEnv: NOT_SET_ANYWHERE}}\n"
    )
    keyed, unset = apply(runtime, text)
    doc = final(runtime, keyed)
    assert doc["state"] == "completed"
    (call,) = demo.calls("/ok")
    assert call.headers["x-api-key"] == "s3cret-value" and json.loads(call.body) == {"report": "daily"}
    assert "s3cret-value" not in repr(runtime.store.get(keyed))
    bad = final(runtime, unset)
    assert bad["state"] == "failed"
    assert "environment variable NOT_SET_ANYWHERE is not set" in bad["attempts"][0]["error"]


def test_cancel_only_while_scheduled(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    later, soon = apply(
        runtime,
        task_yaml("later", demo.url + "/ok?later", after="1h")
        + "---\n"
        + task_yaml("soon", demo.url + "/sleep?ms=300"),
    )
    record = runtime.service.cancel(later, "admin")
    assert record.state == "cancelled"
    demo.wait_for(1, "/sleep")
    with pytest.raises(Conflict, match="only a scheduled object can be"):
        runtime.service.cancel(soon, "admin")
    assert final(runtime, soon)["state"] == "completed"
    assert runtime.store.get(later)["state"] == "cancelled"
    assert not demo.calls("/ok")


def test_modify_moves_a_scheduled_task(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    (oid,) = apply(runtime, task_yaml("moved", demo.url + "/ok", after="1h"))
    new_time = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
    runtime.service.modify(oid, "admin", new_time)
    (call,) = demo.wait_for(1, "/ok", timeout=10)
    assert new_time.timestamp() <= call.at < new_time.timestamp() + 2.0
    assert final(runtime, oid)["state"] == "completed"


def test_bad_specs_are_reported_and_good_ones_still_run(
    make_runtime, demo: DemoLambda, tmp_path: Path, caplog
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "broken.yaml").write_text("kind: Task\nmetadata: {name: x\n")
    (specs / "bad-fields.yaml").write_text(
        "kind: Task\nmetadata: {name: bad}\nspec:\n  invoke: ftp://nope\n  at: 2026-11-28T09:00:00\n  retries: -1\n  extra: 1\n"
    )
    (specs / "good.yaml").write_text(task_yaml("good", demo.url + "/ok"))
    runtime = make_runtime(specs_dir=specs)
    demo.wait_for(1, "/ok")
    good = runtime.store.find_by_name("admin", "Task", "good")
    assert good is not None and final(runtime, good["_id"])["state"] == "completed"
    assert runtime.store.find_by_name("admin", "Task", "bad") is None
    text = caplog.text
    assert "broken.yaml:3:1: YAML syntax error" in text
    assert "bad-fields.yaml:4:3: spec.invoke.url: expected an http:// or https:// URL" in text
    assert "bad-fields.yaml:5:3: spec.at: time 2026-11-28T09:00:00 has no offset" in text
    assert "bad-fields.yaml:6:3: spec.retries" in text
    assert "bad-fields.yaml:7:3: spec.extra: unknown field" in text


def test_reapplying_the_same_spec_changes_nothing(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    text = task_yaml("same", demo.url + "/ok", after="1h")
    (obj,) = load_one(text)
    first = runtime.applier.apply(obj, "admin")
    second = runtime.applier.apply(obj, "admin")
    assert (first.action, second.action, first.id) == ("created", "unchanged", second.id)


def test_many_tasks_due_together_each_called_once(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    at = iso_in(1.0)
    text = "---\n".join(task_yaml(f"t{i}", f"{demo.url}/ok?i={i}", at=at) for i in range(300))
    ids = apply(runtime, text)
    demo.wait_for(300, "/ok", timeout=30)
    wait_until(
        lambda: all(runtime.store.get(i)["state"] == "completed" for i in ids), 30, what="all completed"
    )
    assert sorted(c.query for c in demo.calls("/ok")) == sorted(f"i={i}" for i in range(300))
