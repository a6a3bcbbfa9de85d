"""Spec models: durations, times, invoke forms, and errors that name file, line and field."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.spec import format_duration, json_schemas, load_documents, load_one, parse_duration

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
        ("PT30S", 30),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("0", 0),
        (0, 0),
        ("1.5s", 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["-5s", "5", 5, "5x", "", "P", "PT", True, "1h-5m"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_duration_round_trip() -> None:
    for text in ("30s", "5m", "1h30m", "250ms", "0s"):
        assert format_duration(parse_duration(text)) == text


TASK = """\
apiVersion: lambdaop/v1
kind: Task
metadata:
  name: nightly-report
  labels: {team: billing}
spec:
  invoke:
    url: https://a6ilch6fb5.execute-api.ap-south-1.amazonaws.com/default/trial
    method: POST
    headers: {x-api-key: {fromEnv: TRIAL_KEY}}
    body: {report: daily}
    timeout: 30s
  at: 2026-11-28T09:00:00+05:30
  retries: 3
  retryDelay: 30s
"""


def test_design_task_loads() -> None:
    (task,) = load_one(TASK, "t.yaml")
    assert task.kind == "Task"
    assert task.spec.invoke.method == "POST"
    assert task.spec.at == dt.datetime(2026, 11, 28, 3, 30, tzinfo=dt.UTC)
    assert task.spec.retries == 3


def test_invoke_as_plain_url_and_default_method() -> None:
    (task,) = load_one("kind: Task\nmetadata: {name: a}\nspec: {invoke: 'http://x.test/a', after: 10m}\n")
    assert task.spec.invoke.url == "http://x.test/a"
    assert task.spec.invoke.method == "GET"


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecInvalid) as info:
        load_one(text, "bad.yaml")
    return [str(p) for p in info.value.problems]


def test_errors_name_file_line_and_field() -> None:
    text = TASK.replace("  retries: 3\n", "  retries: -1\n  bogus: 1\n").replace("+05:30", "")
    text = text.replace("https://a6ilch6fb5", "ftp://a6ilch6fb5")
    problems = _problems(text)
    assert any(p.startswith("bad.yaml:8:") and "spec.invoke.url" in p and "http" in p for p in problems), (
        problems
    )
    assert any(p.startswith("bad.yaml:13:") and "spec.at" in p and "offset" in p for p in problems), problems
    assert any(p.startswith("bad.yaml:14:") and "spec.retries" in p for p in problems), problems
    assert any(
        p.startswith("bad.yaml:15:") and "spec.bogus" in p and "unknown field" in p for p in problems
    ), problems


def test_yaml_syntax_error_names_line() -> None:
    (problem,) = _problems("kind: Task\nmetadata: {name: a\nspec: {}\n")
    assert problem.startswith("bad.yaml:3:") and "YAML syntax error" in problem


def test_unknown_kind_and_non_mapping() -> None:
    assert "kind must be Task or TaskSet" in _problems("kind: Job\nmetadata: {name: a}\n")[0]
    assert "must be a mapping" in _problems("- 1\n- 2\n")[0]


def test_each_document_is_validated_on_its_own() -> None:
    text = TASK + "---\nkind: Task\nmetadata: {name: b}\nspec: {invoke: 'nope'}\n"
    docs = load_documents(text, "two.yaml")
    assert [d.spec is not None for d in docs] == [True, False]
    assert docs[1].line == 17 and docs[1].problems[0].line == 19


def test_at_and_after_are_exclusive() -> None:
    assert (
        "not both"
        in _problems(
            "kind: Task\nmetadata: {name: a}\nspec: {invoke: 'http://x', at: '2026-01-01T00:00:00Z', after: 1s}\n"
        )[0]
    )


TASKSET = """\
kind: TaskSet
metadata: {name: release-train}
spec:
  initialDelay: 5m
  tasks:
    - https://example.test/prod/build
    - {url: https://example.test/prod/deploy, method: POST, retries: 2}
  conditionCheck:
    invoke: https://example.test/prod/healthy
    delay: 30s
    retries: 5
    retryDelay: 10s
  fallback:
    invoke: https://example.test/prod/rollback
"""


def test_taskset_loads() -> None:
    (ts,) = load_one(TASKSET)
    assert ts.spec.tasks[1].retries == 2 and ts.spec.tasks[0].retries == 0
    assert ts.spec.conditionCheck is not None and ts.spec.conditionCheck.delay == dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (
            lambda t: t.replace(
                "    - https://example.test/prod/build\n    - {url: https://example.test/prod/deploy, method: POST, retries: 2}\n",
                "    []\n",
            ),
            "spec.tasks",
        ),
        (lambda t: t.replace("delay: 30s", "delay: -30s"), "spec.conditionCheck.delay"),
        (
            lambda t: t.replace("    invoke: https://example.test/prod/healthy\n", ""),
            "spec.conditionCheck.invoke",
        ),
        (
            lambda t: t.replace("    invoke: https://example.test/prod/rollback\n", "    retries: 1\n"),
            "spec.fallback.invoke",
        ),
    ],
)
def test_invalid_taskset_shapes(change, expect: str) -> None:  # type: ignore[no-untyped-def]
    problems = _problems(change(TASKSET))
    assert any(expect in p for p in problems), problems


def test_committed_schemas_match_the_models() -> None:
    for name, schema in json_schemas().items():
        committed = json.loads((ROOT / "schemas" / name).read_text())
        assert committed == json.loads(json.dumps(schema)), (
            f"schemas/{name} is out of date: run `lambdaop schema` and commit the result"
        )


def test_validate_command_reports_every_problem_and_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdaop.cli.main import main

    (tmp_path / "ok.yaml").write_text("kind: Task\nmetadata: {name: a}\nspec: {invoke: 'http://x.test/a'}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dup.yml").write_text(
        "kind: Task\nmetadata: {name: a}\nspec: {invoke: 'http://x.test/b'}\n"
    )
    (tmp_path / "ok.status.yaml").write_text("not: [a spec\n")  # status files are not specs
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Task 'a' is defined more than once" in err and "dup.yml:1" in err and "ok.yaml:1" in err
    (tmp_path / "sub" / "dup.yml").write_text(
        "kind: Task\nmetadata: {name: b}\nspec: {invoke: 'http://x.test/b', at: 1}\n"
    )
    assert main(["validate", str(tmp_path)]) == 1
    assert "dup.yml:3:" in capsys.readouterr().err
    (tmp_path / "sub" / "dup.yml").unlink()
    assert main(["validate", str(tmp_path)]) == 0
