"""Parallel steps: waves of branch calls, maxConcurrency, mode all and any, and the stored lanes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.engine import lanes, machine, ondemand, waves
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.progress import Phase, Progress
from lambdaop.spec import TaskSetSpec, load_one

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OK = Outcome(True)
BAD = Outcome(False, "status 500")


def s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def fanout(branches: list[list[dict[str, Any]]], **par: Any) -> TaskSetSpec:
    return TaskSetSpec.model_validate(
        {
            "steps": [
                {"name": "build", "invoke": "http://x.test/build"},
                {"name": "fan", "parallel": {"branches": branches, **par}},
                {"name": "after", "invoke": "http://x.test/after"},
            ],
            "fallback": {"invoke": "http://x.test/undo"},
        }
    )


def call(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "invoke": f"http://x.test/{name}", **kw}


Judge = Callable[[str, int], Outcome]


def drive(spec: TaskSetSpec, judge: Judge) -> tuple[Progress, list[list[str]]]:
    """Runs the set, each call taking 1s; answers the final progress and each dispatch's steps."""
    p = machine.start(spec, s(0))
    waves_seen: list[list[str]] = []
    while not p.final:
        assert p.due is not None, p
        due = p.due
        if lanes.parallel_of(spec, p.step) is None:
            p = machine.dispatch(p, due)
            waves_seen.append([p.step])
            p = machine.finish(spec, p, judge(p.step, p.attempt), due + dt.timedelta(seconds=1))
            continue
        p, ids = waves.dispatch_wave(spec, p, due)
        if not ids:
            continue
        waves_seen.append(ids)
        attempts = {lanes.lane_step("fan", lane.branch, ""): lane.attempt for lane in p.lanes}
        results = [(i, judge(i, attempts[i.rpartition("/")[0] + "/"])) for i in ids]
        p, _ = waves.finish_wave(spec, p, results, due + dt.timedelta(seconds=1))
        assert sum(lane.state is lanes.LaneState.ACTIVE for lane in p.lanes) <= 3
    return p, waves_seen


def test_ten_branches_run_three_at_a_time_and_join_before_the_next_step() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(10)], maxConcurrency=3)
    p, seen = drive(spec, lambda step, attempt: OK)
    assert p.phase is Phase.COMPLETED
    assert seen[0] == ["step:build"] and seen[-1] == ["step:after"]
    assert [len(w) for w in seen[1:-1]] == [3, 3, 3, 1]
    assert max(len(w) for w in seen) <= 3


def test_a_branch_moves_through_its_steps_and_retries_within_its_place() -> None:
    spec = fanout([[call("a1", retries=1, retryDelay="10s"), call("a2")], [call("b1")]], maxConcurrency=1)
    p, seen = drive(spec, lambda step, attempt: BAD if step.endswith("/a1") and attempt == 1 else OK)
    assert p.phase is Phase.COMPLETED
    assert seen[1:-1] == [["step:fan/0/a1"], ["step:fan/0/a1"], ["step:fan/0/a2"], ["step:fan/1/b1"]]


def test_mode_all_fails_on_a_failing_branch_cancels_the_rest_and_runs_the_fallback() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(5)], maxConcurrency=2)
    p, seen = drive(spec, lambda step, attempt: BAD if step.endswith("/b1") else OK)
    assert p.phase is Phase.FAILED
    assert seen[1] == ["step:fan/0/b0", "step:fan/1/b1"]
    assert seen[-1] == ["fallback"]
    assert p.failed_step == "step:fan/1/b1"
    assert p.reason == "branch 1 of step fan failed: step b1 failed after 1 attempt(s): status 500"
    assert not p.lanes  # the lanes are done with once the step has ended


def test_mode_all_leaves_the_branches_not_started_cancelled() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(4)], maxConcurrency=2)
    p = machine.start(spec, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(0)), OK, s(1))
    p, ids = waves.dispatch_wave(spec, p, s(1))
    p, after = waves.finish_wave(spec, p, [(ids[0], OK), (ids[1], BAD)], s(2))
    assert [lane.state.value for lane in after] == ["done", "failed", "cancelled", "cancelled"]
    assert p.step == "fallback"


def test_a_step_that_failed_with_calls_still_out_starts_nothing_more_and_ends_when_they_are_back() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(4)], maxConcurrency=2)
    p = machine.start(spec, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(0)), OK, s(1))
    p, ids = waves.dispatch_wave(spec, p, s(1))
    p, after = waves.finish_wave(spec, p, [(ids[1], BAD)], s(2), out=[ids[0]])
    assert p.step == "step:fan" and p.in_flight, "it waits for the call still out"
    assert [lane.state.value for lane in after] == ["active", "failed", "cancelled", "cancelled"]
    assert waves.dispatch_wave(spec, p, s(2), out=[ids[0]])[1] == [], "nothing more starts"
    p, _ = waves.finish_wave(spec, p, [(ids[0], OK)], s(3))
    assert (p.step, p.failed_step) == ("fallback", "step:fan/1/b1")


def test_a_place_freed_is_taken_while_another_call_is_out() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(3)], maxConcurrency=2)
    p = machine.start(spec, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(0)), OK, s(1))
    p, ids = waves.dispatch_wave(spec, p, s(1))
    p, _ = waves.finish_wave(spec, p, [(ids[0], OK)], s(2), out=[ids[1]])
    p, more = waves.dispatch_wave(spec, p, s(2), out=[ids[1]])
    assert more == ["step:fan/2/b2"] and p.calls == 4


def test_mode_any_succeeds_on_the_first_branch_that_succeeds() -> None:
    spec = fanout([[call("slow"), call("slower")], [call("quick")]], mode="any")
    p = machine.start(spec, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(0)), OK, s(1))
    p, ids = waves.dispatch_wave(spec, p, s(1))
    assert ids == ["step:fan/0/slow", "step:fan/1/quick"]
    p, after = waves.finish_wave(spec, p, [(ids[0], OK), (ids[1], OK)], s(2))
    assert p.step == "step:after"
    assert [lane.state.value for lane in after] == ["cancelled", "done"]


def test_mode_any_fails_only_when_every_branch_failed() -> None:
    spec = fanout([[call("a")], [call("b")]], mode="any")
    p, seen = drive(spec, lambda step, attempt: BAD if "/" in step else OK)
    assert p.phase is Phase.FAILED
    assert p.reason and p.reason.startswith("every branch of step fan failed; branch 0: step a failed")


def test_lanes_are_kept_in_the_stored_progress_and_a_lost_wave_is_made_again() -> None:
    spec = fanout([[call(f"b{i}")] for i in range(4)], maxConcurrency=2)
    p = machine.start(spec, s(0))
    p = machine.finish(spec, machine.dispatch(p, s(0)), OK, s(1))
    p, ids = waves.dispatch_wave(spec, p, s(1))
    p, _ = waves.finish_wave(spec, p, [(ids[0], OK), (ids[1], OK)], s(2))
    out, ids = waves.dispatch_wave(spec, p, s(2))
    stored = Progress.from_storage(out.for_storage())
    assert stored == out and stored.in_flight
    again, retried = waves.dispatch_wave(spec, machine.recover(stored, s(9)), s(9))
    assert retried == ids == ["step:fan/2/b2", "step:fan/3/b3"]


def test_the_seed_form_stores_no_lanes() -> None:
    p = machine.start(TaskSetSpec.model_validate({"tasks": ["http://x.test/a"]}), s(0))
    assert "lanes" not in p.for_storage()


PAR = """\
kind: TaskSet
metadata: {name: fan}
spec:
  steps:
    - name: build
      invoke: http://x.test/build
    - name: fan
      parallel:
        branches:
          - - name: one
              invoke: "http://x.test/one?id=${{ steps.build.output.id }}"
            - name: two
              invoke: "http://x.test/two?id=${{ steps.one.output.id }}"
          - - name: three
              invoke: "http://x.test/three?id=${{ steps.two.output }}"
    - name: after
      invoke: {url: http://x.test/after, body: {first: "${{ steps.fan.output[0] }}"}}
"""


def test_a_branch_reads_the_steps_before_it_and_later_steps_read_the_branches() -> None:
    with pytest.raises(SpecInvalid) as err:
        load_one(PAR)
    (problem,) = err.value.problems
    assert (problem.line, problem.field) == (15, "spec.steps[1].parallel.branches[1][0].invoke.url")
    assert "names step 'two', which does not exist" in problem.message
    (ok,) = load_one(PAR.replace("steps.two.output", "steps.build.output"))
    assert ok.spec.steps[1].parallel.limit == 2


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ("      parallel:\n", "spec.steps[1]", "retries: a parallel step has none of its own"),
        ("        branches:\n", "spec.steps[1].parallel.maxConcurrency", "must be at least 1"),
        ("            - name: two\n", "spec.steps[1].parallel.branches[0][1].name", "is also a step of the TaskSet"),
    ],
)  # fmt: skip
def test_bad_parallel_steps_are_refused_naming_the_field(change: str, field: str, says: str) -> None:
    text = PAR.replace("steps.two.output", "steps.build.output")
    edits = {
        "      parallel:\n": "      retries: 2\n      parallel:\n",
        "        branches:\n": "        maxConcurrency: 0\n        branches:\n",
        "            - name: two\n": "            - name: build\n",
    }
    with pytest.raises(SpecInvalid) as err:
        load_one(text.replace(change, edits[change]))
    assert [(p.field, says in p.message) for p in err.value.problems] == [(field, True)]


def test_a_re_run_from_a_failed_branch_runs_its_parallel_step_again() -> None:
    spec = fanout([[call("b0")], [call("b1")]])
    p, _ = drive(spec, lambda step, attempt: BAD if step.endswith("/b1") else OK)
    assert p.phase is Phase.FAILED and p.failed_step == "step:fan/1/b1"
    again = ondemand.rerun(spec, p, s(60), from_failed=True)
    assert (again.step, again.lanes, again.trigger) == ("step:fan", (), "rerun"), (
        "not the branch's step alone"
    )
    p, ids = waves.dispatch_wave(spec, again, s(60))
    assert ids == ["step:fan/0/b0", "step:fan/1/b1"], (
        "every branch starts again: the step succeeded as a whole or not"
    )
