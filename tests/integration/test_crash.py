"""kill -9 of `lambdaop serve` (embedded store) while Tasks are scheduled and one is mid-call."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
from pathlib import Path

import requests

from helpers import serve, stored_objects, wait_until
from lambdaop.tools.demo import DemoLambda


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_kill_9_loses_nothing_and_reruns_the_interrupted_call(tmp_path: Path, demo: DemoLambda) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    first = serve(state, specs, log)
    try:
        # the due times count from when it serves (a start takes as long as a busy machine makes it);
        # the watched folder brings the file in
        wait_until(lambda: "serving http" in log.read_text(), timeout=60, what="serve to start")
        t0 = time.time() + 2
        due = {"mid": t0, "a": t0 + 2, "b": t0 + 4, "d": t0 + 12}
        docs = []
        for name, at in due.items():
            url = f"{demo.url}/sleep?ms=4000" if name == "mid" else f"{demo.url}/ok?{name}"
            docs.append(
                f"kind: Task\nmetadata: {{name: {name}}}\nspec:\n  invoke: '{url}'\n  at: {iso(at)}\n"
            )
        (specs / "crash.yaml").write_text("---\n".join(docs))
        (mid_call,) = demo.wait_for(1, "/sleep", timeout=30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert not demo.calls("/ok"), "nothing else was due before the kill"

    # stay down until a and b are overdue
    wait_until(lambda: time.time() > due["b"] + 0.5, timeout=30, what="a and b to become overdue")
    restarted = time.time()
    second = serve(state, specs, log)
    try:
        wait_until(
            lambda: log.read_text().count("reconcile loop started") == 2, timeout=60, what="the restart"
        )
        ready = time.time()
        calls = demo.wait_for(2, "/sleep", timeout=30)
        assert calls[1].idempotency_key == mid_call.idempotency_key
        assert calls[1].attempt == mid_call.attempt == "1"
        demo.wait_for(3, "/ok", timeout=30)
        oks = {c.query: c for c in demo.calls("/ok")}
        assert set(oks) == {"a", "b", "d"}
        assert oks["a"].at > due["b"] and oks["b"].at > due["b"], "overdue work ran at once after the restart"
        # d runs at its time, or at once if the restart took longer than that
        took = f"the restart took {ready - restarted:.1f}s"
        if ready < due["d"]:
            assert due["d"] <= oks["d"].at < due["d"] + 2.0, (
                f"d ran {oks['d'].at - due['d']:.3f}s off its time; {took}"
            )
        else:
            assert oks["d"].at < ready + 0.5, f"overdue d did not run at once; {took}"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert second.returncode == 0, log.read_text()[-3000:]
    assert len(demo.calls("/sleep")) == 2 and len(demo.calls("/ok")) == 3

    docs_by_name = {d["name"]: d for d in stored_objects(state)}
    assert {n: d["state"] for n, d in docs_by_name.items()} == dict.fromkeys(due, "completed")
    (mid,) = docs_by_name["mid"]["attempts"]  # the interrupted call never reported: one recorded call
    assert mid["ok"] and mid["key"] == mid_call.idempotency_key
    assert "restarted while its call was due or in flight" in mid["recovered"]


def test_kill_9_after_the_claim_before_the_call_runs_each_task_once_at_its_time(
    tmp_path: Path, demo: DemoLambda
) -> None:
    """Work claimed ahead (held in memory, due later) is neither lost nor fired early by a restart."""
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    flags = ("--port", "0", "--metrics-public", "--claim-window", "60s")
    first = serve(state, specs, log, *flags)
    try:
        port = wait_until(
            lambda: re.search(r"serving http://127\.0\.0\.1:(\d+)", log.read_text()),
            60,
            what="serve to start",
        )
        metrics = f"http://127.0.0.1:{port.group(1)}/metrics"
        # due well after a restart that begins now (the times count from when it serves)
        due = time.time() + 10
        (specs / "ahead.yaml").write_text(
            "---\n".join(
                f"kind: Task\nmetadata: {{name: t{i}}}\nspec:\n  invoke: '{demo.url}/ok?t{i}'\n  at: {iso(due)}\n"
                for i in range(50)
            )
        )

        def held() -> bool:
            text = requests.get(metrics, timeout=5).text
            return "lambdaop_leases_held 50.0" in text

        wait_until(held, timeout=30, what="the 50 Tasks to be claimed ahead")
        assert time.time() < due - 2, "claimed well before the due time"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert not demo.calls("/ok"), "nothing was due before the kill"
    second = serve(state, specs, log, *flags)
    try:
        calls = demo.wait_for(50, "/ok", timeout=60)
        assert min(c.at for c in calls) >= due, "claimed work does not run before its time"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert second.returncode == 0, log.read_text()[-3000:]
    assert sorted(c.query for c in demo.calls("/ok")) == sorted(f"t{i}" for i in range(50))
    assert {d["state"] for d in stored_objects(state)} == {"completed"}


def test_kill_9_right_after_a_burst_of_creations_loses_none_that_were_answered_201(tmp_path: Path) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    service = serve(state, specs, log, "--port", "0")
    answered: list[str] = []
    try:
        found = wait_until(lambda: re.search(r"serving (http://[^\s;]+)", log.read_text()), timeout=60, what="serve to start")  # fmt: skip
        url = found.group(1) + "/scheduler/schedule"
        headers = {"Authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"}
        stop = threading.Event()

        def burst() -> None:  # creations from 8 clients at once share commits
            with requests.Session() as s:
                while not stop.is_set():
                    try:
                        r = s.post(url, json={"url": "http://127.0.0.1:9/ok", "delay": 3_600_000}, headers=headers, timeout=10)  # fmt: skip
                    except requests.RequestException:
                        return  # the service is gone
                    if r.status_code == 201:
                        answered.append(r.json()["id"])

        clients = [threading.Thread(target=burst) for _ in range(8)]
        for c in clients:
            c.start()
        wait_until(lambda: len(answered) >= 200, timeout=60, what="200 creations answered")
        # the service and its store die together, mid-burst: only what is on disk survives
        store_pid = int((state / "secantusd.pid").read_text())
        os.kill(service.pid, signal.SIGKILL)
        os.kill(store_pid, signal.SIGKILL)
        stop.set()
        for c in clients:
            c.join(30)
        service.wait(10)
    finally:
        if service.poll() is None:
            service.kill()
    stored = {d["_id"] for d in stored_objects(state)}
    lost = [oid for oid in answered if oid not in stored]
    assert not lost, f"{len(lost)} of {len(answered)} creations answered 201 are not stored"
