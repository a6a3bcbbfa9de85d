"""The batch validator on its own: documents in, located problems out; no server, no store."""

from __future__ import annotations

from lambdaop.app.batch import Checker, DefinedTwice
from lambdaop.core.errors import Problem
from lambdaop.loop.outbound import Policy
from lambdaop.spec import Document, load_documents


def task(name: str, url: str = "https://api.example.com/ok", **spec: str) -> str:
    lines = "".join(f"  {k}: {v}\n" for k, v in spec.items())
    return (
        f"apiVersion: lambdaop/v1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  invoke: '{url}'\n{lines}"
    )


def file(name: str, *docs: str) -> tuple[str, list[Document]]:
    return name, load_documents("---\n".join(docs), name)


def body(*docs: str) -> tuple[None, list[Document]]:
    """A request body: one file with no name."""
    return None, load_documents("---\n".join(docs))


def test_a_good_batch_has_no_problem() -> None:
    files = [file("a.yaml", task("first"), task("second", after="1h")), file("b.yaml", task("third"))]
    assert Checker().check(files) == []
    assert Checker().check([body(task("first"), task("second"))]) == []


def test_a_bad_field_is_reported_with_its_file_line_and_field_in_words() -> None:
    (problem,) = Checker().check([file("team/a.yaml", task("ok"), task("bad", retries="-1"))])
    assert (problem.file, problem.line, problem.field) == ("team/a.yaml", 14, "spec.retries")
    assert str(problem) == "team/a.yaml:14:3: spec.retries: must be at least 0; got -1"


def test_a_bad_document_of_a_body_is_named_by_its_place_in_the_body() -> None:
    (problem,) = Checker().check([body(task("ok"), task("bad", retries="-1"))])
    assert (problem.file, problem.document, problem.field) == (None, 1, "spec.retries")
    assert str(problem) == "line 14: document 2: spec.retries: must be at least 0; got -1"


def test_two_documents_with_one_name_are_both_refused() -> None:
    problems = Checker().check([body(task("twin"), task("other"), task("twin"))])
    message = "Task 'twin' is defined more than once (document 1 (line 1), document 3 (line 15)); none of them is applied"  # fmt: skip
    assert [(p.document, p.line, p.field, p.message) for p in problems] == [
        (0, 1, "metadata.name", message),
        (2, 15, "metadata.name", message),
    ]


def test_one_name_in_two_files_is_refused_in_both() -> None:
    problems = Checker().check([file("a.yaml", task("twin")), file("b.yaml", task("other"), task("twin"))])
    assert [(p.file, p.line) for p in problems] == [("a.yaml", 1), ("b.yaml", 8)]
    assert all("(a.yaml:1, b.yaml:8)" in p.message for p in problems)


def test_the_same_name_in_two_kinds_is_two_names() -> None:
    taskset = "apiVersion: lambdaop/v1\nkind: TaskSet\nmetadata: {name: twin}\nspec:\n  tasks:\n    - 'https://api.example.com/a'\n"  # fmt: skip
    assert Checker().check([body(task("twin"), taskset)]) == []


def test_a_name_another_file_holds_is_reported_in_the_batch_and_in_that_file() -> None:
    held = {"old.yaml": {("Task", "twin"): 8, ("Task", "alone"): 1}}
    problems = Checker().check([file("new.yaml", task("twin"), task("fresh"))], held)
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("new.yaml", 1, "metadata.name"),
        ("old.yaml", 8, "metadata.name"),
    ]
    assert {p.message for p in problems} == {
        "Task 'twin' is defined more than once (new.yaml:1, old.yaml:8); none of them is applied"
    }
    twin = problems[0]
    assert isinstance(twin, DefinedTwice) and (twin.kind, twin.name) == ("Task", "twin")


def test_what_only_other_files_hold_is_not_the_batch_s_to_judge() -> None:
    held = {"x.yaml": {("Task", "twin"): 1}, "y.yaml": {("Task", "twin"): 1}}
    assert Checker().check([file("new.yaml", task("fresh"))], held) == []


def test_a_file_of_the_batch_defines_its_names_anew() -> None:
    """A document moved from a.yaml to b.yaml in one batch is not defined twice."""
    held = {"a.yaml": {("Task", "moved"): 8}}
    files = [file("a.yaml", task("stays")), file("b.yaml", task("moved"))]
    assert Checker().check(files, held) == []


def test_a_file_applied_whole_is_reported_for_its_bad_document_alone_and_keeps_what_it_held() -> None:
    """The folder's files: a broken file changes nothing, so its other documents claim no name and
    call nothing (neither `twin` nor 10.0.0.1 is reported), and the names it held stand."""
    broken = file("broken.yaml", task("twin", "http://10.0.0.1/x"), task("bad", retries="-1"))
    good = file("good.yaml", task("twin"), task("kept"))
    held = {"broken.yaml": {("Task", "kept"): 1}}
    problems = Checker().check([broken, good], held, whole=True)
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("broken.yaml", 1, "metadata.name"),
        ("broken.yaml", 14, "spec.retries"),
        ("good.yaml", 8, "metadata.name"),
    ]
    assert problems[0].message.startswith(
        "Task 'kept' is defined more than once (good.yaml:8, broken.yaml:1)"
    )


def test_not_whole_every_document_of_a_file_is_judged() -> None:
    """The API and validate: a file with a bad document still has its names and targets judged."""
    broken = file("broken.yaml", task("twin", "http://10.0.0.1/x"), task("bad", retries="-1"))
    held = {"broken.yaml": {("Task", "kept"): 1}}  # replaced by what the file defines now
    problems = Checker().check([broken, file("good.yaml", task("twin"), task("kept"))], held)
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("broken.yaml", 1, "spec.invoke.url"),
        ("broken.yaml", 1, "metadata.name"),
        ("broken.yaml", 14, "spec.retries"),
        ("good.yaml", 1, "metadata.name"),
    ]


def test_a_target_the_outbound_policy_refuses_is_reported_with_its_field() -> None:
    docs = [body(task("inside", "http://127.0.0.1:9/ok"), task("outside"))]
    (problem,) = Checker(Policy()).check(docs)
    assert (problem.document, problem.line, problem.field) == (0, 1, "spec.invoke.url")
    assert "a loopback address" in problem.message and "--allow-hosts 127.0.0.1" in problem.message
    assert Checker(Policy.parse("127.0.0.1")).check(docs) == []


def test_a_name_defined_twice_is_answered_like_any_problem() -> None:
    (first, _) = Checker().check([body(task("twin"), task("twin"))])
    assert isinstance(first, DefinedTwice)
    plain = Problem(first.message, field=first.field, line=first.line, document=first.document)
    assert first.as_dict() == plain.as_dict() and str(first) == str(plain)
