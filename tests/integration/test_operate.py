"""Operating lambdaop: metrics to scrape, log lines people and machines can read, a CLI that
answers every mistake in one line.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from helpers import serve, wait_until
from lambdaop.cli.main import main
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def test_metrics_after_some_calls(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    text = "---\n".join(
        f"kind: Task\nmetadata: {{name: m{i}}}\nspec: {{invoke: '{demo.url}/{'ok' if i % 3 else 'fail'}'}}\n"
        for i in range(6)
    )
    ids = [runtime.applier.apply(obj, "admin").id for obj in load_one(text)]
    wait_until(lambda: all(runtime.store.get(i)["state"] in ("completed", "failed") for i in ids), timeout=20)  # type: ignore[index]
    assert requests.get(runtime.url + "/metrics", timeout=10).status_code == 401, "token-protected by default"
    body = requests.get(runtime.url + "/metrics", headers={"Authorization": f"Bearer {runtime.admin_token}"}, timeout=10).text  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(body)}
    calls = {(s.labels["kind"], s.labels["result"], s.labels["status"]): s.value for s in families["lambdaop_calls"].samples if s.name.endswith("_total")}  # fmt: skip
    assert calls == {("task", "ok", "2xx"): 4.0, ("task", "failed", "5xx"): 2.0}
    lateness = [s for s in families["lambdaop_lateness_seconds"].samples if s.name.endswith("_bucket")]
    assert lateness and max(s.value for s in lateness) == 6.0, "every call is in a lateness bucket"
    objects = {(s.labels["kind"], s.labels["state"]): s.value for s in families["lambdaop_objects"].samples}
    assert objects[("Task", "completed")] == 4 and objects[("Task", "failed")] == 2
    for name in ("lambdaop_call_duration_seconds", "lambdaop_reconcile_pass_seconds", "lambdaop_store_commit_seconds",
                 "lambdaop_calls_in_flight", "lambdaop_leases_held", "lambdaop_folder_apply_errors"):  # fmt: skip
        assert name in families, name
    public = make_runtime(metrics_public=True)
    assert requests.get(public.url + "/metrics", timeout=10).status_code == 200


def test_json_log_lines_name_the_object(tmp_path: Path, demo: DemoLambda) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "hello.yaml").write_text(
        f"kind: Task\nmetadata: {{name: hello}}\nspec: {{invoke: '{demo.url}/ok'}}\n"
    )
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdaop.cli", "serve", "--state-dir", str(state), "--specs", str(specs),
         "--port", "0", "--allow-hosts", "127.0.0.1", "--log-format", "json"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        line = wait_until(lambda: next((ln for ln in log.read_text().splitlines() if "completed after" in ln), None), timeout=30)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)
    record = json.loads(line)
    assert (
        record["message"]
        == "Task admin/hello completed after 1 attempt (200)" + record["message"].split("(200)")[1]
    )
    assert {record[k] for k in ("owner", "kind", "name", "step", "attempt")} == {
        "admin",
        "Task",
        "hello",
        "task",
        1,
    }
    assert {"ts", "level", "logger", "id"} <= set(record)
    lines = [json.loads(text) for text in log.read_text().splitlines()]  # every line is JSON
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in lines), lines[0][
        "ts"
    ]
    start = next(r for r in lines if r["message"] == "lambdaop starting")
    assert start["settings"]["store"].startswith("embedded") and start["settings"]["lease"] == "30s"
    assert any("serving http://127.0.0.1:" in r["message"] for r in lines), "the address, as a log line too"
    assert not [r for r in lines if r["logger"].startswith("watchfiles")], "no library chatter"


def test_text_log_lines_start_with_an_iso_time_and_settings_are_words(tmp_path: Path) -> None:
    specs, state, log = tmp_path / "specs", tmp_path / "state", tmp_path / "serve.log"
    specs.mkdir()
    proc = serve(state, specs, log, "--port", "0")
    try:
        wait_until(lambda: "serving http" in log.read_text(), timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
    lines = log.read_text().splitlines()
    assert all(
        re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) ", ln) for ln in lines
    ), lines
    start = next(ln for ln in lines if "lambdaop starting" in ln)
    assert "{" not in start and " lease=30s " in start and ' store="embedded (SecantusDB under ' in start
    assert any("SIGTERM: stopping" in ln for ln in lines)


def test_a_clean_restart_warns_of_nothing_and_a_call_in_flight_at_sigterm_is_logged(
    tmp_path: Path, demo: DemoLambda
) -> None:
    specs, state, log = tmp_path / "specs", tmp_path / "state", tmp_path / "serve.log"
    specs.mkdir()
    (specs / "slow.yaml").write_text(
        f"kind: Task\nmetadata: {{name: slow}}\nspec: {{invoke: '{demo.url}/sleep?ms=1500'}}\n"
    )
    (specs / "ahead.yaml").write_text(  # claimed ahead of its time, and not called yet at the stop
        f"kind: Task\nmetadata: {{name: ahead}}\nspec: {{invoke: '{demo.url}/ok?ahead', after: 10s}}\n"
    )
    proc = serve(state, specs, log, "--port", "0")
    try:
        demo.wait_for(1, "/sleep", timeout=30)  # the call is out: stop now
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    first = log.read_text()
    assert "Task admin/slow completed after 1 attempt (200)" in first, "its result is stored, and said"
    assert first.index("completed after 1 attempt") < first.index("lambdaop stopped")
    (specs / "later.yaml").write_text(
        f"kind: Task\nmetadata: {{name: later}}\nspec: {{invoke: '{demo.url}/ok', after: 1s}}\n"
    )
    proc = serve(state, specs, log, "--port", "0")  # the folder's new spec is applied at start...
    try:
        wait_until(lambda: "Task admin/later completed" in log.read_text(), timeout=30)
        wait_until(lambda: "Task admin/ahead completed" in log.read_text(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        # ...and nothing is due while it is down but `later` is done: now make one overdue
        (specs / "overdue.yaml").write_text(
            f"kind: Task\nmetadata: {{name: overdue}}\nspec: {{invoke: '{demo.url}/ok?overdue', at: '2026-01-01T00:00:00Z'}}\n"
        )
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    second_start = len(log.read_text())
    proc = serve(state, specs, log, "--port", "0")
    try:
        wait_until(lambda: "Task admin/overdue completed" in log.read_text()[second_start:], timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    restarts = log.read_text()[len(first) :]
    warnings = [ln for ln in restarts.splitlines() if " WARNING " in ln or " ERROR " in ln]
    assert warnings == [], "a clean stop and a start after it warn of nothing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_mistakes_get_one_helpful_line(make_runtime, tmp_path: Path, capsys: Any) -> None:
    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        mine = [
            line for line in err.splitlines() if not line[:4].isdigit()
        ]  # the service's own log lines aside
        return code, "\n".join(mine).strip()

    code, err = run("apply", "-f", str(tmp_path / "nothere.yaml"), "--token", "x")
    assert code == 2 and err == f"lambdaop: {tmp_path / 'nothere.yaml'}: no such file or folder"
    code, err = run("get", "tasks", "--server", f"http://127.0.0.1:{free_port()}", "--token", "x")
    assert code == 2 and "cannot reach" in err and "lambdaop serve" in err and len(err.splitlines()) == 1
    runtime = make_runtime()
    code, err = run("get", "tasks", "--server", runtime.url)
    assert (
        code == 1
        and err
        == "lambdaop: no token: pass --token or set LAMBDAOP_TOKEN; `lambdaop user token NAME` prints one"
    )
    code, err = run(
        "describe", "task", "hello", "--server", runtime.url, "--token", runtime.admin_token or ""
    )
    assert code == 1 and err.startswith("lambdaop: not found: you have no Task named or numbered 'hello'")
    code, err = run("get", "jobs", "--server", runtime.url)
    assert code == 2  # argparse's own one-line usage error
    state = tmp_path / "state"
    code, _ = run("user", "add", "bob", "--state-dir", str(state))
    assert code == 0, "options after the verb"
    code, _ = run("--state-dir", str(state), "user", "list")
    assert code == 0, "and before it"


def test_the_dashboard_counts_what_comes_and_what_was_called(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    s.post(runtime.url + "/scheduler/schedule", json={"url": demo.url + "/ok", "name": "soon", "delay": 600_000}, timeout=10)  # fmt: skip
    s.post(runtime.url + "/scheduler/schedule", json={"url": demo.url + "/ok", "name": "now"}, timeout=10)
    demo.wait_for(1, "/ok")
    body = wait_until(  # the list of what comes is read before the counts: wait for both to settle
        lambda: (
            (b := s.get(runtime.url + "/dashboard", timeout=10).json())["counts"]["Task"].get("completed")
            and [u["name"] for u in b["upcoming"]] == ["soon"]
            and b
        )
    )
    assert body["counts"]["Task"]["scheduled"] == 1
    assert len(body["callsPerMinute"]) == 60 and body["callsPerMinute"][-1]["ok"] == 1
    time.sleep(0)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_format_is_accepted_everywhere(fmt: str, capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(
        "kind: Task\nmetadata: {name: a}\nspec: {invoke: 'https://example.com/x'}\n"
    )
    assert main(["validate", str(tmp_path), "--log-format", fmt]) == 0
