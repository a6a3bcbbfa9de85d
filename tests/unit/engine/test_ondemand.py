"""Runs asked for by a person, in the pure engine: run now, re-run, backfill, pause of one-time
objects. Fixed times, no clock, no store."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from lambdaop.engine import machine, ondemand, recurring
from lambdaop.engine.ondemand import RunNow
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, Progress, Refused
from lambdaop.spec import TaskSetSpec, TaskSpec

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
OK, FAIL = Outcome(True), Outcome(False, "status 500")


def hourly() -> TaskSpec:
    return TaskSpec.model_validate({"invoke": "https://example.test/job", "schedule": {"every": "1h"}})


def one_time() -> TaskSpec:
    return TaskSpec.model_validate({"invoke": "https://example.test/job", "after": "1h"})


def a_set() -> TaskSetSpec:
    return TaskSetSpec.model_validate(
        {"tasks": ["https://example.test/a", "https://example.test/b", "https://example.test/c"]}
    )


def call(spec: TaskSpec | TaskSetSpec, p: Progress, now: dt.datetime, outcome: Outcome = OK) -> Progress:
    return machine.finish(spec, machine.dispatch(p, now), outcome, now)


def test_run_now_on_a_recurring_object_runs_once_and_leaves_its_next_run_where_it_was() -> None:
    spec = hourly()
    p = call(spec, machine.start(spec, T0, 0, T0), T0)  # the first run is when it is applied
    scheduled = p.scheduled
    assert scheduled == T0 + dt.timedelta(hours=1)
    now = T0 + dt.timedelta(minutes=10)
    extra, what = ondemand.run_now(spec, p, now)
    assert what is RunNow.EXTRA and extra.due == now and extra.trigger == "now"
    done = call(spec, extra, now + dt.timedelta(seconds=1))
    assert done.phase is Phase.SCHEDULED and done.scheduled == scheduled and done.due == scheduled
    assert done.run == p.run + 1 and done.trigger is None
    summary = recurring.run_summary(machine.dispatch(extra, now), done)
    assert summary is not None and summary["trigger"] == "now" and summary["result"] == "completed"


def test_run_now_while_a_run_goes_on_follows_overlap() -> None:
    spec = hourly()
    first = call(spec, machine.start(spec, T0, 0, T0), T0)
    running = machine.dispatch(first, T0 + dt.timedelta(hours=1))
    with pytest.raises(Refused, match="overlap: skip"):
        ondemand.run_now(spec, running, T0 + dt.timedelta(hours=1))
    waiting = TaskSpec.model_validate({**spec.model_dump(mode="json"), "schedule": {"every": "1h", "overlap": "wait"}})  # fmt: skip
    running = machine.dispatch(
        call(waiting, machine.start(waiting, T0, 0, T0), T0), T0 + dt.timedelta(hours=1)
    )
    queued, what = ondemand.run_now(waiting, running, T0 + dt.timedelta(hours=1))
    assert what is RunNow.QUEUED
    end = T0 + dt.timedelta(hours=1, seconds=2)
    after = machine.finish(waiting, queued, OK, end)
    assert after.due == end and after.trigger == "now" and after.resume_at == T0 + dt.timedelta(hours=2)


def test_run_now_on_one_time_objects_brings_forward_or_starts_the_next_generation() -> None:
    spec = one_time()
    p = machine.start(spec, T0 + dt.timedelta(hours=1), 0)
    forward, what = ondemand.run_now(spec, p, T0)
    assert what is RunNow.FORWARD and forward.due == T0
    done = call(spec, forward, T0)
    assert done.phase is Phase.COMPLETED
    again, what = ondemand.run_now(spec, done, T0 + dt.timedelta(minutes=5))
    assert what is RunNow.GENERATION and again.phase is Phase.SCHEDULED and again.due == T0 + dt.timedelta(minutes=5)  # fmt: skip
    assert again.calls == done.calls


def test_rerun_from_the_failed_step_skips_the_steps_that_succeeded() -> None:
    spec = a_set()
    p = machine.start(spec, T0, 0)
    p = call(spec, p, T0)  # task:0 ok
    assert p.step == "task:1"
    failed = call(spec, p, T0, FAIL)
    assert failed.phase is Phase.FAILED and failed.failed_step == "task:1"
    again = ondemand.rerun(spec, failed, T0 + dt.timedelta(minutes=1), from_failed=True)
    assert again.phase is Phase.SCHEDULED and again.step == "task:1" and again.rerun == 1 and again.trigger == "rerun"  # fmt: skip
    p = call(spec, again, T0 + dt.timedelta(minutes=1))
    p = call(spec, p, T0 + dt.timedelta(minutes=1))
    assert p.phase is Phase.COMPLETED
    whole = ondemand.rerun(spec, failed, T0, from_failed=False)
    assert whole.step == "task:0"
    with pytest.raises(Refused, match="only a failed run"):
        ondemand.rerun(spec, p, T0, from_failed=True)


def test_backfill_makes_each_run_of_the_range_in_turn_then_the_schedule_goes_on() -> None:
    spec = TaskSpec.model_validate({"invoke": "https://example.test/job", "schedule": {"cron": "0 * * * *"}})
    now = dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.UTC)
    p = machine.start(spec, now, 0, now)
    next_run = p.scheduled
    p, times = ondemand.backfill(spec, p, now - dt.timedelta(hours=6, minutes=30), now - dt.timedelta(minutes=30), now)  # fmt: skip
    assert times == [dt.datetime(2026, 12, 1, h, 0, tzinfo=dt.UTC) for h in range(4, 10)]
    seen = []
    for _ in times:
        assert p.trigger == "backfill" and p.due == now
        seen.append(p.scheduled)
        p = call(spec, p, now)
    assert seen == times
    assert p.trigger is None and p.scheduled == next_run
    with pytest.raises(Refused, match="after its start"):
        ondemand.backfill(spec, p, now, now, now)


def test_a_paused_one_time_object_runs_at_resume_or_is_skipped() -> None:
    spec = one_time()
    p = machine.start(spec, T0, 0)
    paused = ondemand.pause(p, "incident 42")
    assert paused.suspended and paused.due is None and paused.pause_reason == "incident 42"
    later = T0 + dt.timedelta(minutes=5)
    assert ondemand.unpause(paused, later, skip=False).due == later
    skipped = ondemand.unpause(paused, later, skip=True)
    assert skipped.phase is Phase.CANCELLED and "while paused" in (skipped.reason or "")
    early = ondemand.unpause(paused, T0 - dt.timedelta(minutes=5), skip=True)
    assert early.phase is Phase.SCHEDULED and early.due == T0


def test_a_named_step_set_reruns_from_its_failed_step() -> None:
    spec = TaskSetSpec.model_validate(
        {
            "steps": [
                {"name": "build", "invoke": "https://example.test/build"},
                {"name": "deploy", "invoke": "https://example.test/deploy"},
            ]
        }  # fmt: skip
    )
    p = call(spec, machine.start(spec, T0, 0), T0)
    assert p.step == "step:deploy"
    failed = call(spec, p, T0, FAIL)
    assert failed.phase is Phase.FAILED and failed.failed_step == "step:deploy"
    again = ondemand.rerun(spec, failed, T0, from_failed=True)
    assert again.step == "step:deploy" and again.rerun == 1
    assert call(spec, again, T0).phase is Phase.COMPLETED


def test_a_recurring_named_step_set_reruns_its_failed_step_with_that_runs_outputs_and_due() -> None:
    from lambdaop.engine.outputs import StepOutput

    spec = TaskSetSpec.model_validate(
        {
            "schedule": {"every": "1h"},
            "steps": [
                {"name": "build", "invoke": "https://example.test/build"},
                {"name": "ship", "invoke": "https://example.test/ship", "retries": 0},
            ],
        }  # fmt: skip
    )
    p = call(spec, machine.start(spec, T0, 0, T0), T0)  # run 1: build succeeds
    before = machine.dispatch(p, T0)
    failed = machine.finish(spec, before, FAIL, T0)  # ship fails: run 2 is scheduled
    summary = recurring.run_summary(before, failed)
    assert summary is not None and (summary["run"], summary["scheduled"], summary["failed_step"]) == (1, T0, "step:ship")  # fmt: skip
    build = StepOutput({"id": "b1"}, 200, 1, True, run=1)
    kept = {"build": build, "ship": StepOutput(None, 500, 1, False, run=1)}
    later = T0 + dt.timedelta(minutes=10)
    again = ondemand.rerun(spec, failed, later, True, 1, "step:ship", T0)
    assert (again.step, again.run, again.due, again.scheduled) == ("step:ship", 2, later, T0), (
        "due as run 1 was"
    )
    assert again.resume_at == T0 + dt.timedelta(hours=1)
    carried = ondemand.carried_outputs(spec, kept, 1, 1, again)
    assert carried == {"build": StepOutput({"id": "b1"}, 200, 1, True, run=2)}, "as the re-run's own"
    checked = ondemand.carried_outputs(spec, kept, 1, 1, replace(again, step="check:ship"))
    assert checked is not None and set(checked) == {"build", "ship"}, (
        "a failed check's step is not called again"
    )
    whole = ondemand.rerun(spec, failed, later, False, 1, "step:ship", T0)
    assert whole.step == "step:build" and whole.scheduled == T0
    assert ondemand.carried_outputs(spec, {}, 1, 1, whole) == {}
    with pytest.raises(Refused, match=r"no longer kept .*from the start"):
        ondemand.carried_outputs(spec, {"build": replace(build, run=2)}, 1, 1, again)  # a later run's
    with pytest.raises(Refused, match="no longer kept"):
        ondemand.carried_outputs(spec, kept, 2, 1, again)  # a new generation's
    assert ondemand.carried_outputs(hourly(), {}, 1, 1, again) is None


def test_a_run_record_counts_that_runs_calls_not_the_objects() -> None:
    from lambdaop.engine.runs import ended

    spec = TaskSpec.model_validate({"invoke": "https://example.test/job", "schedule": {"every": "1h"}, "retries": 2, "retryDelay": "1s"})  # fmt: skip
    identity = ("o1", "Task", "job", "alice", 1, {})
    p = machine.start(spec, T0, 0, T0)
    records = []
    for run, failures in enumerate((2, 0, 1)):  # three runs: 3 calls, 1 call, 2 calls
        for _ in range(failures + 1):
            now = p.due or T0
            before = machine.dispatch(p, now)
            p = machine.finish(spec, before, FAIL if _ < failures else OK, now)
            rec = ended(before, p, identity, True, now)
            if rec is not None:
                records.append(rec)
        assert p.run == run + 2, p
    assert [r.calls for r in records] == [3, 1, 2] and p.calls == 6


def test_queued_reruns_of_failed_runs_run_in_turn_each_due_as_its_run_was() -> None:
    spec = hourly()
    p = machine.start(spec, T0, 0, T0)
    runs = []
    for _ in range(3):  # runs 1, 2 and 3 fail
        runs.append(p.scheduled)
        p = call(spec, p, p.due or T0, FAIL)
    next_run = p.scheduled
    now = T0 + dt.timedelta(hours=2, minutes=10)
    p = ondemand.rerun(spec, p, now, True, 1, "task", runs[0])
    for run in (2, 3):
        p = ondemand.queue_rerun(spec, p, True, run, "task", runs[run - 1])
    assert [r.run for r in p.reruns] == [2, 3]
    with pytest.raises(Refused, match="run 2 is already to be re-run"):
        ondemand.queue_rerun(spec, p, True, 2, "task", runs[1])
    with pytest.raises(Refused, match="run 1 is already to be re-run"):
        ondemand.queue_rerun(spec, p, True, 1, "task", runs[0])
    assert Progress.from_storage(p.for_storage()) == p, "the queue is stored with the object"
    seen = []
    for _ in range(3):
        assert p.trigger == "rerun" and p.due is not None and p.due >= now
        seen.append((p.rerun_of, p.rerun, p.scheduled))
        p = call(spec, p, now)
    assert seen == [(1, 1, runs[0]), (2, 2, runs[1]), (3, 3, runs[2])], "in turn, each due as its run was"
    assert p.trigger is None and p.reruns == () and p.scheduled == next_run, "then the schedule goes on"


def test_a_queued_rerun_from_a_failed_named_step_is_refused_since_only_the_latest_outputs_are_kept() -> None:  # fmt: skip
    spec = TaskSetSpec.model_validate(
        {
            "schedule": {"every": "1h"},
            "steps": [
                {"name": "build", "invoke": "https://example.test/build"},
                {"name": "ship", "invoke": "https://example.test/ship"},
            ],
        }  # fmt: skip
    )
    p = call(spec, machine.start(spec, T0, 0, T0), T0)
    with pytest.raises(Refused, match=r"cannot wait for its turn .*from the start"):
        ondemand.queue_rerun(spec, p, True, 1, "step:ship", T0)
    whole = ondemand.queue_rerun(spec, p, False, 1, "step:ship", T0)
    assert whole.reruns[0].step == "step:build"
    with pytest.raises(Refused, match="only a recurring object"):
        ondemand.queue_rerun(one_time(), p, False, 1, None, T0)


def test_a_backfill_copy_runs_its_share_in_turn_and_ends_without_a_run_of_its_own_schedule() -> None:
    spec = TaskSpec.model_validate({"invoke": "https://example.test/job", "schedule": {"cron": "0 * * * *"}})
    now = dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.UTC)
    times = ondemand.backfill_times(spec, machine.start(spec, now, 0, now), now - dt.timedelta(hours=6), now)
    assert len(times) == 6
    share = times[1::3]  # the second of three copies
    p = ondemand.backfill_copy(spec, machine.start(spec, now, 7, now), share, now)
    assert Progress.from_storage(p.for_storage()) == p
    seen = []
    while not p.final:
        assert p.trigger == "backfill" and p.due == now
        seen.append(p.scheduled)
        p = call(spec, p, now, FAIL if len(seen) == 1 else OK)
    assert seen == share, "its share, in turn, and no run of its own schedule"
    assert (
        p.phase is Phase.COMPLETED
        and p.due is None
        and "its part of the backfill is done" in (p.reason or "")
    )
    with pytest.raises(Refused, match="no run time in that range"):
        ondemand.backfill_times(spec, machine.start(spec, now, 0, now), now - dt.timedelta(minutes=20), now - dt.timedelta(minutes=10))  # fmt: skip
    with pytest.raises(Refused, match="its schedule is over"):
        ondemand.backfill_times(spec, p, now - dt.timedelta(hours=6), now)


def test_resuming_a_run_off_the_schedule_runs_it_now() -> None:
    from lambdaop.engine import changes

    spec = hourly()
    p = call(spec, machine.start(spec, T0, 0, T0), T0)
    now = T0 + dt.timedelta(minutes=5)
    extra, _ = ondemand.run_now(spec, p, now)
    paused = changes.suspend(spec, extra)
    assert paused.due is None
    later = now + dt.timedelta(minutes=3)
    resumed = changes.resume(spec, paused, later)
    assert resumed.due == later and resumed.trigger == "now" and resumed.scheduled == extra.scheduled
