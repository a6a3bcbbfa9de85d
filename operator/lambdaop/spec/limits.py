"""Bounds on what lambdaop accepts, checked before anything expensive or fragile runs.

`check_yaml` walks the C parser's event stream (no tree is built, nothing
recurses) and refuses a text that nests too deep or whose aliases would
expand past a node budget, so the composer, which recurses, never sees one.
`load_json` refuses JSON nested too deep. `storable` walks any parsed value
without recursion and names each place that BSON or an HTTP call cannot hold:
NUL or `$` in keys, integers beyond 64 bits, NaN and infinities, lone
surrogates, oversized strings. Called by spec (YAML and JSON documents) and
api (request bodies of the original routes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
)

from lambdaop.core.errors import Problem

MAX_TEXT = 1024 * 1024  # a spec file or request body, in bytes
MAX_DEPTH = 32  # mappings and sequences inside one another
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add by expansion, per text
MAX_STRING = 64 * 1024  # one string value, in characters
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Limit(Exception):
    """A text or value past one of the limits; the message names the limit."""

    message: str
    line: int | None = None
    column: int | None = None

    def problem(self, file: str | None = None) -> Problem:
        return Problem(self.message, file=file, line=self.line, column=self.column)


def check_size(text: str | bytes) -> None:
    size = len(text.encode()) if isinstance(text, str) else len(text)
    if size > MAX_TEXT:
        raise Limit(f"the text is {size} bytes; at most {MAX_TEXT} (1 MiB) are accepted")


def _mark(event: Any) -> tuple[int | None, int | None]:
    mark = getattr(event, "start_mark", None)
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def check_yaml(text: str) -> None:
    """Refuse YAML whose nesting or alias expansion is past the limits (syntax errors pass through).

    Works on parser events only: memory and time stay linear in the text.
    """
    check_size(text)
    parser = YAML(typ="safe", pure=False)
    depth = 0
    added = 0
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    open_: list[tuple[str | None, int]] = []  # (anchor, nodes inside) per open collection
    try:
        for event in parser.parse(text):
            if isinstance(event, AliasEvent):
                nodes = sizes.get(str(event.anchor), 1)
                added += nodes
                if added > MAX_ALIAS_NODES:
                    line, col = _mark(event)
                    raise Limit(
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?); "
                        "write the values out or use fewer references",
                        line,
                        col,
                    )
                if open_:
                    anchor, count = open_[-1]
                    open_[-1] = (anchor, count + nodes)
                continue
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line, col = _mark(event)
                    raise Limit(f"nested deeper than {MAX_DEPTH} levels", line, col)
                open_.append((event.anchor, 1))
                continue
            if isinstance(event, CollectionEndEvent):
                depth -= 1
                anchor, count = open_.pop() if open_ else (None, 1)
                if anchor is not None:
                    sizes[str(anchor)] = count
                if open_:
                    parent, total = open_[-1]
                    open_[-1] = (parent, total + count)
                continue
            if isinstance(event, NodeEvent):  # a scalar
                if event.anchor is not None:
                    sizes[str(event.anchor)] = 1
                if open_:
                    anchor, count = open_[-1]
                    open_[-1] = (anchor, count + 1)
    except YAMLError:
        return  # the loaders report syntax errors with their line and column


def load_json(data: bytes | str) -> Any:
    """`json.loads`, refusing documents nested past the limit (never a RecursionError)."""
    check_size(data)
    text = data.decode() if isinstance(data, bytes) else data
    depth = 0
    in_string = escaped = False
    for char in text:  # a cheap scan, so the C decoder never recurses deep
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise Limit(f"nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1
    return json.loads(text)


def printable(key: Any) -> str:
    """A key as it can be shown in a message (control characters escaped)."""
    text = str(key)
    return text if text.isprintable() else json.dumps(text)[1:-1]


def _path(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part)}" if out else printable(part))
    return out


def _bad_string(text: str) -> str | None:
    if len(text) > MAX_STRING:
        return f"text is {len(text)} characters; at most {MAX_STRING} are accepted"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text holds a lone surrogate (not valid Unicode)"
    return None


Path = tuple[Any, ...]


def storable(value: Any) -> list[Problem]:
    """Every place in a parsed value that the store or an HTTP call cannot hold, by field path."""
    return [Problem(message, field=_path(path) or None) for path, message in unstorable(value)]


def unstorable(value: Any) -> list[tuple[Path, str]]:
    """`storable`'s findings as (path, message): the path as keys and indexes, to locate it in a file."""
    problems: list[tuple[Path, str]] = []
    stack: list[tuple[Any, Path, int]] = [(value, (), 0)]
    while stack and len(problems) < 20:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                problems.append((path, f"nested deeper than {MAX_DEPTH} levels"))
                continue
            for key, child in item.items():
                name = str(key)
                key_path = (*path, name)
                if "\x00" in name:
                    problems.append((key_path, "a key holds a NUL character"))
                    continue
                if name.startswith("$"):
                    problems.append((key_path, "a key must not start with '$'"))
                    continue
                why = _bad_string(name)
                if why:
                    problems.append((key_path, f"key: {why}"))
                    continue
                stack.append((child, key_path, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_DEPTH:
                problems.append((path, f"nested deeper than {MAX_DEPTH} levels"))
                continue
            for index, child in enumerate(item):
                stack.append((child, (*path, index), depth + 1))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64[0] <= item <= INT64[1]:
                problems.append((path, "integer is beyond 64 bits"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems.append((path, f"{item} is not a finite number"))
        elif isinstance(item, str):
            why = _bad_string(item)
            if why:
                problems.append((path, why))
    problems.reverse()
    return problems
