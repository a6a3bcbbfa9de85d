"""`${{ EXPR }}` in the strings of a TaskSet's steps: finding, parsing and checking them at apply time.

`EXPR` is a JMESPath expression (the `jmespath` package) over the context the
engine builds for each call (`engine.templates`):
`{steps: {NAME: {output, status, attempts, ok}}, run: {number, due}, object: {name, labels}}`.
`check_expressions` refuses at apply time what could never work, each problem
with its field path in the document (the loader turns it into file, line and
column): a syntax error, a name the context does not have, a step that does
not exist or has not run yet when the expression is filled in, and a step name
used twice. A step's call reads the steps before it; its condition check reads
it too; the fallback reads every step (one that did not run reads as null). A
step of a parallel branch reads the steps before the parallel step and the
steps before it in its own branch; later steps read the parallel step as a
whole (`steps.NAME.output[i]`, one item per branch). Only a waitForCallback's
call reads `callback` (`callback.url`, the URL it hands its target).
Called by the loader and the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from lambdaop.spec.calls import EXPRESSION, Invoke
from lambdaop.spec.models import TaskSetSpec, TaskSpec

ROOTS = ("steps", "run", "object")
Loc = tuple[str | int, ...]


@functools.lru_cache(maxsize=4096)
def parse(expression: str) -> ParsedResult:
    """The compiled expression (raises JMESPathError saying what is wrong)."""
    return jmespath.compile(expression.strip())


def expressions(text: str) -> list[str]:
    """The expressions of a string, in order."""
    return [m.group(1).strip() for m in EXPRESSION.finditer(text)]


def whole(text: str) -> str | None:
    """The expression when it is the whole string (its value keeps its JSON type), else None."""
    found = EXPRESSION.fullmatch(text.strip())
    return found.group(1).strip() if found else None


# where a node is evaluated against the same value as its parent (the rest run on elements or results)
_SAME = {"function_expression", "comparator", "and_expression", "or_expression", "not_expression",
         "multi_select_list", "multi_select_dict", "key_val_pair"}  # fmt: skip
_LEFT_ONLY = {"index_expression", "projection", "value_projection", "filter_projection", "flatten", "pipe"}


def _chain(node: dict[str, Any]) -> list[str]:
    """The names a node reads from the value it is evaluated on, as far as they are plain fields."""
    kind, children = node.get("type"), node.get("children") or []
    if kind == "field":
        return [str(node["value"])]
    if kind == "subexpression" and children:
        out = _chain(children[0])
        for child in children[1:]:
            if len(out) >= 2:
                break
            out += _chain(child)[:1]
            if child.get("type") != "field":
                break
        return out
    if kind in _LEFT_ONLY and children:
        return _chain(children[0])
    return []


def references(expression: str) -> list[list[str]]:
    """The paths an expression reads from the context (the first two names of each are what matter)."""
    found: list[list[str]] = []

    def visit(node: dict[str, Any]) -> None:  # `node` is evaluated on the context itself
        kind, children = node.get("type"), node.get("children") or []
        chain = _chain(node)
        if chain:
            found.append(chain)
        if kind in _SAME:
            for child in children:
                visit(child)
        elif (kind in _LEFT_ONLY or kind == "subexpression") and children and not chain:
            visit(children[0])

    visit(parse(expression).parsed)
    return found


def strings_of(invoke: Invoke, where: Loc) -> Iterator[tuple[Loc, str]]:
    """Every string of a call that may hold expressions, with its field path: the url, header and
    query values, body and payload (a `{fromEnv: NAME}` is a secret by reference, never filled in)."""
    if invoke.url is not None:
        yield (*where, "url"), invoke.url
    for group in ("headers", "query"):
        for key, value in getattr(invoke, group).items():
            if isinstance(value, str):
                yield (*where, group, key), value
    yield from _json_strings(invoke.body, (*where, "body"))
    yield from _json_strings(invoke.payload, (*where, "payload"))


def _json_strings(value: Any, where: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict) and set(value) != {"fromEnv"}:
        for key, item in value.items():
            yield from _json_strings(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_strings(item, (*where, i))


def check_expressions(spec: TaskSetSpec) -> list[tuple[Loc, str]]:
    """What is wrong with the named steps of a TaskSet and their expressions, each problem with its
    field path from the document (`spec.steps[1].invoke.body.artifact`)."""
    steps = spec.steps or []
    problems: list[tuple[Loc, str]] = []
    first: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.name in first:
            problems.append((("spec", "steps", i, "name"), f"step name {step.name!r} is used twice (also by spec.steps[{first[step.name]}]); names are unique in a TaskSet"))  # fmt: skip
        first.setdefault(step.name, i)
    names = list(first)

    def check(
        invoke: Invoke,
        where: Loc,
        visible: list[str],
        own: str | None,
        known: list[str] | None = None,
        roots: tuple[str, ...] = ROOTS,
    ) -> None:
        for loc, text in strings_of(invoke, where):
            problems.extend(_text_problems(loc, text, visible, own, known or names, roots))

    for i, step in enumerate(steps):
        here: Loc = ("spec", "steps", i)
        if step.invoke is not None:
            check(step.invoke, (*here, "invoke"), names[:i], step.name)
        if step.waitForCallback is not None:
            check(step.waitForCallback.invoke, (*here, "waitForCallback", "invoke"), names[:i], step.name, roots=(*ROOTS, "callback"))  # fmt: skip
        if step.conditionCheck is not None:
            check(step.conditionCheck.invoke, (*here, "conditionCheck", "invoke"), names[: i + 1], None)
        for field, limit in (
            ("concurrency", step.concurrency),
            ("rate", step.rate),
        ):  # a key reads what the call reads
            if limit is not None:
                problems.extend(_text_problems((*here, field, "key"), limit.key, names[:i], step.name, names))
        for b, branch in enumerate(step.parallel.branches if step.parallel is not None else ()):
            seen: list[str] = []
            for j, inner in enumerate(branch):
                where: Loc = (*here, "parallel", "branches", b, j)
                if inner.name in first:
                    problems.append(((*where, "name"), f"step name {inner.name!r} is also a step of the TaskSet; a branch's steps need names of their own"))  # fmt: skip
                elif inner.name in seen:
                    problems.append(((*where, "name"), f"step name {inner.name!r} is used twice in branch {b}; names are unique in a branch"))  # fmt: skip
                check(
                    inner.invoke,
                    (*where, "invoke"),
                    names[:i] + seen,
                    inner.name,
                    names + list(dict.fromkeys(n.name for n in branch)),
                )
                seen.append(inner.name)
    if spec.fallback is not None and spec.steps is not None:
        check(spec.fallback.invoke, ("spec", "fallback", "invoke"), names, None)
    return problems


TASK_ROOTS = ("run", "object")


def check_task_expressions(spec: TaskSpec) -> list[tuple[Loc, str]]:
    """What is wrong with the expressions of a Task's limit keys (they read `run` and `object`: a
    Task has no steps), each problem with its field path (`spec.concurrency.key`)."""
    problems: list[tuple[Loc, str]] = []
    for field, limit in (("concurrency", spec.concurrency), ("rate", spec.rate)):
        if limit is not None:
            problems.extend(_text_problems(("spec", field, "key"), limit.key, [], None, [], TASK_ROOTS))
    return problems


def _text_problems(
    loc: Loc, text: str, visible: list[str], own: str | None, names: list[str], roots: tuple[str, ...] = ROOTS
) -> list[tuple[Loc, str]]:
    """What is wrong with the expressions of one string."""
    out: list[tuple[Loc, str]] = []
    if text.count("${{") != len(expressions(text)):
        out.append((loc, "an expression opened with `${{` is not closed with `}}`"))
    for expression in expressions(text):
        out.extend((loc, m) for m in _problems(expression, visible, own, names, roots))
    return out


def _problems(
    expression: str, visible: list[str], own: str | None, names: list[str], roots: tuple[str, ...] = ROOTS
) -> list[str]:
    shown = f"`${{{{ {expression} }}}}`"
    if not expression:
        return [f"{shown} is empty: write a JMESPath expression such as steps.NAME.output"]
    try:
        chains = references(expression)
    except JMESPathError as exc:
        return [f"{shown} is not a JMESPath expression: {' '.join(str(exc).split())}"]
    out = []
    for chain in chains:
        root = chain[0]
        if root not in roots:
            also = "" if root != "callback" else " (callback.url is there only in a waitForCallback's invoke)"
            also = " (a Task has no steps)" if root == "steps" and "steps" not in roots else also
            out.append(
                f"{shown} reads {root!r}; expressions read {', '.join(roots[:-1])} and {roots[-1]}{also}"
            )
            continue
        if root != "steps" or len(chain) < 2 or chain[1] in visible:
            continue
        name = chain[1]
        if name not in names:
            out.append(
                f"{shown} names step {name!r}, which does not exist (the steps are {', '.join(names)})"
            )
        elif name == own:
            out.append(f"{shown} names step {name!r} itself: a step reads only the steps before it (its conditionCheck may read it)")  # fmt: skip
        else:
            out.append(
                f"{shown} names step {name!r}, which comes later: a step reads only the steps before it"
            )
    return out
