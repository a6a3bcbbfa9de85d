"""Notifications of a run's events (`notify:`): where they come in the schedule of calls, and that
they never change how the run ended."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.engine import changes, machine
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, PlanSpec, Progress, Refused
from lambdaop.engine.steps import first_step, step_plan
from lambdaop.spec import Notify, TaskSetSpec, TaskSpec, load_one

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OK = Outcome(True)
BAD = Outcome(False, "status 500")


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def hook(on: list[str], name: str = "h", **kw: Any) -> dict[str, Any]:
    return {"on": on, "invoke": f"http://x.test/{name}", "retries": 1, "retryDelay": "2s", **kw}


def drive(spec: PlanSpec, outcomes: list[Outcome], notify: Notify | None = None) -> tuple[Progress, list[tuple[str, int, float]]]:  # fmt: skip
    p = machine.start(spec, s(5))
    calls: list[tuple[str, int, float]] = []
    feed = iter(outcomes)
    while p.due is not None and (not p.final or p.notify):
        due = p.due
        p = machine.dispatch(p, due)
        calls.append((p.step, p.attempt, (due - T0).total_seconds()))
        p = machine.finish(spec, p, next(feed), due + dt.timedelta(seconds=1), notify)
    return p, calls


def test_started_comes_before_the_first_call_and_succeeded_after_the_last() -> None:
    spec = TaskSpec.model_validate({"invoke": "http://x.test/job", "notify": [hook(["started", "succeeded"]), hook(["succeeded"], "b")]})  # fmt: skip
    assert first_step(spec) == "notify:started:0"
    p, calls = drive(spec, [OK, OK, OK, OK])
    assert calls == [("notify:started:0", 1, 5), ("task", 1, 6), ("notify:succeeded:0", 1, 7), ("notify:succeeded:1", 1, 8)]  # fmt: skip
    assert p.phase is Phase.COMPLETED and not p.notify and p.notified == "delivered"


def test_a_failing_notification_is_retried_and_never_changes_the_result() -> None:
    spec = TaskSpec.model_validate(
        {"invoke": "http://x.test/job", "notify": [hook(["started", "succeeded"])]}
    )
    p, calls = drive(spec, [BAD, BAD, OK, BAD, BAD])
    assert [c[:2] for c in calls] == [("notify:started:0", 1), ("notify:started:0", 2), ("task", 1), ("notify:succeeded:0", 1), ("notify:succeeded:0", 2)]  # fmt: skip
    assert calls[1][2] == 8, "the retry waits retryDelay"
    assert p.phase is Phase.COMPLETED and p.notified == "failed"


def test_failed_tells_the_notify_entries_then_on_failure() -> None:
    data = {
        "tasks": ["http://x.test/t0"],
        "notify": [hook(["failed"])],
        "onFailure": {"invoke": "http://x.test/of"},
    }
    spec = TaskSetSpec.model_validate(data)
    p, calls = drive(spec, [BAD, OK, OK])
    assert [c[0] for c in calls] == ["task:0", "notify:failed:0", "notify"]
    assert p.phase is Phase.FAILED and p.reason == "task 1 failed after 1 attempt(s): status 500"
    assert step_plan(spec, "notify:failed:0").invoke.url == "http://x.test/h"
    p, calls = drive(TaskSetSpec.model_validate(data | {"onFailure": None}), [BAD, OK, OK], Notify.model_validate({"invoke": "http://x.test/serve-wide"}))  # fmt: skip
    assert [c[0] for c in calls] == ["task:0", "notify:failed:0", "notify"]


def test_a_recurring_run_starts_with_its_started_notification_again() -> None:
    spec = TaskSpec.model_validate({"invoke": "http://x.test/job", "schedule": {"every": "1m"}, "notify": [hook(["started", "succeeded", "failed"])]})  # fmt: skip
    p = machine.start(spec, s(0), now=s(0))
    for step in ("notify:started:0", "task", "notify:succeeded:0"):
        assert p.step == step
        p = machine.finish(
            spec, machine.dispatch(p, p.due or s(0)), OK, (p.due or s(0)) + dt.timedelta(seconds=1)
        )
    assert (p.phase, p.run, p.step) == (Phase.SCHEDULED, 2, "notify:started:0")


def test_cancel_is_allowed_before_a_started_notification() -> None:
    spec = TaskSpec.model_validate({"invoke": "http://x.test/job", "notify": [hook(["started"])]})
    p = machine.start(spec, s(5))
    assert changes.cancel(p, s(1)).phase is Phase.CANCELLED
    with pytest.raises(Refused):
        changes.cancel(machine.dispatch(p, s(5)), s(6))


def test_notify_is_written_with_the_events_it_hears_of() -> None:
    with pytest.raises(SpecInvalid) as caught:
        load_one("kind: Task\nmetadata: {name: t}\nspec:\n  invoke: http://x.test/a\n  notify:\n    - {on: [ended], invoke: http://x.test/h}\n", "t.yaml")  # fmt: skip
    assert "t.yaml:6:13: spec.notify[0].on[0]: expected one of started, succeeded, failed; got 'ended'" in str(caught.value.problems[0])  # fmt: skip
    with pytest.raises(SpecInvalid) as caught:
        load_one("kind: Task\nmetadata: {name: t}\nspec:\n  invoke: http://x.test/a\n  notify:\n    - {invoke: http://x.test/h}\n", "t.yaml")  # fmt: skip
    assert "spec.notify[0].on: required field is missing" in str(caught.value.problems[0])
