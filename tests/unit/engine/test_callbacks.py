"""Waits for a callback: tokens that are signed and single-use, the wait's end, heartbeats, timeouts."""

from __future__ import annotations

import datetime as dt

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.engine import callbacks, machine, ondemand
from lambdaop.engine.callbacks import Verdict
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, Progress
from lambdaop.spec import TaskSetSpec, load_one

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
SECRET = b"k" * 32


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


SPEC = TaskSetSpec.model_validate(
    {
        "steps": [
            {
                "name": "approve",
                "waitForCallback": {"invoke": "http://x.test/ask", "timeout": "10m", "heartbeat": "1h"},
                "retries": 1,
                "retryDelay": "5s",
            },
            {"name": "after", "invoke": "http://x.test/after"},
        ],
        "fallback": {"invoke": "http://x.test/undo"},
    }
)


def waiting() -> Progress:
    """The step's call went out at 0s and succeeded at 1s: it waits."""
    p = machine.dispatch(machine.start(SPEC, s(0)), s(0))
    return machine.finish(SPEC, p, Outcome(True), s(1))


def test_a_call_that_succeeded_waits_until_its_timeout_holding_nothing() -> None:
    p = waiting()
    assert (p.step, p.phase, p.in_flight) == ("step:approve", Phase.RUNNING, False)
    assert p.waiting_until == p.due == s(601)
    assert Progress.from_storage(p.for_storage()) == p


def test_tokens_are_signed_and_name_their_wait() -> None:
    wait = callbacks.nonce(3, waiting())
    token = callbacks.sign(SECRET, "obj1", wait)
    assert callbacks.read(SECRET, token) == ("obj1", wait) == ("obj1", "3.1.1.approve")
    assert callbacks.read(b"other" * 8, token) is None
    assert callbacks.read(SECRET, token[:-2] + "xx") is None
    assert callbacks.read(SECRET, token.replace("obj1", "obj2")) is None
    assert callbacks.read(SECRET, "garbage") is None


def test_success_ends_the_wait_and_the_same_token_is_refused_after() -> None:
    p = waiting()
    wait = callbacks.nonce(1, p)
    done = callbacks.judge(SPEC, p, 1, wait, "success", None, s(30))
    assert done.verdict is Verdict.ACCEPTED and done.progress is not None
    assert (done.progress.step, done.progress.due, done.progress.waiting_until) == ("step:after", s(30), None)
    again = callbacks.judge(SPEC, done.progress, 1, wait, "success", None, s(31))
    assert again.verdict is Verdict.REFUSED


def test_a_failure_is_retried_with_a_new_wait_then_the_fallback() -> None:
    p = waiting()
    first = callbacks.nonce(1, p)
    retried = callbacks.judge(SPEC, p, 1, first, "failure", "rejected", s(30)).progress
    assert retried is not None and (retried.attempt, retried.due, retried.waiting_until) == (2, s(35), None)
    assert callbacks.nonce(1, retried) != first, "every attempt has its own URL"
    assert callbacks.judge(SPEC, retried, 1, first, "success", None, s(36)).verdict is Verdict.REFUSED
    p = machine.finish(SPEC, machine.dispatch(retried, s(35)), Outcome(True), s(36))
    failed = callbacks.judge(SPEC, p, 1, callbacks.nonce(1, p), "failure", "rejected", s(40)).progress
    assert failed is not None and failed.step == "fallback"
    assert failed.reason == "step approve failed after 2 attempt(s): rejected"


def test_a_heartbeat_moves_the_end_of_the_wait() -> None:
    p = waiting()
    beat = callbacks.judge(SPEC, p, 1, callbacks.nonce(1, p), "heartbeat", None, s(300))
    assert beat.verdict is Verdict.EXTENDED and beat.progress is not None
    assert beat.progress.waiting_until == beat.progress.due == s(3900)


def test_a_callback_while_its_call_is_out_is_kept_and_the_calls_answer_applies_it() -> None:
    p = machine.dispatch(machine.start(SPEC, s(0)), s(0))
    wait = callbacks.nonce(1, p)
    early = callbacks.judge(SPEC, p, 1, wait, "success", None, s(0.5))
    assert (
        early.verdict is Verdict.ACCEPTED
        and early.progress is not None
        and early.progress.answered == "success"
    )
    assert callbacks.judge(SPEC, early.progress, 1, wait, "success", None, s(0.6)).verdict is Verdict.REFUSED
    after = machine.finish(SPEC, early.progress, Outcome(True), s(1))
    assert (after.step, after.waiting_until, after.answered) == ("step:after", None, None)
    failed = callbacks.judge(SPEC, p, 1, wait, "failure", "no", s(0.5)).progress
    assert failed is not None
    retried = machine.finish(SPEC, failed, Outcome(True), s(1))
    assert (retried.step, retried.attempt, retried.due) == ("step:approve", 2, s(6))


def test_a_timeout_fails_the_step_and_a_late_callback_is_recorded_not_refused() -> None:
    p = waiting()
    wait = callbacks.nonce(1, p)
    after, error = callbacks.time_out(SPEC, p, 1, s(601))
    assert error == "no callback within 10m"
    assert (after.step, after.attempt, after.due, after.waiting_until) == ("step:approve", 2, s(606), None)
    assert callbacks.judge(SPEC, after, 1, wait, "success", None, s(700)).verdict is Verdict.LATE


def test_a_re_run_waits_on_a_url_of_its_own() -> None:
    p = waiting()
    first = callbacks.nonce(1, p)
    p, _ = callbacks.time_out(SPEC, p, 1, s(601))
    p = machine.finish(SPEC, machine.dispatch(p, s(606)), Outcome(True), s(607))
    p, _ = callbacks.time_out(SPEC, p, 1, s(1207))
    p = machine.finish(SPEC, machine.dispatch(p, p.due or s(1207)), Outcome(True), s(1300))  # the fallback
    assert p.phase is Phase.FAILED and first in p.expired
    again = ondemand.rerun(SPEC, p, s(2000), from_failed=True)
    again = machine.finish(SPEC, machine.dispatch(again, s(2000)), Outcome(True), s(2001))
    wait = callbacks.nonce(1, again)
    assert wait != first and wait.startswith("1.1-rerun1.1."), "not the first run's timed-out URL"
    done = callbacks.judge(SPEC, again, 1, wait, "success", None, s(2002))
    assert (
        done.verdict is Verdict.ACCEPTED and done.progress is not None and done.progress.step == "step:after"
    )
    assert callbacks.judge(SPEC, again, 1, first, "success", None, s(2002)).verdict is Verdict.LATE


def test_the_seed_form_stores_nothing_of_callbacks() -> None:
    stored = machine.start(TaskSetSpec.model_validate({"tasks": ["http://x.test/a"]}), s(0)).for_storage()
    assert "waiting_until" not in stored and "expired" not in stored


WAIT = """\
kind: TaskSet
metadata: {name: approval}
spec:
  steps:
    - name: approve
      waitForCallback:
        invoke: {url: http://x.test/ask, method: POST, body: {reply: "${{ callback.url }}"}}
        timeout: 10m
    - name: after
      invoke: "http://x.test/after?by=${{ steps.approve.output.by }}"
"""


def test_callback_url_is_read_only_by_a_wait_and_a_wait_needs_a_timeout() -> None:
    (ok,) = load_one(WAIT)
    assert ok.spec.steps[0].call.url == "http://x.test/ask"
    with pytest.raises(SpecInvalid) as err:
        load_one(WAIT.replace("?by=${{ steps.approve.output.by }}", "?u=${{ callback.url }}"))
    ((line, field, message),) = [(p.line, p.field, p.message) for p in err.value.problems]
    assert (line, field) == (
        10,
        "spec.steps[1].invoke.url",
    ) and "only in a waitForCallback's invoke" in message
    with pytest.raises(SpecInvalid) as err:
        load_one(WAIT.replace("        timeout: 10m\n", ""))
    assert [p.field for p in err.value.problems] == ["spec.steps[0].waitForCallback.timeout"]
    with pytest.raises(SpecInvalid) as err:
        load_one(WAIT.replace("timeout: 10m", "timeout: 10m\n      invoke: http://x.test/also"))
    assert "give the step one of `invoke`" in err.value.problems[0].message
