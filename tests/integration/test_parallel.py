"""Parallel steps end to end: branches at a real loopback endpoint that counts calls in flight.

The endpoint here answers `/work?b=I&ms=N` after N ms with `{"branch": I}`,
`/fail` with a 500, and `/echo` with what it was sent; it counts how many
requests it is serving at once. A `serve` process killed with SIGKILL in the
middle of a parallel step goes on from its stored lanes once restarted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import requests

from helpers import Counting, final, serve, stored_objects, wait_until
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def fanout(url: str, branches: list[str], limit: int, extra: str = "") -> str:
    listed = "\n".join(f"          - - {{name: work, invoke: '{url}{path}'{extra if 'fail' in path else ''}}}" for path in branches)  # fmt: skip
    return f"""\
kind: TaskSet
metadata: {{name: fan}}
spec:
  steps:
    - name: fan
      parallel:
        maxConcurrency: {limit}
        branches:
{listed}
    - name: report
      invoke: {{url: '{url}/echo', method: POST, body: {{branches: "${{{{ steps.fan.output }}}}"}}}}
  fallback:
    invoke: {{url: '{url}/echo', method: POST, body: {{fallback: "${{{{ steps.fan.branches }}}}"}}}}
"""


def test_ten_branches_with_max_concurrency_three_never_have_more_than_three_out(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    oid = apply(runtime, fanout(endpoint.url, [f"/work?b={i}&ms=300" for i in range(10)], 3))
    shown = f"{runtime.url}/tasksets/{oid}"
    auth = {"Authorization": f"Bearer {runtime.admin_token}"}
    lanes = wait_until(lambda: requests.get(shown, headers=auth, timeout=30).json().get("branches"), 30, 0.05)
    assert len(lanes) == 10 and sum(lane["state"] == "active" for lane in lanes) <= 3, lanes
    doc = final(runtime, oid, timeout=60)
    assert doc["state"] == "completed", doc["progress"]
    assert endpoint.most == 3, "three branches run at once, never more"
    assert sorted(int(q["b"]) for _, q, _ in endpoint.calls("/work")) == list(range(10))
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"branches": [{"branch": i} for i in range(10)]}, (
        "steps.fan.output[i] is branch i's answer"
    )
    steps = [a["step"] for a in doc["attempts"]]
    assert (
        sorted(steps[:10]) == sorted(f"step:fan/{i}/work" for i in range(10)) and steps[10] == "step:report"
    )
    assert len({a["key"] for a in doc["attempts"]}) == 11, "each branch's call has its own Idempotency-Key"


def test_a_place_freed_is_taken_at_once_while_a_slow_branch_is_still_out(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    paths = ["/work?b=0&ms=3000", "/work?b=1&ms=50", "/work?b=2&ms=50", "/work?b=3&ms=50"]
    oid = apply(runtime, fanout(endpoint.url, paths, 2))
    doc = final(runtime, oid, timeout=60)
    assert doc["state"] == "completed", doc["progress"]
    events = endpoint.events
    assert events.index(("start", "3")) < events.index(("end", "0")), events
    assert endpoint.most == 2
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"branches": [{"branch": i} for i in range(4)]}


def test_mode_all_with_a_failing_branch_ends_failed_and_runs_the_fallback(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    paths = ["/work?b=0&ms=50", "/fail", "/work?b=2&ms=50", "/work?b=3&ms=50", "/work?b=4&ms=50"]
    oid = apply(runtime, fanout(endpoint.url, paths, 2, ", retries: 1, retryDelay: 50ms"))
    doc = final(runtime, oid, timeout=60)
    assert doc["state"] == "failed"
    assert doc["progress"]["reason"] == (
        "branch 1 of step fan failed: step work failed after 2 attempt(s): status 500"
    ), doc["progress"]["reason"]
    assert doc["progress"]["failed_step"] == "step:fan/1/work"
    ((_, _, told),) = endpoint.calls("/echo")
    assert told["fallback"][1] == "failed", told
    assert "cancelled" in told["fallback"], "the branches not started were cancelled"
    assert len(endpoint.calls("/fail")) == 2, "the failing branch was retried before the step failed"
    assert len(endpoint.calls("/work")) < 4, "branches not started when the step failed never ran"
    assert [a["step"] for a in doc["attempts"]][-1] == "fallback"


def test_kill_9_in_the_middle_of_a_parallel_step_goes_on_from_the_stored_lanes(
    tmp_path: Path, endpoint: Counting
) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    (specs / "fan.yaml").write_text(fanout(endpoint.url, [f"/work?b={i}&ms=1500" for i in range(6)], 2))
    first = serve(state, specs, log)
    try:
        # branch 3 starts once the results of 0 and 1 are both stored (two places, both freed)
        wait_until(lambda: len(endpoint.calls("/work")) >= 4, 40, what="branches 2 and 3 to start")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = serve(state, specs, log)
    try:
        wait_until(lambda: endpoint.calls("/echo"), 60, what="the step after the parallel one")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    (doc,) = stored_objects(state)
    assert doc["state"] == "completed", log.read_text()[-3000:]
    calls = [q for _, q, _ in endpoint.calls("/work")]
    once = [int(q["b"]) for q in calls]
    assert once.count(0) == once.count(1) == 1, "their results were stored before the kill: not made again"
    assert set(once) == set(range(6))
    again = [q["key"] for q in calls if q["b"] in ("2", "3")]
    assert len(set(again)) == 2, "a call made again carries the same Idempotency-Key per branch"
    assert endpoint.most <= 2 + 2, (
        "the killed process's calls may still be answered while the next ones leave"
    )
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"branches": [{"branch": i} for i in range(6)]}


def test_mode_any_ends_on_the_first_branch_that_succeeds(make_runtime, endpoint: Counting) -> None:
    runtime = make_runtime()
    text = fanout(endpoint.url, ["/fail", "/work?b=1&ms=50", "/work?b=2&ms=50"], 1)
    oid = apply(runtime, text.replace("maxConcurrency: 1", "maxConcurrency: 1\n        mode: any"))
    doc = final(runtime, oid, timeout=60)
    assert doc["state"] == "completed", doc["progress"]
    assert [q["b"] for _, q, _ in endpoint.calls("/work")] == ["1"], "branch 2 never started: branch 1 won"
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"branches": [None, {"branch": 1}, None]}
    shown = requests.get(f"{runtime.url}/tasksets/{oid}", headers={"Authorization": f"Bearer {runtime.admin_token}"}, timeout=30)  # fmt: skip
    assert shown.json()["outputs"]["fan"]["branches"] == ["failed", "done", "cancelled"]


def test_a_run_ended_by_its_parallel_step_is_listed_and_its_re_run_runs_every_branch(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    text = f"""\
kind: TaskSet
metadata: {{name: last}}
spec:
  steps:
    - name: first
      invoke: '{endpoint.url}/echo'
    - name: fan
      parallel:
        branches:
          - - {{name: work, invoke: '{endpoint.url}/work?b=0&ms=50'}}
          - - {{name: work, invoke: '{endpoint.url}/fail'}}
"""
    oid = apply(runtime, text)
    doc = final(runtime, oid, timeout=60)
    assert doc["state"] == "failed" and doc["progress"]["failed_step"] == "step:fan/1/work", doc["progress"]
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    listed = wait_until(
        lambda: s.get(f"{runtime.url}/runs", timeout=10).json()["runs"], 5, what="the run listed"
    )
    assert [(r["result"], r["failedStep"]) for r in listed] == [("failed", "step:fan")], listed
    again = s.post(f"{runtime.url}/tasksets/{oid}/rerun", json={}, timeout=10)
    assert again.status_code == 200, again.text
    wait_until(lambda: len(endpoint.calls("/fail")) == 2, 30, what="the re-run's failing branch")
    wait_until(
        lambda: len(s.get(f"{runtime.url}/runs", timeout=10).json()["runs"]) == 2, 30, what="both runs listed"
    )
    assert len(endpoint.calls("/echo")) == 1, "the step before the parallel one is not called again"
    assert [q["b"] for _, q, _ in endpoint.calls("/work")] == ["0", "0"], "every branch runs again"
    assert endpoint.calls("/fail")[1][1]["key"] == f"{oid}-g1-rerun1-step:fan/1/work"
