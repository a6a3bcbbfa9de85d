"""TaskSets end to end: order and spacing of calls, fallback, cancel, and kill -9 mid-set."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from helpers import final, serve, stored_objects, wait_until
from lambdaop.core.errors import Conflict
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda

CHECK_JSON = "successWhen: {json: {path: status, equals: success}}"


def taskset_yaml(
    demo: DemoLambda,
    name: str,
    tasks: list[str],
    check: str | None = None,
    fallback: str | None = "/ok?fallback",
    extra: str = "",
) -> str:
    lines = [f"kind: TaskSet\nmetadata: {{name: {name}}}\nspec:\n{extra}  tasks:\n"]
    lines += [f"    - '{demo.url}{t}'\n" for t in tasks]
    if check:
        lines.append(f"  conditionCheck:\n{check}")
    if fallback:
        lines.append(f"  fallback:\n    invoke: '{demo.url}{fallback}'\n")
    return "".join(lines)


def check_block(demo: DemoLambda, path: str, delay: str, retries: int, retry_delay: str) -> str:
    return (
        f"    invoke: {{url: '{demo.url}{path}', {CHECK_JSON}}}\n"
        f"    delay: {delay}\n    retries: {retries}\n    retryDelay: {retry_delay}\n"
    )


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def sequence(demo: DemoLambda) -> list[str]:
    """The calls received, in order; /ok calls named by their query (which task they are)."""
    return [c.path + (f"?{c.query}" if c.path == "/ok" else "") for c in demo.calls_snapshot()]


def test_check_fails_twice_then_succeeds(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    check = check_block(demo, "/check/c?fails=2", "300ms", 5, "200ms")
    oid = apply(
        runtime,
        taskset_yaml(demo, "s3", ["/ok?t1", "/ok?t2", "/ok?t3"], check, extra="  initialDelay: 200ms\n"),
    )
    doc = final(runtime, oid)
    assert doc["state"] == "completed"
    assert sequence(demo) == ["/ok?t1", "/check/c", "/check/c", "/check/c", "/ok?t2", "/check/c", "/ok?t3"]
    at = [c.at for c in demo.calls_snapshot()]
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    expected = [0.3, 0.2, 0.2, 0.0, 0.3, 0.0]
    for got, want in zip(gaps, expected, strict=True):
        assert want <= got < want + 1.0, f"gaps {gaps} vs {expected}"  # precision: benchmarks/
    keys = [c.idempotency_key for c in demo.calls_snapshot()]
    assert len(set(keys)) == 5, "one key per step: t1, check 1, t2, check 2, t3"
    assert keys[1] == keys[2] == keys[3]
    assert [c.attempt for c in demo.calls("/check")] == ["1", "2", "3", "1"]
    assert [(a["step"], a["attempt"], a["ok"]) for a in doc["attempts"]] == [
        ("task:0", 1, True),
        ("check:0", 1, False),
        ("check:0", 2, False),
        ("check:0", 3, True),
        ("task:1", 1, True),
        ("check:1", 1, True),
        ("task:2", 1, True),
    ]


def test_check_never_succeeds_runs_the_fallback(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    check = check_block(demo, "/check/never?fails=99", "100ms", 2, "100ms")
    oid = apply(runtime, taskset_yaml(demo, "never", ["/ok?t1", "/ok?t2"], check))
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert sequence(demo) == ["/ok?t1", "/check/never", "/check/never", "/check/never", "/ok?fallback"]
    assert doc["progress"]["failed_step"] == "check:0"
    assert "condition check after task 1 failed after 3 attempt(s)" in doc["progress"]["reason"]
    assert doc["attempts"][-1]["step"] == "fallback" and doc["attempts"][-1]["ok"]


def test_a_failing_task_runs_the_fallback_once(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    check = check_block(demo, "/check/fine", "0", 0, "0")
    oid = apply(runtime, taskset_yaml(demo, "broken", ["/ok?t1", "/fail", "/ok?t3"], check))
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert sequence(demo) == ["/ok?t1", "/check/fine", "/fail", "/ok?fallback"]
    assert doc["progress"]["failed_step"] == "task:1"
    assert doc["progress"]["reason"] == "task 2 failed after 1 attempt(s): status 500"
    failed = [a for a in doc["attempts"] if not a["ok"]]
    assert [(a["step"], a["status"]) for a in failed] == [("task:1", 500)]


def test_a_failing_fallback_is_shown(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(runtime, taskset_yaml(demo, "fb", ["/fail"], fallback="/code/503"))
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert "the fallback failed too: status 503" in doc["progress"]["reason"]
    assert (doc["attempts"][-1]["step"], doc["attempts"][-1]["status"]) == ("fallback", 503)


def test_cancel_while_scheduled_and_refused_after_the_first_call(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    waiting = apply(runtime, taskset_yaml(demo, "later", ["/ok?never"], extra="  initialDelay: 1h\n"))
    assert runtime.service.cancel(waiting, "admin").state == "cancelled"
    check = check_block(demo, "/check/slow", "500ms", 0, "0")
    started = apply(runtime, taskset_yaml(demo, "going", ["/ok?t1", "/ok?t2"], check))
    demo.wait_for(1, "/ok", timeout=10)
    with pytest.raises(Conflict, match="this one is running|first call has already started"):
        runtime.service.cancel(started, "admin")
    assert final(runtime, started)["state"] == "completed"
    assert sequence(demo) == ["/ok?t1", "/check/slow", "/ok?t2"]
    assert runtime.store.get(waiting)["state"] == "cancelled"


@pytest.mark.parametrize(("size", "check"), [(1, False), (20, True)])
def test_sizes_and_zero_delays(make_runtime, demo: DemoLambda, size: int, check: bool) -> None:
    runtime = make_runtime()
    block = check_block(demo, "/check/z", "0", 0, "0") if check else None
    oid = apply(
        runtime,
        taskset_yaml(
            demo, f"n{size}", [f"/ok?t{i}" for i in range(size)], block, extra="  initialDelay: 0s\n"
        ),
    )
    doc = final(runtime, oid)
    assert doc["state"] == "completed"
    expected = []
    for i in range(size):
        expected.append(f"/ok?t{i}")
        if check and i < size - 1:
            expected.append("/check/z")
    assert sequence(demo) == expected


# ----- kill -9 in the middle of a set


@pytest.mark.parametrize("moment", ["check retry wait", "call in flight"])
def test_kill_9_mid_set_resumes_where_it_was(tmp_path: Path, demo: DemoLambda, moment: str) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    check = check_block(demo, "/check/k?fails=2", "200ms", 3, "1500ms")
    # the second task sleeps so that a kill can land while it is in flight
    tasks = ["/ok?t1", "/sleep?ms=2500", "/ok?t3"]
    (specs / "set.yaml").write_text(taskset_yaml(demo, "k", tasks, check))
    expected = ["/ok?t1", "/check/k", "/check/k", "/check/k", "/sleep", "/check/k", "/ok?t3"]

    first = serve(state, specs, log)
    try:
        if moment == "check retry wait":
            # the first check's failure is written; the next check is 1.5 s away
            wait_until(lambda: "check:0 attempt 1 failed" in log.read_text(), timeout=30, what="first check")
        else:
            demo.wait_for(1, "/sleep", timeout=30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = serve(state, specs, log)
    try:
        demo.wait_for(1, "/ok", timeout=30)
        wait_until(lambda: [c for c in demo.calls_snapshot() if c.query == "t3"], timeout=40, what="t3")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    got = sequence(demo)
    calls = demo.calls_snapshot()
    if moment == "call in flight":
        # the call in flight at the kill is made again, with the same key and attempt number
        sleeps = [c for c in calls if c.path == "/sleep"]
        assert len(sleeps) == 2 and sleeps[0].idempotency_key == sleeps[1].idempotency_key
        got.remove("/sleep")
    assert got == expected, log.read_text()[-3000:]

    (doc,) = stored_objects(state)
    assert doc["state"] == "completed"
