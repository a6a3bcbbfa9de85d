"""Loading spec text: YAML or JSON, one or many documents, validated with line numbers.

`load_documents` parses and validates, keeping lines and columns so every error names the file,
line and field. Called by the folder, the API's /specs route and the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.spec.expressions import check_expressions
from lambdaop.spec.limits import Limit, check_yaml, printable, unstorable
from lambdaop.spec.models import API_VERSION, KINDS, AnySpec, TaskSet


@dataclass
class Document:
    """One document of a spec file: the validated spec or the problems found in it."""

    index: int  # 0-based position in the file
    line: int  # 1-based line where the document starts
    spec: AnySpec | None
    problems: list[Problem]
    kind: str | None = None
    name: str | None = None


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    # keep timestamps as text: pydantic checks offsets and says clearly what is wrong
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
    )
    return yaml


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _locate(node: Any, loc: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest part of `loc` present in the YAML tree."""
    line = col = None
    lc = getattr(node, "lc", None)
    if lc is not None:
        line, col = lc.line + 1, lc.col + 1
    for key in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and key in node:
            if lc is not None:
                try:
                    kline, kcol = lc.key(key)
                    line, col = kline + 1, kcol + 1
                except (KeyError, TypeError):
                    pass
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            if lc is not None:
                try:
                    iline, icol = lc.item(key)
                    line, col = iline + 1, icol + 1
                except (KeyError, TypeError, IndexError):
                    pass
            node = node[key]
        else:
            break
    return line, col


def _field_path(loc: tuple[Any, ...]) -> str:
    """`spec.tasks[1].url` from pydantic's location (union and validator names left out)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not str(item).startswith(("function-", "str", "FromEnv", "json-or-python")):
            parts.append(("." if parts else "") + printable(item))
    return "".join(parts)


def _friendly(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field (not part of the schema)"
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error" and err.get("loc") == ("kind",):
        return f"{msg}; kind must be Task or TaskSet"
    return msg


def validation_problems(
    exc: ValidationError, node: Any = None, file: str | None = None, document: int | None = None
) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(p for p in loc if p not in ("str", "FromEnv", "Step", "Invoke"))
        line, col = _locate(node, loc) if node is not None else (None, None)
        field = _field_path(loc) or None
        message = _friendly(err)
        key = (field, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, field=field, file=file, line=line, column=col, document=document))
    return problems


def validate_document(
    data: Any, file: str | None = None, document: int | None = None, node: Any = None
) -> AnySpec:
    """Validate one parsed document (a mapping). Raises SpecInvalid with located problems."""
    node = data if node is None else node
    if not isinstance(data, dict):
        line, col = _locate(node, ())
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    "a spec document must be a mapping with apiVersion, kind, metadata and spec",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    problems = []
    for path, message in unstorable(data):
        line, col = _locate(node, path)
        field = _field_path(path) or None
        problems.append(Problem(message, field=field, file=file, line=line, column=col, document=document))
    if problems:
        raise SpecInvalid("invalid spec", problems)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        line, col = _locate(node, ("kind",))
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    f"kind must be Task or TaskSet, got {kind!r}",
                    field="kind",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    if data.get("apiVersion", API_VERSION) != API_VERSION:
        line, col = _locate(node, ("apiVersion",))
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    f"apiVersion must be {API_VERSION}",
                    field="apiVersion",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    try:
        spec = KINDS[kind].model_validate(_plain(data))
    except ValidationError as exc:
        raise SpecInvalid("invalid spec", validation_problems(exc, node, file, document)) from None
    if isinstance(spec, TaskSet) and spec.spec.steps is not None:  # names and expressions across steps
        problems = []
        for loc, message in check_expressions(spec.spec):
            line, col = _locate(node, loc) if node is not None else (None, None)
            problems.append(Problem(message, field=_field_path(loc), file=file, line=line, column=col, document=document))  # fmt: skip
        if problems:
            raise SpecInvalid("invalid spec", problems)
    return spec


def _fast_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)  # the C parser (ruamel.yaml.clib) when installed
    yaml.allow_duplicate_keys = False
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
    )
    return yaml


_MARKER = re.compile(r"^---(\s|$)")


def _document_lines(text: str, count: int) -> list[int] | None:
    """1-based start line of each document, from the `---` markers (None when unsure)."""
    markers: list[int] = []
    first_content: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if _MARKER.match(line):
            markers.append(
                number if line[3:].strip() and not line[3:].strip().startswith("#") else number + 1
            )
        elif first_content is None and line.strip() and not line.lstrip().startswith(("#", "%")):
            first_content = number
    starts = (
        markers
        if markers and (first_content is None or first_content > markers[0] - 1)
        else [first_content or 1, *markers]
    )
    return starts[:count] if len(starts) >= count else None


def load_documents(text: str, file: str | None = None) -> list[Document]:
    """Parse YAML or JSON text holding one or many documents.

    A syntax error makes the whole text one failed document (nothing from a
    broken file is applied); otherwise each document is validated on its own.
    A text past the limits (size, nesting, alias expansion) is refused before it
    is composed. The fast path parses with the C parser; any error re-reads the
    text with the round-trip parser, which knows every line and column.
    """
    try:
        check_yaml(text)
    except Limit as exc:
        return [Document(0, exc.line or 1, None, [exc.problem(file)])]
    try:
        parsed = list(_fast_yaml().load_all(text))
    except (YAMLError, ValueError, TypeError):
        return _load_located(text, file)
    if len(parsed) == 1 and isinstance(parsed[0], list) and text.lstrip().startswith("["):
        return _load_located(text, file)  # a JSON list of documents: rare, take the careful path
    lines = _document_lines(text, len(parsed))
    if lines is None:
        return _load_located(text, file)
    out = []
    for index, doc in enumerate(parsed):
        if doc is None:
            continue
        try:
            spec = validate_document(doc, file=file, document=index)
        except SpecInvalid:
            return _load_located(text, file)
        out.append(Document(index, lines[index], spec, [], spec.kind, spec.metadata.name))
    return out


def _load_located(text: str, file: str | None) -> list[Document]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        # a JSON list of documents (YAML flow style parses it too, with lines)
        try:
            docs = list(_yaml().load_all(text))
        except (YAMLError, ValueError, TypeError) as exc:
            return [_syntax_failure(exc, file)]
        items = docs[0] if docs and isinstance(docs[0], list) else []
        parsed = list(enumerate(items))
    else:
        try:
            parsed = list(enumerate(_yaml().load_all(text)))
        except (YAMLError, ValueError, TypeError) as exc:
            return [_syntax_failure(exc, file)]
    out = []
    for index, doc in parsed:
        if doc is None:
            continue
        lc = getattr(doc, "lc", None)
        line = lc.line + 1 if lc is not None else 1
        kind = doc.get("kind") if isinstance(doc, dict) else None
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        try:
            spec = validate_document(doc, file=file, document=index)
            out.append(Document(index, line, spec, [], spec.kind, spec.metadata.name))
        except SpecInvalid as exc:
            out.append(Document(index, line, None, exc.problems, _s(kind), _s(name)))
    return out


def _s(value: Any) -> str | None:
    return str(value) if isinstance(value, str) else None


def _syntax_failure(exc: Exception, file: str | None) -> Document:
    line = col = None
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, MarkedYAMLError) and mark is not None:
        line, col = mark.line + 1, mark.column + 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return Document(0, line or 1, None, [Problem(message, file=file, line=line, column=col)])


def load_one(text: str, file: str | None = None) -> list[AnySpec]:
    """All documents of a text, or SpecInvalid listing every problem in it."""
    docs = load_documents(text, file)
    problems = [p for d in docs for p in d.problems]
    if problems:
        raise SpecInvalid(f"{file or 'input'}: invalid spec", problems)
    return [d.spec for d in docs if d.spec is not None]
