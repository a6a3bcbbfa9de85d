"""A dying, stalled or full store never turns lambdaop into a silent zombie: `lambdaop serve` on the
embedded store as a child process, the store killed, stopped or starved of disk under it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from helpers import serve, wait_until
from lambdaop.tools.demo import DemoLambda


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tasks(demo: DemoLambda, first: float, count: int, rate: float) -> str:
    return "---\n".join(
        f"kind: Task\nmetadata: {{name: t{i}}}\nspec:\n  invoke: '{demo.url}/ok?i={i}'\n  at: {iso(first + i / rate)}\n"
        for i in range(count)
    )


class Served:
    """`lambdaop serve` on a free port, its URL and token read from what it prints and writes."""

    def __init__(self, tmp: Path, demo: DemoLambda, state: Path | None = None, *extra: str) -> None:
        self.state, self.specs, self.log = state or tmp / "state", tmp / "specs", tmp / "serve.log"
        self.specs.mkdir(exist_ok=True)
        self.process = serve(self.state, self.specs, self.log, "--port", "0", *extra)
        found = wait_until(lambda: re.search(r"serving (http://[^\s;]+)", self.log.read_text()), timeout=60, what="serve to start")  # fmt: skip
        self.url = found.group(1)
        self.headers = {"Authorization": f"Bearer {(self.state / 'admin.token').read_text().strip()}"}

    def store_pid(self) -> int:
        return int((self.state / "secantusd.pid").read_text())

    def ready(self) -> int:
        try:
            return requests.get(self.url + "/readyz", timeout=1.0).status_code
        except requests.RequestException:
            return 0  # no answer within a second

    def create(self, url: str, delay_ms: int = 3_600_000) -> requests.Response:
        return requests.post(self.url + "/scheduler/schedule", json={"url": url, "delay": delay_ms}, headers=self.headers, timeout=5)  # fmt: skip

    def metric(self, name: str) -> float:
        text = requests.get(self.url + "/metrics", headers=self.headers, timeout=10).text
        found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        return float(found.group(1)) if found else -1.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -9


def keys_by_call(demo: DemoLambda) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for call in demo.calls("/ok"):
        out.setdefault(call.query, set()).add(call.idempotency_key or "")
    return out


def test_a_killed_store_is_started_again_and_every_due_call_is_made(tmp_path: Path, demo: DemoLambda) -> None:
    # calls fall due for 18 s, 30 a second, claimed 3 s ahead (not the embedded store's 15 s): those
    # due from 3 s after the kill on are claimed from the store once it runs again
    first, count, rate, window = time.time() + 6, 540, 30.0, 3.0
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "stream.yaml").write_text(tasks(demo, first, count, rate))
    served = Served(tmp_path, demo, None, "--claim-window", f"{window:g}s")
    try:
        demo.wait_for(60, "/ok", timeout=30)
        old = served.store_pid()
        os.kill(old, signal.SIGKILL)
        killed = time.time()
        answers = []
        while time.time() < killed + 20:
            answers.append((time.time() - killed, served.ready()))
            if answers[-1][1] == 200 and any(code != 200 for _, code in answers):
                break
            time.sleep(0.05)
        assert any(code == 503 for _, code in answers), (
            f"/readyz never said the store was away: {answers[:5]}"
        )
        away = next(i for i, (_, code) in enumerate(answers) if code != 200)
        back = next(t for t, code in answers[away:] if code == 200)  # ready again after it was not
        assert back < 5.0, f"the store ran again only after {back:.1f}s"
        assert served.store_pid() != old
        assert first + count / rate > killed + back + 3 * window, "calls fall due long after the restart"
        wait_until(lambda: len(keys_by_call(demo)) >= count, timeout=60, what="every due call to be made")
        calls = keys_by_call(demo)
        assert sorted(calls) == sorted(f"i={i}" for i in range(count)), "a due call was lost"
        assert all(len(keys) == 1 for keys in calls.values()), "a call made again carried another key"
        late: dict[str, float] = {}  # of the calls due after the kill: how late each first left
        for call in demo.calls("/ok"):
            due = first + int(call.query.removeprefix("i=")) / rate
            if due > killed:
                late[call.query] = min(late.get(call.query, call.at - due), call.at - due)
        assert len(late) > count / 2, sorted(late)[:3]
        worst = max(late, key=late.__getitem__)
        assert late[worst] < back + 5.0, (
            f"{worst} left {late[worst]:.1f}s late; the store ran again {back:.1f}s after the kill"
        )
        assert served.metric("lambdaop_store_restarts_total") == 1.0
        assert served.create(demo.url + "/ok?after").status_code == 201
    finally:
        assert served.stop() == 0, served.log.read_text()[-3000:]
    assert "the embedded store stopped (signal 9); starting it again" in served.log.read_text()


def test_a_stalled_store_is_answered_at_once_and_its_results_are_stored_after(
    tmp_path: Path, demo: DemoLambda
) -> None:
    first = time.time() + 6
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "stream.yaml").write_text(tasks(demo, first, 300, 50.0))  # due during the stall
    served = Served(tmp_path, demo)
    pid = served.store_pid()
    try:
        wait_until(lambda: time.time() > first - 1, timeout=20)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(3)  # the health monitor has noticed (two probes in a row)
            t0 = time.monotonic()
            ready = requests.get(served.url + "/readyz", timeout=5)
            assert time.monotonic() - t0 < 1.0 and ready.status_code == 503, ready.text
            assert "the store does not answer" in ready.json()["message"]
            t0 = time.monotonic()
            created = served.create(demo.url + "/ok?during")
            assert time.monotonic() - t0 < 1.0 and created.status_code == 503, created.text
            assert created.headers.get("Retry-After") and created.json()["error"] == "store_unavailable"
            assert requests.get(served.url + "/healthz", timeout=5).status_code == 200, (
                "alive: it keeps firing"
            )
            wait_until(lambda: time.time() > first + 300 / 50.0, timeout=20)
        finally:
            os.kill(pid, signal.SIGCONT)
        calls = demo.wait_for(300, "/ok", timeout=30)
        assert len({c.query for c in calls}) == 300
        assert sum(1 for c in calls if c.at < first + 6) > 200, (
            "the calls due during the stall left during it"
        )
        wait_until(lambda: served.ready() == 200, timeout=20)
        counts = wait_until(lambda: (c := requests.get(served.url + "/tasks?limit=1", headers=served.headers, timeout=10).json()["counts"]).get("completed") == 300 and c, timeout=30)  # fmt: skip
        assert counts.get("scheduled", 0) == 0
        assert served.create(demo.url + "/ok?after").status_code == 201
    finally:
        assert served.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root (CI runs as root)")
def test_a_full_disk_refuses_new_work_clearly_loses_nothing_and_recovers(
    tmp_path: Path, demo: DemoLambda
) -> None:
    state = tmp_path / "small"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(state)], check=True)
    served = None
    try:
        served = Served(tmp_path, demo, state=state)
        soon = [served.create(f"{demo.url}/ok?soon{i}", delay_ms=6000 + 100 * i) for i in range(10)]
        assert all(r.status_code == 201 for r in soon), [r.text for r in soon]
        accepted = []
        for i in range(20):
            r = served.create(f"{demo.url}/ok?before{i}")
            assert r.status_code == 201, r.text
            accepted.append(r.json()["id"])
        filler = state / "filler"
        with filler.open("wb") as f:  # leave the store a few MB
            free = shutil.disk_usage(state).free
            f.write(b"\0" * max(0, free - 8 * 1024 * 1024))
        seen: list[int] = []

        def full() -> list[requests.Response]:  # (a Response of an error is falsy)
            r = served.create(f"{demo.url}/ok?full")
            seen.append(r.status_code)
            if r.status_code == 201:
                accepted.append(r.json()["id"])  # taken before the disk was seen full: kept
            return [r] if r.status_code == 507 else []

        (refused,) = wait_until(full, timeout=10, what="a 507")
        assert set(seen) <= {201, 507}, seen
        assert "disk" in refused.json()["message"] and str(state) in refused.json()["message"]
        assert refused.headers.get("Retry-After")
        assert served.ready() == 503
        # now the disk fills up entirely while calls taken earlier come due: their results wait
        with (state / "filler2").open("wb") as f, contextlib.suppress(OSError):  # until not a byte more fits
            while True:
                f.write(b"\0" * 1024 * 1024)
                f.flush()
        demo.wait_for(10, "/ok", timeout=20)  # the calls leave from memory, disk or not
        time.sleep(2)
        (state / "filler2").unlink()
        filler.unlink()
        (after,) = wait_until(lambda: [r] if (r := served.create(f"{demo.url}/ok?after")).status_code == 201 else [], timeout=30)  # fmt: skip
        accepted.append(after.json()["id"])
        for oid in accepted:
            got = requests.get(f"{served.url}/tasks/{oid}", headers=served.headers, timeout=10)
            assert got.status_code == 200 and got.json()["state"] == "scheduled", got.text
        for r in soon:  # every result written once there is room again
            wait_until(lambda r=r: requests.get(f"{served.url}/tasks/{r.json()['id']}", headers=served.headers, timeout=10).json()["state"] == "completed", timeout=60, what="a result written after the disk was freed")  # fmt: skip
    finally:
        code = served.stop() if served is not None else 0
        subprocess.run(["umount", "-l", str(state)], check=False)
    assert code == 0


def test_a_store_that_cannot_be_started_again_ends_serve_with_one_clear_line(
    tmp_path: Path, demo: DemoLambda
) -> None:
    served = Served(tmp_path, demo)
    try:
        for _ in range(6):  # it dies again and again: after a few, serve gives up
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(served.store_pid(), signal.SIGKILL)
            time.sleep(1.2)
            if served.process.poll() is not None:
                break
        code = served.process.wait(60)
    finally:
        served.stop()
    assert code == 1
    lines = served.log.read_text().strip().splitlines()
    last = lines[-1]
    assert (
        "CRITICAL" in last
        and "lambdaop stopped: the embedded store stopped" in last
        and "times within 60s" in last
    ), last
    gave_up = next(line for line in lines if "is not started again" in line)
    took = dt.datetime.fromisoformat(last.split()[0]) - dt.datetime.fromisoformat(gave_up.split()[0])
    assert took < dt.timedelta(seconds=10), f"it took {took} to stop: a store that is gone is not waited for"
