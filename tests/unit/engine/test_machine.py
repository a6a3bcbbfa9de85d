"""The pure state machine: every transition of Tasks and TaskSets, with `now` as input."""

from __future__ import annotations

import datetime as dt

import pytest

from lambdaop.engine import changes, machine
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, Progress, Refused
from lambdaop.engine.steps import step_plan
from lambdaop.spec import TaskSetSpec, TaskSpec

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OK = Outcome(True)
BAD = Outcome(False, "status 500")


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def task(**kw: object) -> TaskSpec:
    return TaskSpec.model_validate({"invoke": "http://x.test/a", **kw})


def test_task_success_first_time() -> None:
    spec = task()
    p = machine.start(spec, s(10))
    assert (p.phase, p.step, p.due) == (Phase.SCHEDULED, "task", s(10))
    p = machine.dispatch(p, s(10))
    assert p.phase is Phase.RUNNING and p.in_flight and p.due is None and p.calls == 1
    p = machine.finish(spec, p, OK, s(11))
    assert p.phase is Phase.COMPLETED and p.finished == s(11) and not p.in_flight


def test_task_retries_then_succeeds() -> None:
    spec = task(retries=3, retryDelay="30s")
    p = machine.dispatch(machine.start(spec, s(0)), s(0))
    p = machine.finish(spec, p, BAD, s(1))
    assert (p.phase, p.attempt, p.due) == (Phase.RUNNING, 2, s(31))
    p = machine.finish(spec, machine.dispatch(p, s(31)), BAD, s(32))
    assert (p.attempt, p.due) == (3, s(62))
    p = machine.finish(spec, machine.dispatch(p, s(62)), OK, s(63))
    assert p.phase is Phase.COMPLETED and p.calls == 3


def test_task_fails_when_retries_are_used_up() -> None:
    spec = task(retries=1, retryDelay="1s")
    p = machine.finish(spec, machine.dispatch(machine.start(spec, s(0)), s(0)), BAD, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(1)), Outcome(False, "timed out after 30s"), s(2))
    assert p.phase is Phase.FAILED
    assert p.reason == "failed after 2 attempt(s): timed out after 30s"


def test_cancel_and_reschedule_only_while_scheduled() -> None:
    spec = task()
    p = machine.start(spec, s(10))
    assert changes.reschedule(p, s(20)).due == s(20)
    cancelled = changes.cancel(p, s(1))
    assert cancelled.phase is Phase.CANCELLED and cancelled.due is None
    running = machine.dispatch(p, s(10))
    with pytest.raises(Refused, match="this one is running"):
        changes.cancel(running, s(11))
    with pytest.raises(Refused, match="completed"):
        changes.reschedule(machine.finish(spec, running, OK, s(11)), s(30))
    with pytest.raises(Refused):
        changes.cancel(cancelled, s(2))


def test_dispatch_refused_when_final_or_in_flight() -> None:
    spec = task()
    running = machine.dispatch(machine.start(spec, s(0)), s(0))
    with pytest.raises(Refused):
        machine.dispatch(running, s(0))
    with pytest.raises(Refused):
        machine.dispatch(machine.finish(spec, running, OK, s(1)), s(2))


def test_recover_makes_the_same_attempt_again_now() -> None:
    spec = task(retries=2)
    running = machine.dispatch(machine.start(spec, s(0)), s(0))
    again = machine.recover(running, s(40))
    assert (again.step, again.attempt, again.due, again.in_flight) == ("task", 1, s(40), False)
    assert machine.recover(again, s(50)) == again  # nothing in flight: unchanged


def test_progress_round_trips_through_storage() -> None:
    p = machine.dispatch(machine.start(task(), s(0)), s(0))
    assert Progress.from_storage(p.for_storage()) == p


# ----- TaskSets


def taskset(n: int = 3, check: dict | None = None, fallback: bool = True, **kw: object) -> TaskSetSpec:
    data: dict = {"tasks": [f"http://x.test/t{i}" for i in range(n)], **kw}
    if check is not None:
        data["conditionCheck"] = {"invoke": "http://x.test/check", **check}
    if fallback:
        data["fallback"] = {"invoke": "http://x.test/fallback"}
    return TaskSetSpec.model_validate(data)


def drive(spec: TaskSetSpec, outcomes: list[Outcome]) -> tuple[Progress, list[tuple[str, int, float]]]:
    p = machine.start(spec, s(5))
    calls: list[tuple[str, int, float]] = []
    feed = iter(outcomes)
    while not p.final:
        assert p.due is not None, p
        due = p.due
        p = machine.dispatch(p, due)
        calls.append((p.step, p.attempt, (due - T0).total_seconds()))
        p = machine.finish(spec, p, next(feed), due + dt.timedelta(seconds=1))
    return p, calls


def test_set_check_fails_twice_then_succeeds() -> None:
    spec = taskset(3, check={"delay": "30s", "retries": 5, "retryDelay": "10s"})
    outcomes = [OK, BAD, BAD, OK, OK, OK, OK]
    p, calls = drive(spec, outcomes)
    assert p.phase is Phase.COMPLETED
    assert calls == [
        ("task:0", 1, 5),
        ("check:0", 1, 36),
        ("check:0", 2, 47),
        ("check:0", 3, 58),
        ("task:1", 1, 59),
        ("check:1", 1, 90),
        ("task:2", 1, 91),
    ]


def test_set_check_never_succeeds_runs_fallback() -> None:
    spec = taskset(3, check={"retries": 2, "retryDelay": "1s"})
    p, calls = drive(spec, [OK, BAD, BAD, BAD, OK])
    assert [c[0] for c in calls] == ["task:0", "check:0", "check:0", "check:0", "fallback"]
    assert p.phase is Phase.FAILED and p.failed_step == "check:0"
    assert "condition check after task 1 failed after 3 attempt(s)" in (p.reason or "")


def test_set_failing_task_runs_fallback_once() -> None:
    spec = taskset(3, check={})
    p, calls = drive(spec, [OK, OK, BAD, OK])
    assert [c[0] for c in calls] == ["task:0", "check:0", "task:1", "fallback"]
    assert p.phase is Phase.FAILED and p.failed_step == "task:1"
    assert p.reason == "task 2 failed after 1 attempt(s): status 500"


def test_set_task_with_its_own_retries() -> None:
    spec = TaskSetSpec.model_validate(
        {"tasks": [{"url": "http://x.test/a", "retries": 1, "retryDelay": "2s"}]}
    )
    p, calls = drive(spec, [BAD, OK])
    assert calls == [("task:0", 1, 5), ("task:0", 2, 8)] and p.phase is Phase.COMPLETED


def test_set_failing_fallback_is_shown() -> None:
    spec = taskset(1)
    p, calls = drive(spec, [BAD, Outcome(False, "status 503")])
    assert [c[0] for c in calls] == ["task:0", "fallback"]
    assert p.phase is Phase.FAILED and "the fallback failed too: status 503" in (p.reason or "")


def test_set_without_fallback_fails_directly() -> None:
    p, calls = drive(taskset(2, check={}, fallback=False), [OK, BAD])
    assert [c[0] for c in calls] == ["task:0", "check:0"] and p.phase is Phase.FAILED


def test_set_of_one_task_needs_no_check() -> None:
    p, calls = drive(taskset(1, check={"delay": "5s"}), [OK])
    assert calls == [("task:0", 1, 5)] and p.phase is Phase.COMPLETED


def test_set_check_after_last() -> None:
    p, calls = drive(taskset(1, check={"delay": "5s", "afterLast": True}), [OK, OK])
    assert calls == [("task:0", 1, 5), ("check:0", 1, 11)] and p.phase is Phase.COMPLETED


def test_set_without_check_runs_tasks_back_to_back() -> None:
    p, calls = drive(taskset(3, fallback=False), [OK, OK, OK])
    assert calls == [("task:0", 1, 5), ("task:1", 1, 6), ("task:2", 1, 7)]


def test_set_of_twenty_with_zero_delays() -> None:
    spec = taskset(20, check={"delay": "0", "retryDelay": "0s", "retries": 1})
    p, calls = drive(spec, [OK] * 39)
    assert p.phase is Phase.COMPLETED and len(calls) == 39
    assert [c[0] for c in calls[-3:]] == ["task:18", "check:18", "task:19"]


def test_set_cancel_only_before_first_call() -> None:
    spec = taskset(2, check={})
    p = machine.start(spec, s(10))
    assert changes.cancel(p, s(1)).phase is Phase.CANCELLED
    running = machine.dispatch(p, s(10))
    waiting_for_check = machine.finish(spec, running, OK, s(11))
    assert waiting_for_check.phase is Phase.RUNNING and not waiting_for_check.in_flight
    with pytest.raises(Refused, match="running"):
        changes.cancel(waiting_for_check, s(12))


def test_set_recover_resumes_the_step_it_was_on() -> None:
    spec = taskset(3, check={"retries": 3, "retryDelay": "1s"})
    p = machine.finish(spec, machine.dispatch(machine.start(spec, s(0)), s(0)), OK, s(1))
    p = machine.finish(spec, machine.dispatch(p, s(1)), BAD, s(2))
    in_flight = machine.dispatch(p, s(3))
    again = machine.recover(in_flight, s(60))
    assert (again.step, again.attempt, again.due) == ("check:0", 2, s(60))


def test_step_plan_names_each_call() -> None:
    spec = taskset(2, check={"retries": 4})
    assert step_plan(spec, "task:1").invoke.url == "http://x.test/t1"
    assert step_plan(spec, "check:0").policy.retries == 4
    assert step_plan(spec, "fallback").invoke.url == "http://x.test/fallback"
    with pytest.raises(ValueError):
        step_plan(taskset(1, fallback=False), "fallback")


def test_fallback_on_chooses_when_the_fallback_runs() -> None:
    def taskset(on: list[str]) -> TaskSetSpec:
        return TaskSetSpec.model_validate(
            {"tasks": ["http://x.test/a", "http://x.test/b"], "conditionCheck": {"invoke": "http://x.test/c"},
             "fallback": {"invoke": "http://x.test/f", "on": on}}
        )  # fmt: skip

    for on, after_task in ((["check", "task"], "fallback"), (["check"], None)):
        spec = taskset(on)
        p = machine.finish(spec, machine.dispatch(machine.start(spec, s(0)), s(0)), BAD, s(1))
        assert (p.step if after_task else p.phase) == (after_task or Phase.FAILED), on
        p = machine.finish(spec, machine.dispatch(machine.start(spec, s(0)), s(0)), OK, s(1))
        p = machine.finish(spec, machine.dispatch(p, s(1)), BAD, s(2))  # the check gives up
        assert p.step == "fallback", on
