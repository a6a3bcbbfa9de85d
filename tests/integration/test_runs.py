"""Runs you can act on, end to end: run now, re-run, backfill, pause by selector, the runs list.
Real store, real loopback endpoints, the real API."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import requests

from helpers import Counting, quiet_minute, wait_until
from lambdaop.core.clock import iso
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def apply(runtime: Any, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def api(runtime: Any) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    return s


def test_run_now_on_an_hourly_task_calls_once_and_keeps_its_next_run(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: hourly}}\nspec:\n  invoke: '{demo.url}/ok'\n  schedule: {{every: 1h}}\n")  # fmt: skip
    demo.wait_for(1, "/ok", timeout=20)  # an `every` schedule's first run is when it is applied
    s = api(runtime)
    before = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["state"] == "scheduled" and d["lastRun"] and d)  # fmt: skip
    answer = s.post(runtime.url + f"/tasks/{oid}/run", timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["action"] == "extra" and "schedule is unchanged" in body["message"]
    calls = demo.wait_for(2, "/ok", timeout=3)
    assert calls[1].idempotency_key == f"{oid}-g1-r2-task"
    after = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["run"] == 3 and d["state"] == "scheduled" and d)  # fmt: skip
    assert after["nextRuns"] == before["nextRuns"], "its next scheduled run time is unchanged"
    assert after["due"] == before["due"]
    assert [r["trigger"] for r in after["runs"] if "trigger" in r] == ["now"]
    assert len(demo.calls("/ok")) == 2


def test_run_now_on_a_completed_one_time_task_runs_generation_two(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: once}}\nspec: {{invoke: '{demo.url}/ok'}}\n")
    demo.wait_for(1, "/ok", timeout=20)
    s = api(runtime)
    wait_until(lambda: s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()["state"] == "completed")
    body = s.post(runtime.url + f"/tasks/{oid}/run", timeout=10).json()
    assert body["action"] == "generation" and body["object"]["generation"] == 2, body
    calls = demo.wait_for(2, "/ok", timeout=5)
    assert [c.idempotency_key for c in calls] == [f"{oid}-g1-task", f"{oid}-g2-task"]
    done = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["state"] == "completed" and d)  # fmt: skip
    assert done["generation"] == 2 and done["calls"] == 2
    running = s.post(runtime.url + "/tasks/nope/run", timeout=10)
    assert running.status_code == 404


def test_the_cli_runs_a_task_now_and_says_what_it_did(make_runtime, demo: DemoLambda, capsys: Any) -> None:
    from lambdaop.cli.main import main

    runtime = make_runtime()
    apply(runtime, f"kind: Task\nmetadata: {{name: later}}\nspec: {{invoke: '{demo.url}/ok', after: 1h}}\n")
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["run", "task", "later", *common]) == 0
    assert "Task/later was brought forward: its call is due now" in capsys.readouterr().out
    demo.wait_for(1, "/ok", timeout=5)
    assert main(["rerun", "task", "later", *common]) == 1
    assert "only a failed run can be re-run" in capsys.readouterr().err


def test_a_past_at_is_taken_with_a_warning_and_its_lateness_counts_from_creation(
    make_runtime, demo: DemoLambda, capsys: Any, tmp_path: Any
) -> None:
    import datetime as dt

    from prometheus_client.parser import text_string_to_metric_families

    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).isoformat()
    made = s.post(runtime.url + "/scheduler/schedule", json={"url": f"{demo.url}/ok", "at": past}, timeout=10)
    assert made.status_code == 201, made.text
    (warning,) = made.json()["warnings"]
    assert warning.startswith("spec.at: ") and "in the past: it runs now" in warning
    demo.wait_for(1, "/ok", timeout=10)
    body = s.get(runtime.url + "/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(body)}
    total = [x.value for x in families["lambdaop_lateness_seconds"].samples if x.name.endswith("_sum")]
    assert total and 0 <= total[0] < 60, f"lateness counted from before creation: {total}"
    spec = tmp_path / "old.yaml"
    spec.write_text(f"kind: Task\nmetadata: {{name: old}}\nspec: {{invoke: '{demo.url}/ok', at: '{past}'}}\n")
    assert main(["apply", "-f", str(spec), "--server", runtime.url, "--token", runtime.admin_token]) == 0
    out, err = capsys.readouterr()
    assert "Task/old created" in out and "Task/old: warning: spec.at:" in err
    fresh = s.post(
        runtime.url + "/scheduler/schedule", json={"url": f"{demo.url}/ok", "delay": 60000}, timeout=10
    )
    assert fresh.status_code == 201 and "warnings" not in fresh.json()


def test_pause_by_label_stops_only_those_runs_and_resume_restarts_them(
    make_runtime, demo: DemoLambda, capsys: Any
) -> None:
    from lambdaop.cli.main import main

    runtime = make_runtime()
    billing = apply(runtime, f"kind: Task\nmetadata: {{name: billing-pulse, labels: {{team: billing}}}}\nspec:\n  invoke: '{demo.url}/status/billing'\n  schedule: {{every: 2s}}\n")  # fmt: skip
    apply(runtime, f"kind: Task\nmetadata: {{name: other-pulse, labels: {{team: web}}}}\nspec:\n  invoke: '{demo.url}/status/other'\n  schedule: {{every: 2s}}\n")  # fmt: skip
    apply(runtime, f"kind: Task\nmetadata: {{name: billing-once, labels: {{team: billing}}}}\nspec: {{invoke: '{demo.url}/status/once', after: 6s}}\n")  # fmt: skip
    demo.wait_for(1, "/status/billing", timeout=10)
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["pause", "-l", "team=billing", "--dry-run", *common]) == 0
    assert "Task/billing-once would be paused" in capsys.readouterr().out
    assert main(["pause", "-l", "team=billing", "--reason", "incident 42", *common]) == 0
    out = capsys.readouterr().out
    assert "Task/billing-pulse paused" in out and "Task/billing-once paused" in out and "other" not in out
    s = api(runtime)
    wait_until(lambda: s.get(runtime.url + f"/tasks/{billing}", timeout=10).json()["suspended"])
    time.sleep(0.5)  # a run that had started when the pause came ends first
    seen, others = len(demo.calls("/status/billing")), len(demo.calls("/status/other"))
    demo.wait_for(others + 3, "/status/other", timeout=15)  # the rest goes on meanwhile
    assert len(demo.calls("/status/billing")) == seen, "no billing run starts while paused"
    assert main(["describe", "task", "billing-pulse", *common]) == 0
    assert "Paused:" in (text := capsys.readouterr().out) and "incident 42" in text
    assert not demo.calls("/status/once"), "a paused one-time Task does not run at its time"
    assert main(["resume", "-l", "team=billing", *common]) == 0
    assert "Task/billing-pulse resumed" in capsys.readouterr().out
    demo.wait_for(seen + 1, "/status/billing", timeout=10)
    demo.wait_for(1, "/status/once", timeout=10)


def test_an_admin_pauses_everything_with_a_reason_and_resumes_it(
    make_runtime, demo: DemoLambda, capsys: Any
) -> None:
    from lambdaop.cli.main import main

    runtime = make_runtime()
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: pulse}}\nspec:\n  invoke: '{demo.url}/ok'\n  schedule: {{every: 1s}}\n")  # fmt: skip
    demo.wait_for(1, "/ok", timeout=10)
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["pause", "--all", "--reason", "store migration", *common]) == 0
    assert "everything paused: store migration" in capsys.readouterr().out
    s = api(runtime)
    view = s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()
    assert view["pausedAll"]["reason"] == "store migration" and view["pausedAll"]["by"] == "admin"
    assert s.get(runtime.url + "/dashboard", timeout=10).json()["pausedAll"]["reason"] == "store migration"
    seen = len(demo.calls("/ok"))
    time.sleep(3)  # three due runs pass
    assert len(demo.calls("/ok")) <= seen + 1, "no call starts while everything is paused"
    assert main(["describe", "task", "pulse", *common]) == 0
    assert "everything is paused by admin" in capsys.readouterr().out
    assert main(["resume", "--all", *common]) == 0
    demo.wait_for(len(demo.calls("/ok")) + 1, "/ok", timeout=10)
    assert s.get(runtime.url + "/pause", timeout=10).json() == {"pausedAll": None}
    refused = s.post(runtime.url + "/pause", json={"all": True}, timeout=10)
    assert refused.status_code == 422 and refused.json()["details"][0]["field"] == "reason"
    s.post(runtime.url + "/pause", json={"all": True, "reason": "again"}, timeout=10).raise_for_status()
    skipped = s.post(runtime.url + "/resume", json={"all": True, "skipMissed": True}, timeout=10)
    assert skipped.status_code == 422 and skipped.json()["details"][0]["field"] == "skipMissed", skipped.text
    assert s.get(runtime.url + "/pause", timeout=10).json()["pausedAll"]["reason"] == "again", (
        "nothing changed"
    )


def test_the_runs_list_shows_a_failed_run_of_each_kind_within_a_second(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    task = apply(runtime, f"kind: Task\nmetadata: {{name: broken, labels: {{team: billing}}}}\nspec: {{invoke: '{demo.url}/fail'}}\n")  # fmt: skip
    tset = apply(runtime, f"kind: TaskSet\nmetadata: {{name: train, labels: {{team: web}}}}\nspec:\n  tasks: ['{demo.url}/ok', '{demo.url}/fail']\n")  # fmt: skip
    fine = apply(runtime, f"kind: Task\nmetadata: {{name: fine}}\nspec: {{invoke: '{demo.url}/ok'}}\n")
    for oid, path in ((task, "tasks"), (tset, "tasksets")):
        wait_until(lambda oid=oid, path=path: s.get(runtime.url + f"/{path}/{oid}", timeout=10).json()["state"] == "failed", timeout=20)  # fmt: skip
        listed = wait_until(lambda oid=oid: [r for r in s.get(runtime.url + "/runs?state=failed", timeout=10).json()["runs"] if r["object"]["id"] == oid], timeout=1, what="the failed run listed")  # fmt: skip
        (run,) = listed
        assert run["result"] == "failed" and run["reason"] and run["lastCall"]["status"] == 500
    runs = s.get(runtime.url + "/runs", params={"state": "failed", "since": "1h"}, timeout=10).json()["runs"]
    assert {(r["object"]["kind"], r["object"]["name"], r["failedStep"]) for r in runs} == {("Task", "broken", "task"), ("TaskSet", "train", "task:1")}  # fmt: skip
    assert runs[0]["finished"] >= runs[1]["finished"], "newest first"
    billing = s.get(runtime.url + "/runs", params={"labelSelector": "team=billing"}, timeout=10).json()[
        "runs"
    ]
    assert [r["object"]["name"] for r in billing] == ["broken"]
    wait_until(lambda: [r for r in s.get(runtime.url + "/runs", timeout=10).json()["runs"] if r["object"]["id"] == fine], timeout=20)  # fmt: skip
    everything = s.get(runtime.url + "/runs", params={"limit": 1}, timeout=10).json()
    assert len(everything["runs"]) == 1 and everything["next"]
    rest = s.get(runtime.url + "/runs", params={"cursor": everything["next"]}, timeout=10).json()["runs"]
    assert len(rest) == 2 and everything["runs"][0]["id"] not in {r["id"] for r in rest}
    bad = s.get(runtime.url + "/runs", params={"since": "yesterday"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "since"
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["get", "runs", "--state", "failed", *common]) == 0
    table = capsys.readouterr().out
    assert table.startswith("FINISHED") and "task/broken" in table and "taskset/train" in table and "task/fine" not in table  # fmt: skip
    assert main(["get", "runs", "-l", "team=web", "-o", "name", *common]) == 0
    assert capsys.readouterr().out == "taskset/train\n"


def test_a_taskset_rerun_from_its_failed_step_skips_the_first_task_and_completes(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    oid = apply(runtime, f"kind: TaskSet\nmetadata: {{name: train}}\nspec:\n  tasks: ['{demo.url}/flaky/first?fails=0', '{demo.url}/flaky/second?fails=1']\n")  # fmt: skip
    wait_until(
        lambda: s.get(runtime.url + f"/tasksets/{oid}", timeout=10).json()["state"] == "failed", timeout=20
    )
    assert len(demo.calls("/flaky/first")) == 1 and len(demo.calls("/flaky/second")) == 1
    # the endpoint is fixed (its one failure is spent): re-run from the step that failed
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["rerun", "taskset", "train", *common]) == 0
    assert "from its failed step (task:1)" in capsys.readouterr().out
    done = wait_until(lambda: (d := s.get(runtime.url + f"/tasksets/{oid}", timeout=10).json())["state"] == "completed" and d, timeout=20)  # fmt: skip
    assert len(demo.calls("/flaky/first")) == 1, "the task that succeeded is not called again"
    second = demo.calls("/flaky/second")
    assert [c.idempotency_key for c in second] == [f"{oid}-g1-task:1", f"{oid}-g1-rerun1-task:1"]
    assert done["rerun"] == 1 and done["trigger"] == "rerun"
    runs = s.get(runtime.url + "/runs?labelSelector=&kind=TaskSet", timeout=10).json()["runs"]
    assert [(r["result"], r.get("trigger"), r.get("rerun")) for r in runs] == [("completed", "rerun", 1), ("failed", None, None)]  # fmt: skip
    again = s.post(runtime.url + f"/tasksets/{oid}/rerun", json={"from": "middle"}, timeout=10)
    assert again.status_code == 422 and again.json()["details"][0]["field"] == "from"


def test_get_takes_a_label_selector_and_a_name_prefix(make_runtime, demo: DemoLambda, capsys: Any) -> None:
    from lambdaop.cli.main import main

    runtime = make_runtime()
    for name, team in (("billing-report", "billing"), ("billing-export", "billing"), ("web-report", "web")):
        apply(runtime, f"kind: Task\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\nspec: {{invoke: '{demo.url}/ok', after: 1h}}\n")  # fmt: skip
    common = ["--server", runtime.url, "--token", runtime.admin_token, "-o", "name"]
    assert main(["get", "tasks", "-l", "team=billing", *common]) == 0
    assert sorted(capsys.readouterr().out.split()) == ["task/billing-export", "task/billing-report"]
    assert main(["get", "tasks", "-l", "team!=billing", *common]) == 0
    assert capsys.readouterr().out.split() == ["task/web-report"]
    assert main(["get", "tasks", "--prefix", "billing-r", *common]) == 0
    assert capsys.readouterr().out.split() == ["task/billing-report"]
    assert main(["get", "tasks", "--prefix", "billing", "-l", "team=web", *common]) == 0
    assert capsys.readouterr().out.split() == []
    assert main(["get", "tasks", "-l", "team in (a", *common]) == 1
    assert "cannot read 'team in (a' in the selector" in capsys.readouterr().err


def test_the_runs_list_takes_a_name_prefix_on_the_api_and_the_cli(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    made = {}
    # one after another: web-b's run ends last
    for name, path in (("web-a", "ok"), ("db-a", "fail"), ("web-b", "fail")):
        made[name] = apply(runtime, f"kind: Task\nmetadata: {{name: {name}}}\nspec: {{invoke: '{demo.url}/{path}?{name}'}}\n")  # fmt: skip
        wait_until(lambda name=name: any(r["object"]["id"] == made[name] for r in s.get(runtime.url + "/runs", timeout=10).json()["runs"]), timeout=20, what=f"the run of {name} listed")  # fmt: skip
    web = s.get(runtime.url + "/runs", params={"prefix": "web-"}, timeout=10).json()
    assert [(r["object"]["name"], r["result"]) for r in web["runs"]] == [("web-b", "failed"), ("web-a", "completed")]  # fmt: skip
    assert web["next"] is None
    failed = s.get(runtime.url + "/runs", params={"prefix": "web-", "state": "failed", "since": "1h"}, timeout=10).json()  # fmt: skip
    assert [r["object"]["name"] for r in failed["runs"]] == ["web-b"]
    first = s.get(runtime.url + "/runs", params={"prefix": "web-", "limit": 1}, timeout=10).json()
    assert [r["object"]["name"] for r in first["runs"]] == ["web-b"] and first["next"]
    rest = s.get(runtime.url + "/runs", params={"prefix": "web-", "cursor": first["next"]}, timeout=10).json()
    assert [r["object"]["name"] for r in rest["runs"]] == ["web-a"], "the next page goes on by end time, with the same prefix"  # fmt: skip
    everything = s.get(runtime.url + "/runs", params={"prefix": ""}, timeout=10).json()["runs"]
    assert [r["object"]["name"] for r in everything] == ["web-b", "db-a", "web-a"], "an empty prefix: all"
    assert s.get(runtime.url + "/runs", params={"prefix": "Web-"}, timeout=10).json()["runs"] == []
    twice = s.get(runtime.url + "/runs?prefix=web-&prefix=db-", timeout=10)
    assert twice.status_code == 422, twice.text
    (problem,) = twice.json()["details"]
    assert problem["field"] == "prefix" and problem["message"] == "expected the start of a name", problem
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["get", "runs", "--prefix", "web-", "-o", "name", *common]) == 0
    assert capsys.readouterr().out == "task/web-b\ntask/web-a\n"
    assert main(["get", "runs", "--prefix", "web-", "--state", "failed", *common]) == 0
    table = capsys.readouterr().out
    assert table.startswith("FINISHED") and "task/web-b" in table and "task/web-a" not in table and "db-a" not in table  # fmt: skip
    assert main(["get", "runs", "--prefix", "api-", *common]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "No runs of names starting 'api-'.\n"
    assert main(["get", "runs", "web-a", *common]) == 2
    assert "filter with --state, --since, -l, --kind and --prefix" in capsys.readouterr().err


def test_failed_runs_of_a_time_range_are_rerun_by_selector_after_a_dry_run(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    made = {}
    for name, team in (("a", "billing"), ("b", "billing"), ("c", "web")):
        made[name] = apply(runtime, f"kind: Task\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\nspec: {{invoke: '{demo.url}/flaky/{name}?fails=1'}}\n")  # fmt: skip
    for oid in made.values():
        wait_until(lambda oid=oid: s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()["state"] == "failed", timeout=20)  # fmt: skip
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["rerun", "-l", "team=billing", "--since", "1h", "--dry-run", *common]) == 0
    dry = capsys.readouterr().out
    assert "Task/a would re-run generation 1" in dry and "Task/b would re-run" in dry and "Task/c" not in dry
    assert len(demo.calls("/flaky/")) == 3, "a dry run calls nothing"
    assert main(["rerun", "-l", "team=billing", "--since", "1h", *common]) == 0
    assert "Task/a re-runs its failed run" in capsys.readouterr().out
    for name in ("a", "b"):
        wait_until(lambda name=name: s.get(runtime.url + f"/tasks/{made[name]}", timeout=10).json()["state"] == "completed", timeout=20)  # fmt: skip
    assert s.get(runtime.url + f"/tasks/{made['c']}", timeout=10).json()["state"] == "failed"
    assert [c.idempotency_key for c in demo.calls("/flaky/a")] == [f"{made['a']}-g1-task", f"{made['a']}-g1-rerun1-task"]  # fmt: skip
    again = s.post(
        runtime.url + "/rerun", json={"labelSelector": "team=billing", "since": "1h"}, timeout=10
    ).json()
    assert again["rerun"] == [] and {r["name"] for r in again["refused"]} == {"a", "b"}, again
    bad = s.post(runtime.url + "/rerun", json={"labelSelector": "team=billing"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "since"


def test_a_failed_run_of_a_recurring_task_is_rerun_and_its_schedule_stays(
    make_runtime, demo: DemoLambda
) -> None:
    runtime = make_runtime()
    s = api(runtime)
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: hourly}}\nspec:\n  invoke: '{demo.url}/flaky/hourly?fails=1'\n  schedule: {{every: 1h}}\n")  # fmt: skip
    before = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["lastRun"] and d["state"] == "scheduled" and d)  # fmt: skip
    assert before["lastRun"]["result"] == "failed"
    answer = s.post(runtime.url + f"/tasks/{oid}/rerun", json={}, timeout=10).json()
    assert answer["action"] == "rerun" and "run 1" in answer["message"], answer
    after = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["run"] == 3 and d["state"] == "scheduled" and d)  # fmt: skip
    assert after["nextRuns"] == before["nextRuns"]
    assert after["lastRun"]["result"] == "completed" and after["lastRun"]["rerunOf"] == 1 and after["lastRun"]["trigger"] == "rerun"  # fmt: skip
    assert [c.idempotency_key for c in demo.calls("/flaky/hourly")] == [f"{oid}-g1-r1-task", f"{oid}-g1-r2-rerun1-task"]  # fmt: skip


def test_a_backfill_of_an_hourly_cron_over_six_hours_makes_six_calls_with_distinct_keys(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    import datetime as dt

    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    minute = quiet_minute()
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: hourly, labels: {{team: data}}}}\nspec:\n  invoke: '{demo.url}/ok'\n  schedule: {{cron: '{minute} * * * *'}}\n")  # fmt: skip
    before = s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - dt.timedelta(days=1, hours=6), hour - dt.timedelta(days=1)
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert (
        main(["backfill", "task", "hourly", "--start", start.isoformat(), "--end", end.isoformat(), *common])
        == 0
    )
    assert "backfills 6 run(s)" in capsys.readouterr().out
    calls = demo.wait_for(6, "/ok", timeout=20)
    keys = [c.idempotency_key for c in calls]
    assert len(set(keys)) == 6 and all(k.startswith(f"{oid}-g1-r") for k in keys), keys
    after = wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["run"] == before["run"] + 6 and d["state"] == "scheduled" and d)  # fmt: skip
    assert after["nextRuns"] == before["nextRuns"] and not after.get("backfillLeft")
    runs = [r for r in s.get(runtime.url + "/runs", params={"labelSelector": "team=data"}, timeout=10).json()["runs"]]  # fmt: skip
    assert sorted(r["due"] for r in runs) == [
        iso(start + dt.timedelta(hours=h, minutes=minute)) for h in range(6)
    ]
    assert {r["trigger"] for r in runs} == {"backfill"}
    assert len(demo.calls("/ok")) == 6
    bad = s.post(runtime.url + f"/tasks/{oid}/backfill", json={"start": end.isoformat(), "end": start.isoformat()}, timeout=10)  # fmt: skip
    assert bad.status_code == 409 and "after its start" in bad.json()["message"]
    naive = s.post(runtime.url + f"/tasks/{oid}/backfill", json={"start": "2026-01-01T00:00:00", "end": end.isoformat()}, timeout=10)  # fmt: skip
    assert naive.status_code == 422 and naive.json()["details"][0]["field"] == "start"


def test_the_dashboard_lists_failed_runs_and_the_pause_of_everything_first(
    make_runtime, demo: DemoLambda
) -> None:
    runtime = make_runtime()
    s = api(runtime)
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: broken}}\nspec: {{invoke: '{demo.url}/fail'}}\n")
    wait_until(
        lambda: s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()["state"] == "failed", timeout=20
    )
    board = s.get(runtime.url + "/dashboard", timeout=10).json()
    (failed,) = board["attention"]["failed"]
    assert failed["object"]["id"] == oid and failed["result"] == "failed" and board["attention"]["late"] == []
    assert board["pausedAll"] is None


def test_one_object_is_paused_with_a_reason_and_a_one_time_one_runs_at_resume(make_runtime, demo: DemoLambda) -> None:  # fmt: skip
    runtime = make_runtime()
    s = api(runtime)
    oid = apply(
        runtime, f"kind: Task\nmetadata: {{name: soon}}\nspec: {{invoke: '{demo.url}/ok', after: 3s}}\n"
    )
    paused = s.post(runtime.url + f"/tasks/{oid}/suspend", json={"reason": "waiting for the vendor"}, timeout=10).json()  # fmt: skip
    assert paused["suspended"] and paused["object"]["pauseReason"] == "waiting for the vendor"
    assert paused["object"]["due"] is None
    time.sleep(4)  # past its time
    assert not demo.calls("/ok"), "a paused one-time Task does not run at its time"
    resumed = s.post(runtime.url + f"/tasks/{oid}/resume", timeout=10).json()
    assert resumed["suspended"] is False and resumed["message"] == "resumed"
    demo.wait_for(1, "/ok", timeout=10)
    wrong = s.post(runtime.url + f"/tasksets/{oid}/suspend", timeout=10)
    assert wrong.status_code == 404


def test_the_cli_suspends_one_object_with_a_reason_that_describe_shows(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    apply(runtime, f"kind: Task\nmetadata: {{name: later}}\nspec: {{invoke: '{demo.url}/ok', after: 1h}}\n")
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["suspend", "task", "later", "--reason", "vendor outage", *common]) == 0
    assert "Task/later suspended" in capsys.readouterr().out
    assert main(["describe", "task", "later", *common]) == 0
    assert "yes: vendor outage" in capsys.readouterr().out
    assert main(["resume", "task", "later", *common]) == 0
    assert "Task/later resumed" in capsys.readouterr().out


def test_a_recurring_taskset_rerun_from_its_failed_step_reads_the_failed_runs_outputs_and_due(make_runtime, demo: DemoLambda) -> None:  # fmt: skip
    import datetime as dt
    import json

    runtime = make_runtime()
    s = api(runtime)
    hour = (dt.datetime.now(dt.UTC).hour + 12) % 24  # its schedule's own run is hours away
    ship = "{url: '" + demo.url + "/flaky/ship?fails=1', method: POST, body: {artifact: '${{ steps.build.output.id }}', day: '${{ run.due }}'}}"  # fmt: skip
    oid = apply(runtime, f"kind: TaskSet\nmetadata: {{name: daily}}\nspec:\n  schedule: {{cron: '0 {hour} * * *'}}\n  steps:\n    - {{name: build, invoke: '{demo.url}/json?id=b1'}}\n    - {{name: ship, retries: 0, invoke: {ship}}}\n")  # fmt: skip
    view = f"{runtime.url}/tasksets/{oid}"
    coming = s.get(view, timeout=10).json()["nextRuns"]
    assert s.post(f"{view}/run", timeout=10).json()["action"] == "extra"
    failed = wait_until(lambda: (d := s.get(view, timeout=10).json())["lastRun"] and d["state"] == "scheduled" and d["lastRun"], timeout=20)  # fmt: skip
    assert (failed["run"], failed["result"], failed["failedStep"]) == (1, "failed", "step:ship"), failed
    # the endpoint is fixed (its one failure is spent): re-run run 1 from the step that failed
    answer = s.post(f"{view}/rerun", json={}, timeout=10)
    assert answer.status_code == 200 and "from its failed step (step:ship)" in answer.json()["message"], answer.text  # fmt: skip
    done = wait_until(lambda: (d := s.get(view, timeout=10).json())["lastRun"]["run"] == 2 and d["state"] == "scheduled" and d, timeout=20)  # fmt: skip
    assert done["lastRun"]["result"] == "completed" and done["lastRun"]["rerunOf"] == 1, done["lastRun"]
    assert len(demo.calls("/json")) == 1, "the step that succeeded is not called again"
    first, again = (json.loads(c.body) for c in demo.calls("/flaky/ship"))
    assert again["artifact"] == "b1", "the re-run reads what the failed run's build answered"
    assert again["day"] == first["day"], "run.due is the failed run's due time, not the re-run's"
    assert iso(dt.datetime.fromisoformat(again["day"])) == failed["scheduled"]
    assert done["lastRun"]["scheduled"] == failed["scheduled"] and done["nextRuns"] == coming
    # run 1's outputs are gone now that a later run replaced them: it goes on only from the start
    refused = s.post(f"{view}/rerun", json={"run": 1}, timeout=10)
    assert refused.status_code == 409 and "no longer kept" in refused.json()["message"] and "from the start" in refused.json()["message"], refused.text  # fmt: skip
    whole = s.post(f"{view}/rerun", json={"run": 1, "from": "start"}, timeout=10)
    assert whole.status_code == 200 and "from the start (step:build)" in whole.json()["message"], whole.text
    wait_until(lambda: (d := s.get(view, timeout=10).json())["lastRun"]["run"] == 3 and d["lastRun"]["result"] == "completed", timeout=20)  # fmt: skip
    assert len(demo.calls("/json")) == 2, "a re-run from the start calls every step again"
    *_, last = (json.loads(c.body) for c in demo.calls("/flaky/ship"))
    assert last == {"artifact": "b1", "day": first["day"]}
    keys = [c.idempotency_key for c in demo.calls("/flaky/ship")]
    assert keys == [
        f"{oid}-g1-r1-step:ship",
        f"{oid}-g1-r2-rerun1-step:ship",
        f"{oid}-g1-r3-rerun2-step:ship",
    ]


def test_every_failed_run_of_a_range_of_a_recurring_task_is_rerun_in_turn_by_selector(make_runtime, demo: DemoLambda, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    oid = apply(runtime, f"kind: Task\nmetadata: {{name: nightly, labels: {{team: ops}}}}\nspec:\n  invoke: '{demo.url}/flaky/nightly?fails=3'\n  retries: 0\n  schedule: {{cron: '{quiet_minute()} * * * *'}}\n")  # fmt: skip
    before = s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - dt.timedelta(days=1, hours=3), hour - dt.timedelta(days=1)
    assert s.post(runtime.url + f"/tasks/{oid}/backfill", json={"start": start.isoformat(), "end": end.isoformat()}, timeout=10).status_code == 200  # fmt: skip
    wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["run"] == before["run"] + 3 and d["state"] == "scheduled", timeout=20)  # fmt: skip
    failed = s.get(runtime.url + "/runs", params={"state": "failed", "labelSelector": "team=ops"}, timeout=10).json()["runs"]  # fmt: skip
    numbers = sorted(r["run"] for r in failed)
    assert len(numbers) == 3, failed
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["rerun", "-l", "team=ops", "--since", "1h", "--dry-run", *common]) == 0
    dry = capsys.readouterr().out
    assert all(f"Task/nightly would re-run run {n}" in dry for n in numbers), dry
    assert main(["rerun", "-l", "team=ops", "--since", "1h", *common]) == 0
    said = capsys.readouterr().out
    assert f"re-runs run {numbers[0]} from its failed step" in said and f"re-runs run {numbers[2]} from its failed step after the runs before it" in said, said  # fmt: skip
    wait_until(lambda: (d := s.get(runtime.url + f"/tasks/{oid}", timeout=10).json())["run"] == before["run"] + 6 and d["state"] == "scheduled", timeout=20)  # fmt: skip
    keys = [c.idempotency_key for c in demo.calls("/flaky/nightly")]
    assert len(keys) == 6 and len(set(keys)) == 6 and [k.rsplit("-", 2)[-2] for k in keys[3:]] == ["rerun1", "rerun2", "rerun3"], keys  # fmt: skip
    again = s.get(runtime.url + "/runs", params={"state": "completed", "labelSelector": "team=ops"}, timeout=10).json()["runs"]  # fmt: skip
    assert sorted((r["rerunOf"], r["due"]) for r in again) == sorted((r["run"], r["due"]) for r in failed), "each re-runs its own run, due as it was"  # fmt: skip
    after = s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()
    assert after["nextRuns"] == before["nextRuns"] and not after.get("rerunsWaiting")


def test_a_backfill_with_parallelism_runs_at_most_that_many_at_once_in_copies_and_leaves_the_object_alone(make_runtime, endpoint: Counting, capsys: Any) -> None:  # fmt: skip
    from lambdaop.cli.main import main

    runtime = make_runtime()
    s = api(runtime)
    body = "{day: '${{ run.due }}'}"
    minute = quiet_minute()
    oid = apply(runtime, f"kind: TaskSet\nmetadata: {{name: nightly, labels: {{team: data}}}}\nspec:\n  schedule: {{cron: '{minute} * * * *'}}\n  steps:\n  - {{name: load, invoke: {{url: '{endpoint.url}/work?ms=300', method: POST, body: {body}}}}}\n  - {{name: report, invoke: {{url: '{endpoint.url}/work?ms=300', method: POST, body: {body}}}}}\n")  # fmt: skip
    before = s.get(runtime.url + f"/tasksets/{oid}", timeout=10).json()
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start, end = hour - dt.timedelta(days=1, hours=7), hour - dt.timedelta(days=1)
    common = ["--server", runtime.url, "--token", runtime.admin_token]
    assert main(["backfill", "taskset", "nightly", "--start", start.isoformat(), "--end", end.isoformat(), "--parallelism", "3", *common]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "backfills 7 run(s)" in said and "at most 3 at once" in said, said
    copies = wait_until(lambda: (c := s.get(runtime.url + "/tasksets", params={"labelSelector": "lambdaop/backfill-of=nightly"}, timeout=10).json()["taskSets"]) and all(o["state"] == "completed" for o in c) and c, timeout=30)  # fmt: skip
    assert len(copies) == 3 and {c["name"] for c in copies} == {f"nightly-backfill-{start.strftime('%Y%m%dt%H%M%Sz')}-{i}" for i in (1, 2, 3)}  # fmt: skip
    assert endpoint.most == 3, "three runs at once, each a call at a time"
    calls = endpoint.calls("/work")
    assert len(calls) == 14 and len({q["key"] for _, q, _ in calls}) == 14, (
        "two steps of seven runs, each its own key"
    )
    days = sorted({dt.datetime.fromisoformat(b["day"]) for _, _, b in calls})
    assert days == [start + dt.timedelta(hours=h, minutes=minute) for h in range(7)], (
        "each run's run.due is the time it stands for"
    )
    runs = s.get(runtime.url + "/runs", params={"labelSelector": "lambdaop/backfill-of=nightly"}, timeout=10).json()["runs"]  # fmt: skip
    assert len(runs) == 7 and {r["trigger"] for r in runs} == {"backfill"} and {r["result"] for r in runs} == {"completed"}  # fmt: skip
    assert sorted(dt.datetime.fromisoformat(r["due"]) for r in runs) == days
    after = s.get(runtime.url + f"/tasksets/{oid}", timeout=10).json()
    assert after["run"] == before["run"] and after["nextRuns"] == before["nextRuns"], (
        "the object itself is untouched"
    )
    again = s.post(runtime.url + f"/tasksets/{oid}/backfill", json={"start": start.isoformat(), "end": end.isoformat(), "parallelism": 3}, timeout=10)  # fmt: skip
    assert again.status_code == 409 and "already made" in again.json()["message"], again.text
    bad = s.post(runtime.url + f"/tasksets/{oid}/backfill", json={"start": start.isoformat(), "end": end.isoformat(), "parallelism": 0}, timeout=10)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "parallelism"
