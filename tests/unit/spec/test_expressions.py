"""Expressions of named steps checked at apply time: each problem with file, line and field."""

from __future__ import annotations

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.spec import load_one
from lambdaop.spec.expressions import references

HEAD = "kind: TaskSet\nmetadata: {name: rt}\nspec:\n  steps:\n"


def problems(steps: str, tail: str = "") -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        load_one(HEAD + steps + tail, "rt.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_valid_three_step_set_loads() -> None:
    (obj,) = load_one(
        HEAD
        + """\
    - name: build
      invoke: https://example.test/build
      conditionCheck: {invoke: "https://example.test/ok/${{ steps.build.output.id }}"}
    - name: deploy
      invoke: {url: https://example.test/deploy, method: POST, body: {artifact: "${{ steps.build.output.id }}"}}
    - name: verify
      invoke: "https://example.test/${{ join('/', [steps.build.output.id, to_string(run.number)]) }}"
  fallback:
    invoke: {url: https://example.test/undo, query: {of: "${{ steps.verify.status }}"}}
"""
    )
    assert [s.name for s in obj.spec.steps or ()] == ["build", "deploy", "verify"]  # type: ignore[union-attr]


def test_unknown_later_and_own_steps_are_refused_with_line_and_field() -> None:
    found = problems(
        """\
    - name: build
      invoke: {url: https://example.test/b, body: {me: "${{ steps.build.output }}"}}
    - name: deploy
      invoke:
        url: https://example.test/d
        body:
          a: "${{ steps.bild.output.id }}"
          b: "${{ steps.verify.status }}"
    - name: verify
      invoke: https://example.test/v
"""
    )
    assert found == [
        "rt.yaml:6:52: spec.steps[0].invoke.body.me: `${{ steps.build.output }}` names step 'build' itself: a step reads only the steps before it (its conditionCheck may read it)",
        "rt.yaml:11:11: spec.steps[1].invoke.body.a: `${{ steps.bild.output.id }}` names step 'bild', which does not exist (the steps are build, deploy, verify)",
        "rt.yaml:12:11: spec.steps[1].invoke.body.b: `${{ steps.verify.status }}` names step 'verify', which comes later: a step reads only the steps before it",
    ]


def test_syntax_roots_unclosed_and_duplicate_names() -> None:
    found = problems(
        """\
    - name: a
      invoke: https://example.test/a
    - name: a
      invoke:
        url: https://example.test/${{ steps.a.( }}
        headers: {x-one: "${{ env.HOME }}", x-two: "${{ steps.a.output"}
"""
    )
    assert found[0] == "rt.yaml:7:7: spec.steps[1].name: step name 'a' is used twice (also by spec.steps[0]); names are unique in a TaskSet"  # fmt: skip
    assert "spec.steps[1].invoke.url: `${{ steps.a.( }}` is not a JMESPath expression" in found[1]
    assert found[2].endswith("spec.steps[1].invoke.headers.x-one: `${{ env.HOME }}` reads 'env'; expressions read steps, run and object")  # fmt: skip
    assert found[3].endswith("spec.steps[1].invoke.headers.x-two: an expression opened with `${{` is not closed with `}}`")  # fmt: skip


def test_expressions_in_urls_are_refused_outside_named_steps() -> None:
    text = "kind: Task\nmetadata: {name: t}\nspec:\n  invoke: 'https://example.test/${{ steps.a.output }}'\n"
    (obj,) = load_one(text.replace("${{ steps.a.output }}", "plain"))
    with pytest.raises(SpecInvalid) as caught:
        load_one(text, "t.yaml")
    (problem,) = caught.value.problems
    assert "invoke.url: an expression `${{ … }}` works only in a TaskSet's `steps`" in str(problem)
    seed = "kind: TaskSet\nmetadata: {name: s}\nspec:\n  tasks: ['${{ run.number }}']\n"
    with pytest.raises(SpecInvalid, match="invalid spec") as caught:
        load_one(seed, "s.yaml")
    assert "tasks[0].url: an expression" in str(caught.value.problems[0])


def test_tasks_and_steps_exclude_each_other() -> None:
    both = "kind: TaskSet\nmetadata: {name: s}\nspec:\n  tasks: [https://example.test/a]\n  steps: [{name: a, invoke: https://example.test/a}]\n"  # fmt: skip
    with pytest.raises(SpecInvalid) as caught:
        load_one(both)
    assert "give either `tasks` (calls in sequence) or `steps` (named steps), one of them" in str(caught.value.problems[0])  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("steps.build.output.id", [["steps", "build"]]),
        ("steps.build.output[0].id", [["steps", "build"]]),
        ("join('-', [steps.a.output.x, to_string(run.number)])", [["steps", "a"], ["run", "number"]]),
        ("steps.*.output", [["steps"]]),
        ("steps.a.output | length(@)", [["steps", "a"]]),
        ("steps.a.output.items[?x == `1`].y", [["steps", "a"]]),
        ("{k: object.name, v: steps.b.status}", [["object", "name"], ["steps", "b"]]),
        ("`3`", []),
    ],
)
def test_references_are_what_an_expression_reads_from_the_context(
    expression: str, paths: list[list[str]]
) -> None:
    assert [p[:2] for p in references(expression)] == paths
