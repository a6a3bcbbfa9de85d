"""`concurrency` and `rate` as written: their bounds, their keys' expressions, and where they go."""

from __future__ import annotations

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.spec import load_documents, load_one, spec_hash

TASK = "kind: Task\nmetadata: {{name: t}}\nspec:\n  invoke: https://example.com/hook\n  {limits}\n"


def problems(text: str) -> list[str]:
    (doc,) = load_documents(text, "f.yaml")
    return [str(p) for p in doc.problems]


def test_a_task_s_limits_are_read_and_none_change_nothing_of_a_spec_without_them() -> None:
    (obj,) = load_one(TASK.format(limits="concurrency: {key: target-a, limit: 5}\n  rate: {key: r, limit: 2, per: 1m}"))  # fmt: skip
    assert obj.spec.concurrency is not None and obj.spec.concurrency.limit == 5
    assert obj.spec.rate is not None and obj.spec.rate.per.total_seconds() == 60
    (plain,) = load_one(TASK.format(limits="retries: 0"))
    (before,) = load_one(
        "kind: Task\nmetadata: {name: t}\nspec:\n  invoke: https://example.com/hook\n  retries: 0\n"
    )
    assert spec_hash(plain) == spec_hash(before), "a spec without limits is stored as before"


@pytest.mark.parametrize(
    ("limits", "field", "says"),
    [
        ("concurrency: {key: k, limit: 0}", "spec.concurrency.limit", "at least 1"),
        ("concurrency: {key: k, limit: 1001}", "spec.concurrency.limit", "1000"),
        ("rate: {key: k, limit: 1, per: 500ms}", "spec.rate.per", "from 1s to 1d"),
        ("rate: {key: k, limit: 1}", "spec.rate.per", ""),
        ('concurrency: {key: "", limit: 1}', "spec.concurrency.key", ""),
        (
            'concurrency: {key: "${{ steps.a.output }}", limit: 1}',
            "spec.concurrency.key",
            "a Task has no steps",
        ),
        ('rate: {key: "${{ object.labels.team", limit: 1, per: 1s}', "spec.rate.key", "not closed"),
    ],
)
def test_bad_limits_of_a_task_are_refused_with_line_and_field(limits: str, field: str, says: str) -> None:
    found = problems(TASK.format(limits=limits))
    assert found and all("f.yaml:5:" in p for p in found), found
    assert any(field in p and says in p for p in found), found


def test_a_step_s_key_reads_the_steps_before_it_and_a_parallel_step_has_no_limits() -> None:
    steps = """\
kind: TaskSet
metadata: {name: s}
spec:
  steps:
    - name: a
      invoke: https://example.com/a
      rate: {key: "a-${{ steps.b.output.id }}", limit: 1, per: 1s}
    - name: b
      invoke: https://example.com/b
      concurrency: {key: "b-${{ steps.a.output.id }}-${{ run.number }}", limit: 1}
"""
    (found,) = [p for p in problems(steps)]
    assert "f.yaml:7:" in found and "spec.steps[0].rate.key" in found and "comes later" in found
    parallel = """\
kind: TaskSet
metadata: {name: s}
spec:
  steps:
    - name: fan
      parallel: {branches: [[{name: x, invoke: "https://example.com/x"}]]}
      concurrency: {key: k, limit: 1}
"""
    (found,) = problems(parallel)
    assert "spec.steps[0]" in found and "a parallel step makes no call of its own" in found
    branch = parallel.replace("invoke: \"https://example.com/x\"}", "invoke: \"https://example.com/x\", rate: {key: k, limit: 1, per: 1s}}").replace("      concurrency: {key: k, limit: 1}\n", "")  # fmt: skip
    assert any(
        "branches[0][0]" in p and "cannot be set on a step of a parallel branch" in p
        for p in problems(branch)
    )
    with pytest.raises(SpecInvalid):
        load_one(parallel)
