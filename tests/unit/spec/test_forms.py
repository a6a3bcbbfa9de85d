"""Every form a Task or TaskSet takes is described where its users look for it.

For each form (a kind of call, of timing, of TaskSet and of step): the JSON schema in schemas/
has its field, the OpenAPI document has it in the same model, a YAML block of the README writes
it, and an example under examples/specs/ uses it (every example loads without a problem; the
walkthrough's test runs `lambdaop validate` on them). A form added to the models, and to FORMS,
without the rest fails here; so does any field of the schemas that no YAML block of the README
writes (its spec reference), FORMS or not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdaop.api.openapi import openapi_document
from lambdaop.spec.loading import load_documents

ROOT = Path(__file__).resolve().parents[3]
Spec = dict[str, Any]


def _invoke(spec: Spec) -> Spec:
    invoke = spec.get("invoke")
    return invoke if isinstance(invoke, dict) else {"url": invoke} if isinstance(invoke, str) else {}


def _steps(spec: Spec) -> list[Spec]:
    return list(spec.get("steps") or [])


# (the form, the kind of document, the schema model and the field that write it, what a spec of it holds)
# fmt: off
FORMS: list[tuple[str, str, str, str, Callable[[Spec], bool]]] = [
    ("a call to a URL", "Task", "Invoke", "url", lambda s: "url" in _invoke(s)),
    ("a call to a Lambda function by ARN", "Task", "Invoke", "lambda", lambda s: "lambda" in _invoke(s)),
    ("a call to a Function URL signed with SigV4", "Task", "Invoke", "auth", lambda s: _invoke(s).get("auth") == "aws_iam"),
    ("a call after a delay", "Task", "TaskSpec", "after", lambda s: "after" in s),
    ("a recurring Task on a cron schedule", "Task", "Schedule", "cron", lambda s: "cron" in (s.get("schedule") or {})),
    ("a recurring TaskSet at a fixed rate", "TaskSet", "Schedule", "every", lambda s: "every" in (s.get("schedule") or {})),
    ("retries with backoff", "Task", "TaskSpec", "backoff", lambda s: "backoff" in s),
    ("a failure notification", "Task", "TaskSpec", "onFailure", lambda s: "onFailure" in s),
    ("tasks in sequence, with a condition check and a fallback", "TaskSet", "TaskSetSpec", "tasks", lambda s: bool(s.get("tasks")) and "conditionCheck" in s and "fallback" in s),
    ("named steps that read earlier outputs", "TaskSet", "StepSpec", "invoke", lambda s: any("${{ steps." in json.dumps(t) for t in _steps(s))),
    ("a step's own condition check", "TaskSet", "StepSpec", "conditionCheck", lambda s: any("conditionCheck" in t for t in _steps(s))),
    ("a parallel step", "TaskSet", "StepSpec", "parallel", lambda s: any("parallel" in t for t in _steps(s))),
    ("a step waiting for a callback", "TaskSet", "StepSpec", "waitForCallback", lambda s: any("waitForCallback" in t for t in _steps(s))),
    ("notifications of a run's events", "TaskSet", "TaskSetSpec", "notify", lambda s: bool(s.get("notify"))),
]
# fmt: on
SCHEMA = {"Task": "task.schema.json", "TaskSet": "taskset.schema.json"}


def _examples() -> list[tuple[str, str, Spec]]:
    """(file, kind, spec) of every document under examples/specs/, each loaded without a problem."""
    found = []
    for path in sorted((ROOT / "examples" / "specs").glob("*.yaml")):
        text = path.read_text()
        for doc in load_documents(text, path.name):
            assert not doc.problems, doc.problems
        found += [(path.name, d["kind"], d["spec"]) for d in yaml.safe_load_all(text) if d]
    return found


def _readme_blocks() -> str:
    return "\n".join(re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S))


@pytest.mark.parametrize(("form", "kind", "model", "field", "holds"), FORMS, ids=[f[0] for f in FORMS])
def test_the_form_is_in_the_schemas_the_openapi_document_the_readme_and_an_example(
    form: str, kind: str, model: str, field: str, holds: Callable[[Spec], bool]
) -> None:
    schema = json.loads((ROOT / "schemas" / SCHEMA[kind]).read_text())
    assert field in schema["$defs"][model]["properties"], f"schemas/{SCHEMA[kind]}: {model}.{field}"
    component = openapi_document()["components"]["schemas"][model]
    assert field in component["properties"], f"the OpenAPI document's {model} has no {field}"
    assert re.search(rf"(^|[\s{{,-]){field}:", _readme_blocks(), re.M), (
        f"no YAML block of the README writes {field}"
    )
    used = [name for name, k, spec in _examples() if k == kind and holds(spec)]
    assert used, f"no example under examples/specs/ is {form} (a {kind} with {field})"


def _fields(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema."""
    if isinstance(schema, dict):
        found = set(schema.get("properties") or ())
        return found.union(*(_fields(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_fields(v) for v in schema))
    return set()


@pytest.mark.parametrize("name", sorted(SCHEMA.values()))
def test_every_field_of_the_schemas_is_written_in_a_yaml_block_of_the_readme(name: str) -> None:
    blocks = _readme_blocks()
    fields = _fields(json.loads((ROOT / "schemas" / name).read_text()))
    unwritten = sorted(f for f in fields if not re.search(rf"(^|[\s{{,-]){re.escape(f)}:", blocks, re.M))
    assert not unwritten, f"schemas/{name}: no YAML block of the README writes {', '.join(unwritten)}"


def test_a_limit_on_a_branch_step_is_refused_in_words() -> None:
    text = """apiVersion: lambdaop/v1
kind: TaskSet
metadata: {name: fan-out}
spec:
  steps:
    - name: fan
      parallel:
        branches:
          - - name: a
              invoke: https://example.com/a
              concurrency: {key: x, limit: 2}
"""
    [doc] = load_documents(text, "fan.yaml")
    [problem] = doc.problems
    assert problem.line == 9 and problem.field == "spec.steps[0].parallel.branches[0][0]", problem
    assert "concurrency (limits per key) cannot be set on a step of a parallel branch" in problem.message
    assert "maxConcurrency" in problem.message and "unknown field" not in problem.message
