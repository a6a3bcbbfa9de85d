"""Named steps: the machine's schedule of calls, the outputs kept per run, and filling in expressions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lambdaop.engine import machine, outputs, templates
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.outputs import MAX_OUTPUTS, StepOutput
from lambdaop.engine.progress import Phase, Progress
from lambdaop.engine.steps import first_step, step_plan
from lambdaop.spec import Invoke, TaskSetSpec

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OK = Outcome(True)
BAD = Outcome(False, "status 500")


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def named(*steps: dict[str, Any], **kw: Any) -> TaskSetSpec:
    return TaskSetSpec.model_validate({"steps": list(steps), **kw})


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


BUILD = {"name": "build", "invoke": "http://x.test/build"}
DEPLOY = {"name": "deploy", "invoke": "http://x.test/deploy", "retries": 2, "retryDelay": "10s"}
VERIFY = {"name": "verify", "invoke": "http://x.test/verify"}
CHECK = {"invoke": "http://x.test/healthy", "delay": "30s", "retries": 1, "retryDelay": "5s"}


def test_named_steps_run_in_order_each_with_its_own_retries_and_check() -> None:
    spec = named(BUILD | {"conditionCheck": CHECK}, DEPLOY, VERIFY, fallback={"invoke": "http://x.test/undo"})
    p, calls = drive(spec, [OK, BAD, OK, BAD, OK, OK])
    assert p.phase is Phase.COMPLETED
    assert calls == [
        ("step:build", 1, 5),
        ("check:build", 1, 36),
        ("check:build", 2, 42),
        ("step:deploy", 1, 43),
        ("step:deploy", 2, 54),
        ("step:verify", 1, 55),
    ]


def test_a_step_that_uses_its_retries_up_runs_the_fallback() -> None:
    spec = named(BUILD, DEPLOY, VERIFY, fallback={"invoke": "http://x.test/undo"})
    p, calls = drive(spec, [OK, BAD, BAD, BAD, OK])
    assert p.phase is Phase.FAILED
    assert [c[0] for c in calls] == ["step:build", "step:deploy", "step:deploy", "step:deploy", "fallback"]
    assert p.reason == "step deploy failed after 3 attempt(s): status 500"
    assert p.failed_step == "step:deploy"


def test_fallback_on_check_only_skips_a_failing_step() -> None:
    spec = named(BUILD | {"conditionCheck": CHECK | {"retries": 0}}, VERIFY, fallback={"invoke": "http://x.test/undo", "on": ["check"]})  # fmt: skip
    p, calls = drive(spec, [OK, BAD, OK])
    assert [c[0] for c in calls] == ["step:build", "check:build", "fallback"]
    assert p.reason == "condition check after step build failed after 1 attempt(s): status 500"
    p, calls = drive(spec, [BAD])
    assert p.phase is Phase.FAILED and [c[0] for c in calls] == ["step:build"]


def test_step_plan_names_each_named_call() -> None:
    spec = named(BUILD | {"successWhen": {"status": [200]}, "conditionCheck": CHECK}, VERIFY)
    plan = step_plan(spec, "step:build")
    assert plan.invoke.url == "http://x.test/build" and plan.invoke.successWhen is not None
    assert step_plan(spec, "check:build").invoke.url == "http://x.test/healthy"
    assert first_step(spec) == "step:build"
    with pytest.raises(ValueError):
        step_plan(spec, "step:nope")


def test_outputs_are_read_only_from_this_run_and_generation() -> None:
    kept = {
        "a": StepOutput({"id": 1}, 200, 1, True, run=2, generation=1),
        "b": StepOutput({"id": 2}, 200, 1, True, run=1, generation=1),
        "c": StepOutput({"id": 3}, 200, 1, True, run=2, generation=2),
    }
    assert list(outputs.current(kept, 2, 1)) == ["a"]
    new, why = outputs.with_output(kept, "b", StepOutput("x", 500, 3, False, run=2, generation=1, size=3))
    assert why is None and set(new) == {"a", "b"} and new["b"].status == 500
    huge = StepOutput("y", 200, 1, True, run=2, generation=1, size=MAX_OUTPUTS)
    same, why = outputs.with_output(new, "c", huge)
    assert same == new and why is not None and "at most" in why
    assert StepOutput.from_storage(new["b"].for_storage()) == new["b"]
    odd = StepOutput({"$set": {"a.b": "\x00"}}, 200, 1, True)
    assert odd.for_storage()["output"] == '{"$set":{"a.b":"\\u0000"}}', (
        "kept as text: the store holds any answer"
    )
    assert StepOutput.from_storage(odd.for_storage()) == odd


CTX = templates.context(
    {"build": StepOutput({"id": "art-7", "n": 5, "tags": ["a", "b"]}, 200, 2, True)},
    run=3,
    due=s(0),
    name="release",
    labels={"team": "web"},
)


def render(**fields: Any) -> Invoke:
    return templates.render(Invoke.model_validate(fields), CTX, "spec.steps[1].invoke")


def test_a_whole_string_keeps_its_type_and_a_longer_one_is_text() -> None:
    body = {
        "artifact": "${{ steps.build.output.id }}",
        "n": "${{ steps.build.output.n }}",
        "tags": "${{ steps.build.output.tags }}",
        "text": "run ${{ run.number }} of ${{ object.name }}: ${{ steps.build.output.tags }}",
        "none": "[${{ steps.build.output.nothing }}]",
        "due": "${{ run.due }}",
        "key": {"fromEnv": "KEY"},
        "plain": "no expression",
    }
    out = render(url="http://x.test/deploy", method="POST", body=body)
    assert out.body == {
        "artifact": "art-7",
        "n": 5,
        "tags": ["a", "b"],
        "text": 'run 3 of release: ["a","b"]',
        "none": "[]",
        "due": "2026-11-27T12:00:00Z",
        "key": {"fromEnv": "KEY"},
        "plain": "no expression",
    }


def test_url_headers_and_query_are_filled_in_as_text() -> None:
    out = render(
        url="http://x.test/a/${{ steps.build.output.id }}",
        headers={"x-n": "${{ steps.build.output.n }}", "x-key": {"fromEnv": "KEY"}},
        query={"team": "${{ object.labels.team }}", "tries": "${{ steps.build.attempts }}"},
    )
    assert out.url == "http://x.test/a/art-7"
    assert out.headers["x-n"] == "5" and out.headers["x-key"].fromEnv == "KEY"  # type: ignore[union-attr]
    assert out.query == {"team": "web", "tries": "2"}


def test_a_call_that_cannot_be_made_once_filled_in_says_which_field() -> None:
    with pytest.raises(templates.TemplateError, match=r"^spec.steps\[1\].invoke.url, once filled in: expected an http"):  # fmt: skip
        render(url="${{ steps.build.output.id }}")
    with pytest.raises(templates.TemplateError, match=r"headers, once filled in: header x-a: the value must not hold CR"):  # fmt: skip
        templates.render(
            Invoke.model_validate({"url": "http://x.test/", "headers": {"x-a": "${{ steps.b.output }}"}}),
            templates.context({"b": StepOutput("a\r\nb", 200, 1, True)}, 1, None, "n", {}),
            "spec.steps[1].invoke",
        )
    with pytest.raises(
        templates.TemplateError, match=r"body.x: `\$\{\{ abs\(steps.build.output.id\) \}\}` failed"
    ):
        render(url="http://x.test/", body={"x": "${{ abs(steps.build.output.id) }}"})
