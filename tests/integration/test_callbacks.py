"""waitForCallback end to end: the endpoint is handed a signed URL, and the test POSTs to it.

A real loopback endpoint (`helpers.Counting`) receives the call with
`${{ callback.url }}` in its body; the test then POSTs to that URL on the
real API, as the system being waited for would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import requests

from helpers import Counting, final, serve, stored_objects, wait_until
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def approval(url: str, timeout: str = "1m", retries: int = 0) -> str:
    return f"""\
kind: TaskSet
metadata: {{name: approval}}
spec:
  steps:
    - name: approve
      waitForCallback:
        invoke: {{url: '{url}/ask', method: POST, body: {{reply: "${{{{ callback.url }}}}"}}}}
        timeout: {timeout}
        heartbeat: 5m
      retries: {retries}
    - name: after
      invoke: {{url: '{url}/echo', method: POST, body: {{by: "${{{{ steps.approve.output.by }}}}"}}}}
  fallback:
    invoke: {{url: '{url}/undo', method: POST, body: {{failed: "${{{{ steps.approve.ok }}}}"}}}}
"""


def handed(endpoint: Counting) -> str:
    """The callback URL the waiting step's call handed the endpoint."""
    calls = wait_until(lambda: endpoint.calls("/ask"), 30, what="the call with the callback URL")
    url: str = calls[-1][2]["reply"]
    return url


def post(url: str, body: Any) -> requests.Response:
    return requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30)


def test_the_callback_completes_the_step_and_its_output_feeds_the_next(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    oid = apply(runtime, approval(endpoint.url))
    url = handed(endpoint)
    assert url.startswith(f"{runtime.url}/callbacks/")
    token = url.rsplit("/", 1)[1]
    forged = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    assert post(forged, {"status": "success"}).status_code == 403, "a forged token is refused"
    other = url.replace(token.split(".")[0], "0" * len(token.split(".")[0]))
    assert post(other, {"status": "success"}).status_code == 403, "a token is for its object alone"
    bad = post(url, {"status": "done"})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "status"
    beat = post(url, {"status": "heartbeat"})
    assert beat.status_code == 200 and beat.json()["verdict"] == "extended", beat.text
    ok = post(url, {"status": "success", "output": {"by": "ana", "note": "fine"}})
    assert ok.status_code == 200 and ok.json()["verdict"] == "accepted", ok.text
    assert post(url, {"status": "success"}).status_code == 403, "the URL is single-use"
    doc = final(runtime, oid, timeout=30)
    assert doc["state"] == "completed", doc["progress"]
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"by": "ana"}, "the next step read the callback's output"
    assert [(a["step"], a["ok"]) for a in doc["attempts"]] == [
        ("step:approve", True),
        ("callback:approve", True),
        ("step:after", True),
    ]
    stored = json.dumps(doc, default=str) + json.dumps(runtime.store.history(oid), default=str)
    assert token.split(".")[-1] not in stored, "the callback token is kept nowhere"


def test_a_target_that_calls_back_before_it_answers_completes_the_step(
    make_runtime, endpoint: Counting
) -> None:
    runtime = make_runtime()
    oid = apply(runtime, approval(endpoint.url).replace("/ask'", "/answer-first'"))
    doc = final(runtime, oid, timeout=30)
    assert doc["state"] == "completed", doc["progress"]
    ((_, _, asked),) = endpoint.calls("/answer-first")
    assert [(a["step"], a["ok"]) for a in doc["attempts"]] == [
        ("callback:approve", True),
        ("step:approve", True),
        ("step:after", True),
    ], "the callback came while its call was out: the call's answer applied it"
    assert '"calledBack": 200' in doc["attempts"][1]["response"]
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"by": "quick"}, "the callback's output, not the call's answer, is the step's output"


def test_heartbeats_keep_a_short_wait_going_past_its_timeout(make_runtime, endpoint: Counting) -> None:
    runtime = make_runtime()
    oid = apply(runtime, approval(endpoint.url, timeout="2s").replace("heartbeat: 5m", "heartbeat: 20s"))
    url = handed(endpoint)
    ends = wait_until(lambda: runtime.store.get(oid)["progress"].get("waiting_until"), 30, what="the wait")
    beat = post(url, {"status": "heartbeat"})
    assert beat.status_code == 200 and beat.json()["verdict"] == "extended", beat.text
    moved = dt.datetime.fromisoformat(beat.json()["waitingUntil"].replace("Z", "+00:00"))
    assert moved > ends + dt.timedelta(seconds=10), "the heartbeat moved the end of the wait 20s on"
    wait_until(
        lambda: dt.datetime.now(dt.UTC) > ends + dt.timedelta(seconds=1), 30, what="the first end to pass"
    )
    done = post(url, {"status": "success", "output": {"by": "still-waited-for"}})
    assert done.status_code == 200, done.text
    doc = final(runtime, oid, timeout=30)
    assert doc["state"] == "completed", doc["progress"]
    assert [a["step"] for a in doc["attempts"]] == ["step:approve", "callback:approve", "step:after"]


def test_no_callback_in_time_is_a_timeout_that_runs_the_fallback(make_runtime, endpoint: Counting) -> None:
    runtime = make_runtime()
    oid = apply(runtime, approval(endpoint.url, timeout="1s", retries=1))
    first = handed(endpoint)
    wait_until(lambda: len(endpoint.calls("/ask")) == 2, 30, what="the retry with a new URL")
    second = handed(endpoint)
    assert second != first, "a retry hands out a new URL"
    doc = final(runtime, oid, timeout=30)
    assert doc["state"] == "failed"
    assert doc["progress"]["reason"] == "step approve failed after 2 attempt(s): no callback within 1s"
    ((_, _, told),) = endpoint.calls("/undo")
    assert told == {"failed": False}
    late = post(second, {"status": "success", "output": {"by": "too-late"}})
    assert late.status_code == 410, late.text
    history = runtime.store.history(oid)
    assert history[-1]["step"] == "callback:approve"
    assert history[-1]["error"] == "arrived after the wait had timed out; ignored"
    assert runtime.store.get(oid)["state"] == "failed", "a late callback changes nothing"
    assert endpoint.calls("/echo") == []


def test_runs_ended_by_a_callback_or_by_its_timeout_are_listed(make_runtime, endpoint: Counting) -> None:
    runtime = make_runtime()
    last = f"""\
kind: TaskSet
metadata: {{name: NAME}}
spec:
  schedule: {{every: 1h}}
  steps:
    - name: approve
      waitForCallback:
        invoke: {{url: '{endpoint.url}/ask', method: POST, body: {{reply: "${{{{ callback.url }}}}"}}}}
        timeout: TIMEOUT
"""
    answered = apply(runtime, last.replace("NAME", "answered").replace("TIMEOUT", "1m"))
    url = handed(endpoint)
    assert post(url, {"status": "success", "output": {"by": "ana"}}).status_code == 200
    unanswered = apply(runtime, last.replace("NAME", "unanswered").replace("TIMEOUT", "1s"))
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"

    def listed() -> dict[str, tuple[str, str | None]] | None:
        runs = s.get(f"{runtime.url}/runs", timeout=10).json()["runs"]
        out = {r["object"]["name"]: (r["result"], r.get("failedStep")) for r in runs}
        return out if len(out) == 2 else None

    runs = wait_until(listed, 30, what="both runs listed")
    assert runs == {"answered": ("completed", None), "unanswered": ("failed", "step:approve")}, runs
    done = runtime.store.get(answered)
    assert done["state"] == "scheduled" and done["runs"][-1]["result"] == "completed", done.get("runs")
    assert runtime.store.get(unanswered)["runs"][-1]["result"] == "failed"


def test_kill_9_while_waiting_then_the_callback_completes_the_set(tmp_path: Path, endpoint: Counting) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    (specs / "approval.yaml").write_text(approval(endpoint.url, timeout="10m"))
    first = serve(state, specs, log)
    try:
        url = handed(endpoint)
        wait_until(lambda: "waiting_until" in _progress(state, first), 30, what="the wait to be stored")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    start = len(log.read_text())
    second = serve(state, specs, log)
    try:
        found = wait_until(lambda: re.search(r"API listening on (http://\S+)", log.read_text()[start:]), 60)
        token = url.rsplit("/", 1)[1]
        answer = post(f"{found.group(1)}/callbacks/{token}", {"status": "success", "output": {"by": "bo"}})
        assert answer.status_code == 200, answer.text
        wait_until(lambda: endpoint.calls("/echo"), 40, what="the step after the wait")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    ((_, _, body),) = endpoint.calls("/echo")
    assert body == {"by": "bo"}
    assert len(endpoint.calls("/ask")) == 1, "the wait was stored: its call was not made again"
    (doc,) = stored_objects(state)
    assert doc["state"] == "completed", log.read_text()[-3000:]


def _progress(state: Path, proc: Any) -> dict[str, Any]:
    """The stored progress, read through the running server's API (its admin token is in the state folder)."""
    text = (state.parent / "serve.log").read_text()
    found = re.search(r"API listening on (http://\S+)", text)
    if found is None:
        return {}
    token = (state / "admin.token").read_text().strip()
    r = requests.get(f"{found.group(1)}/tasksets", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    items = r.json().get("taskSets") or []
    return {"waiting_until": True} if items and items[0].get("waitingUntil") else {}
