"""Filling in the `${{ EXPR }}` of a named step's call from what the run knows so far.

`context` is what an expression reads: `steps` (each step of this run that has
ended: `output`, `status`, `attempts`, `ok`), `run` (`number`, `due`) and
`object` (`name`, `labels`). `render` evaluates every expression of a call's
url, query and header values, body and payload: an expression that is the
whole string keeps its JSON type (a number stays a number, an object an
object); inside a longer string its value is written as text (a string as
is, null as nothing, anything else as JSON). A `{fromEnv: NAME}` is never
filled in here (the invoker reads it at call time), so no secret enters an
expression. What cannot be filled in raises `TemplateError`, which fails the
attempt as a `config` failure. Pure. Called by the loop's results.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from jmespath.exceptions import JMESPathError
from pydantic import ValidationError

from lambdaop.engine.outputs import StepOutput
from lambdaop.spec import Invoke
from lambdaop.spec.calls import EXPRESSION
from lambdaop.spec.expressions import parse, whole


class TemplateError(Exception):
    """An expression of a call could not be filled in; the message names the field."""


def context(
    outputs: Mapping[str, StepOutput],
    run: int,
    due: dt.datetime | None,
    name: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """What expressions read (`outputs` already those of this run)."""
    return {
        "steps": {step: out.in_context() for step, out in outputs.items()},
        "run": {"number": run, "due": due.isoformat().replace("+00:00", "Z") if due else None},
        "object": {"name": name, "labels": dict(labels)},
    }


def render(invoke: Invoke, ctx: Mapping[str, Any], where: str) -> Invoke:
    """The call with its expressions filled in, checked again as a call (`where` names it)."""
    data = invoke.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in ("url", "body", "payload"):
        if key in data:
            data[key] = _fill(data[key], ctx, f"{where}.{key}", key == "url")
    for group in ("headers", "query"):
        data[group] = {k: _fill(v, ctx, f"{where}.{group}.{k}", True) for k, v in data.get(group, {}).items()}
    try:
        return Invoke.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TemplateError(f"{where}{'.' + field if field else ''}, once filled in: {message}") from None


def fill_text(value: str, ctx: Mapping[str, Any], where: str) -> str:
    """One string with its expressions filled in, as text (a limit's key)."""
    return str(_string(value, ctx, where, True))


def _fill(value: Any, ctx: Mapping[str, Any], where: str, text: bool) -> Any:
    if isinstance(value, str):
        return _string(value, ctx, where, text)
    if isinstance(value, dict):
        if set(value) == {"fromEnv"}:
            return value
        return {k: _fill(v, ctx, f"{where}.{k}", False) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx, f"{where}[{i}]", False) for i, v in enumerate(value)]
    return value


def _string(value: str, ctx: Mapping[str, Any], where: str, text: bool) -> Any:
    if "${{" not in value:
        return value
    alone = whole(value)
    if alone is not None:
        found = _evaluate(alone, ctx, where)
        return _as_text(found) if text else found
    return EXPRESSION.sub(lambda m: _as_text(_evaluate(m.group(1).strip(), ctx, where)), value)


def _evaluate(expression: str, ctx: Mapping[str, Any], where: str) -> Any:
    try:
        return parse(expression).search(ctx)
    except JMESPathError as exc:
        raise TemplateError(
            f"{where}: `${{{{ {expression} }}}}` failed: {' '.join(str(exc).split())}"
        ) from None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
