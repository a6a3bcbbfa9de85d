"""Recurring schedules, retry policies and failure notifications in the pure machine: fixed `now`,
no clock, no store. Time zones are named, so nothing depends on where or when this runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lambdaop.engine import changes, machine, recurrence
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, Refused
from lambdaop.engine.recurring import catch_up, run_summary
from lambdaop.engine.steps import step_plan
from lambdaop.spec import Schedule, TaskSetSpec, TaskSpec

UTC = dt.UTC
OK = Outcome(True)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def sched(**kw: Any) -> Schedule:
    return Schedule.model_validate(kw)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # Berlin springs forward 2027-03-28 02:00 -> 03:00: 02:30 runs once, at 03:00
        (
            "Europe/Berlin",
            "2027-03-27T12:00:00+01:00",
            ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"],
        ),
        # and falls back 2027-10-31 03:00 -> 02:00: 02:30 runs once, not twice
        (
            "Europe/Berlin",
            "2027-10-30T12:00:00+02:00",
            ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"],
        ),
        # New York springs forward 2027-03-14 and falls back 2027-11-07
        (
            "America/New_York",
            "2027-03-13T12:00:00-05:00",
            ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"],
        ),
        (
            "America/New_York",
            "2027-11-06T12:00:00-04:00",
            ["2027-11-07T01:30:00-04:00", "2027-11-08T02:30:00-05:00"],
        ),
    ],
)
def test_cron_times_are_exact_across_daylight_saving(zone: str, after: str, expected: list[str]) -> None:
    cron = "30 2 * * *" if zone == "Europe/Berlin" or "03-1" in after else "30 1,2 * * *"
    got = recurrence.upcoming(sched(cron=cron, timezone=zone), at(after), at(after), 2)
    if cron == "30 1,2 * * *":  # 01:30 happens twice on the fall-back night: the first one counts
        assert got[0] == at(expected[0])
        return
    assert got == [at(e) for e in expected]


def test_weekdays_at_nine_in_berlin_in_words_and_times() -> None:
    s = sched(cron="0 9 * * MON-FRI", timezone="Europe/Berlin")
    assert recurrence.describe(s) == "At 09:00 on Monday through Friday (Europe/Berlin)"
    friday = at("2027-06-04T10:00:00+02:00")
    assert recurrence.upcoming(s, friday, friday, 2) == [
        at("2027-06-07T09:00:00+02:00"),
        at("2027-06-08T09:00:00+02:00"),
    ]


def test_a_rate_counts_from_its_anchor_or_start_and_stops_at_end() -> None:
    anchor = at("2027-01-01T00:00:07+00:00")
    s = sched(every="15m")
    assert recurrence.upcoming(s, anchor, anchor, 2) == [
        at("2027-01-01T00:15:07+00:00"),
        at("2027-01-01T00:30:07+00:00"),
    ]
    s = sched(every="1h", start="2027-01-01T06:00:00Z", end="2027-01-01T08:00:00Z")
    assert recurrence.upcoming(s, anchor, anchor, 9) == [
        at(f"2027-01-01T0{h}:00:00+00:00") for h in (6, 7, 8)
    ]
    assert recurrence.describe(s).startswith("every 1h, from 2027-01-01T06:00:00+00:00")


def test_jitter_is_within_bounds_and_repeatable() -> None:
    s = sched(every="1m", jitter="30s")
    offsets = [recurrence.jitter(s, 12345, run) for run in range(1, 50)]
    assert all(dt.timedelta(0) <= o < dt.timedelta(seconds=30) for o in offsets)
    assert offsets == [recurrence.jitter(s, 12345, run) for run in range(1, 50)]
    assert len(set(offsets)) > 40


def task(**kw: Any) -> TaskSpec:
    return TaskSpec.model_validate({"invoke": "http://x.test/a", **kw})


def test_a_recurring_task_runs_again_and_stays_scheduled() -> None:
    spec = task(schedule={"every": "1m"})
    now = at("2027-01-01T00:00:00+00:00")
    p = machine.start(spec, now, salt=1, now=now)
    assert (p.phase, p.run, p.scheduled, p.due) == (Phase.SCHEDULED, 1, now, now)
    before = machine.dispatch(p, now)
    p = machine.finish(spec, before, OK, now + dt.timedelta(seconds=1))
    assert (p.phase, p.run, p.scheduled, p.due) == (Phase.SCHEDULED, 2, now + dt.timedelta(minutes=1), now + dt.timedelta(minutes=1))  # fmt: skip
    summary = run_summary(before, p)
    assert summary is not None and summary["run"] == 1 and summary["result"] == "completed"


def test_the_schedule_end_ends_the_object() -> None:
    spec = task(schedule={"every": "1m", "end": "2027-01-01T00:01:30Z"})
    now = at("2027-01-01T00:00:00+00:00")
    p = machine.start(spec, now, salt=1, now=now)
    p = machine.finish(spec, machine.dispatch(p, now), OK, now)
    assert p.run == 2
    p = machine.finish(spec, machine.dispatch(p, p.due or now), OK, now + dt.timedelta(minutes=1))
    assert p.phase is Phase.COMPLETED and "schedule ended" in (p.reason or "")


@pytest.mark.parametrize(
    ("policy", "run_at", "skipped"),
    [
        ("none", "2027-01-01T00:04:00+00:00", 4),
        ("latest", "2027-01-01T00:03:00+00:00", 3),
        ("all", "2027-01-01T00:00:00+00:00", 0),
    ],
)
def test_catch_up_after_three_minutes_down(policy: str, run_at: str, skipped: int) -> None:
    spec = task(schedule={"cron": "* * * * *", "catchUp": policy})
    down = at("2027-01-01T00:00:00+00:00") - dt.timedelta(seconds=30)
    p = machine.start(spec, down, salt=1, now=down)
    assert p.scheduled == at("2027-01-01T00:00:00+00:00")
    back = at("2027-01-01T00:03:20+00:00")  # missed 00:00, 00:01, 00:02, 00:03
    caught = catch_up(spec, p, back)
    assert caught.scheduled == at(run_at) and caught.skipped == skipped
    if policy == "all":  # each missed run in turn: after the first, the next is due at once
        done = machine.finish(spec, machine.dispatch(caught, back), OK, back)
        assert done.scheduled == at("2027-01-01T00:01:00+00:00") and done.due == back


@pytest.mark.parametrize(("overlap", "next_at", "skipped"), [("skip", "2027-01-01T00:03:00+00:00", 2), ("wait", "2027-01-01T00:01:00+00:00", 0)])  # fmt: skip
def test_overlap_when_a_run_outlasts_the_interval(overlap: str, next_at: str, skipped: int) -> None:
    spec = task(schedule={"every": "1m", "overlap": overlap})
    t0 = at("2027-01-01T00:00:00+00:00")
    p = machine.dispatch(machine.start(spec, t0, salt=1, now=t0), t0)
    ended = t0 + dt.timedelta(minutes=2, seconds=30)  # a run of 2.5 minutes
    p = machine.finish(spec, p, OK, ended)
    assert p.scheduled == at(next_at) and p.skipped == skipped
    assert p.due == (at(next_at) if overlap == "skip" else ended)


def test_suspend_and_resume() -> None:
    spec = task(schedule={"every": "10m"})
    t0 = at("2027-01-01T00:00:00+00:00")
    p = machine.start(spec, t0, salt=1, now=t0)
    paused = changes.suspend(spec, p)
    assert paused.suspended and paused.due is None and paused.phase is Phase.SCHEDULED
    later = t0 + dt.timedelta(minutes=33)
    resumed = changes.resume(spec, paused, later)
    assert not resumed.suspended and resumed.due == at("2027-01-01T00:40:00+00:00")
    with pytest.raises(Refused, match="only a recurring object"):
        changes.suspend(task(), machine.start(task(), t0))


def fail(kind: str, retry_after: float | None = None) -> Outcome:
    return Outcome(False, f"a {kind} failure", kind, retry_after)


def test_backoff_with_a_cap_and_the_reason_recorded() -> None:
    spec = task(retries=5, retryDelay="10s", backoff={"factor": 2, "max": "35s"})
    t0 = at("2027-01-01T00:00:00+00:00")
    p = machine.start(spec, t0)
    waits = []
    for _ in range(5):
        p = machine.finish(spec, machine.dispatch(p, p.due or t0), fail("5xx"), t0)
        waits.append((p.delay_ms, p.delay_reason))
    assert [w for w, _ in waits] == [10_000, 20_000, 35_000, 35_000, 35_000]
    assert waits[1][1] == "backoff 10s x 2^1" and waits[2][1] == "backoff 10s x 2^2, capped at 35s"


def test_full_jitter_and_retry_after() -> None:
    spec = task(retries=3, retryDelay="10s", jitter="full")
    t0 = at("2027-01-01T00:00:00+00:00")
    p = machine.finish(spec, machine.dispatch(machine.start(spec, t0, salt=7), t0), fail("5xx"), t0)
    assert 0 <= (p.delay_ms or 0) < 10_000 and "full jitter" in (p.delay_reason or "")
    p = machine.finish(spec, machine.dispatch(p, p.due or t0), fail("429", retry_after=120), t0)
    assert (p.delay_ms, p.delay_reason) == (120_000, "Retry-After asked for 120s")
    capped = task(retries=3, backoff={"factor": 2, "max": "1m"})
    p = machine.finish(
        capped, machine.dispatch(machine.start(capped, t0), t0), fail("5xx", retry_after=3600), t0
    )
    assert p.delay_ms == 60_000 and "(capped)" in (p.delay_reason or "")


def test_retry_on_leaves_other_failures_alone() -> None:
    spec = task(retries=3, retryOn=["5xx", "timeout"])
    t0 = at("2027-01-01T00:00:00+00:00")
    p = machine.finish(spec, machine.dispatch(machine.start(spec, t0), t0), fail("4xx"), t0)
    assert p.phase is Phase.FAILED, "a 4xx is not retried"
    p = machine.finish(spec, machine.dispatch(machine.start(spec, t0), t0), fail("timeout"), t0)
    assert p.phase is Phase.RUNNING and p.attempt == 2


def test_a_failed_run_notifies_then_ends_and_a_recurring_one_goes_on() -> None:
    t0 = at("2027-01-01T00:00:00+00:00")
    spec = task(onFailure={"invoke": "http://x.test/alert", "retries": 1, "retryDelay": "1s"})
    p = machine.finish(spec, machine.dispatch(machine.start(spec, t0), t0), fail("5xx"), t0)
    assert (p.phase, p.step, p.notify, p.due) == (Phase.FAILED, "notify", True, t0)
    assert step_plan(spec, "notify").invoke.url == "http://x.test/alert"
    p = machine.finish(spec, machine.dispatch(p, t0), fail("connection"), t0)
    assert (p.step, p.attempt) == ("notify", 2), "the notification has its own retries"
    p = machine.finish(spec, machine.dispatch(p, p.due or t0), OK, t0)
    assert (p.phase, p.notify, p.notified) == (Phase.FAILED, False, "delivered")
    recurring = task(schedule={"every": "1m"}, onFailure={"invoke": "http://x.test/alert"})
    p = machine.start(recurring, t0, salt=1, now=t0)
    before = machine.dispatch(p, t0)
    p = machine.finish(recurring, before, fail("5xx"), t0)
    assert p.step == "notify" and run_summary(before, p) is None
    notified = machine.finish(recurring, machine.dispatch(p, t0), OK, t0)
    assert notified.phase is Phase.SCHEDULED and notified.run == 2
    summary = run_summary(p, notified)
    assert summary is not None and summary["result"] == "failed" and summary["notified"] == "delivered"


def test_a_taskset_can_recur_too() -> None:
    spec = TaskSetSpec.model_validate(
        {"tasks": ["http://x.test/a", "http://x.test/b"], "schedule": {"cron": "0 * * * *"}}
    )
    t0 = at("2027-01-01T00:10:00+00:00")
    p = machine.start(spec, t0, salt=1, now=t0)
    assert p.scheduled == at("2027-01-01T01:00:00+00:00")
    p = machine.finish(spec, machine.dispatch(p, p.scheduled), OK, p.scheduled)
    p = machine.finish(spec, machine.dispatch(p, p.due or t0), OK, at("2027-01-01T01:00:05+00:00"))
    assert (p.phase, p.run, p.step, p.scheduled) == (
        Phase.SCHEDULED,
        2,
        "task:0",
        at("2027-01-01T02:00:00+00:00"),
    )


def test_schedule_validation_names_the_problem() -> None:
    from pydantic import ValidationError

    for bad, message in (
        ({"cron": "61 * * * *"}, "Bad minute"),
        ({"cron": "* * * *"}, "five fields"),
        ({"every": "500ms"}, "at least 1s"),
        ({"cron": "* * * * *", "every": "1m"}, "either `cron` or `every`"),
        ({"every": "1m", "timezone": "Mars/Base"}, "unknown time zone"),
    ):
        with pytest.raises(ValidationError, match=message):
            Schedule.model_validate(bad)
    with pytest.raises(ValidationError, match="leave out `at` and `after`"):
        task(schedule={"every": "1m"}, after="5m")
