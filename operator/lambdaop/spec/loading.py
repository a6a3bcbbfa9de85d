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
from lambdaop.spec.expressions import check_expressions, check_task_expressions
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


NAME_RULE = "letters, digits, '.', '_' and '-', starting and ending with a letter or digit (at most 200)"


def _friendly(err: Any) -> str:
    """pydantic's message in plain words: what is expected, and what was given."""
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type")
    ctx = err.get("ctx") or {}
    given = err.get("input")
    if kind == "extra_forbidden":
        return "unknown field (not part of the schema)"
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if kind == "literal_error" and err.get("loc") == ("kind",):
        return f"{msg}; kind must be Task or TaskSet"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '').replace(' or ', ', ').replace(chr(39), '')}; got {_shown(given)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most", "less_than": "less than"}[kind]  # fmt: skip
        limit = next(iter(ctx.values()), "?")
        return f"must be {bound} {limit}; got {_shown(given)}"
    if kind == "too_short" and isinstance(given, list | dict):
        least = ctx.get("min_length", 1)
        return "must not be empty: add at least one item" if not given else f"needs at least {least} items; it has {len(given)}"  # fmt: skip
    if kind == "too_long" and isinstance(given, list | dict):
        return f"may hold at most {ctx.get('max_length')} items; it has {len(given)}"
    if kind == "string_too_short":
        return (
            "must not be empty" if not given else f"must be at least {ctx.get('min_length')} characters long"
        )
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long; it has {len(given or '')}"
    if kind == "string_pattern_mismatch":
        if err.get("loc") == ("metadata", "name"):
            return f"a name may hold only {NAME_RULE}; got {_shown(given)}"
        form = next((_FORMS[p] for p in reversed(err.get("loc") or ()) if isinstance(p, str) and p in _FORMS), None)  # fmt: skip
        if form is not None:
            return f"expected {form}; got {_shown(given)}"
        return f"{_shown(given)} does not have the expected form (the pattern {ctx.get('pattern')})"
    plain = {
        "int_parsing": "expected a whole number", "int_type": "expected a whole number",
        "int_from_float": "expected a whole number", "float_parsing": "expected a number",
        "float_type": "expected a number", "bool_parsing": "expected true or false",
        "bool_type": "expected true or false", "string_type": "expected text",
        "dict_type": "expected a mapping (key: value pairs)", "model_type": "expected a mapping (key: value pairs)",
        "model_attributes_type": "expected a mapping (key: value pairs)", "list_type": "expected a list",
        "json_invalid": "expected JSON",
    }.get(str(kind))  # fmt: skip
    if plain:
        return f"{plain}; got {_shown(given)}"
    return msg


_FORMS = {
    "qualifier": "a version or alias (letters, digits, - and _, or $LATEST)",
    "region": "an AWS region such as eu-west-1",
    "roleArn": "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
    "sessionName": "a role session name (2 to 64 letters, digits or +=,.@_-)",
    "fromEnv": "an environment variable's name (letters, digits and _, not starting with a digit)",
    "secretFromEnv": "an environment variable's name (letters, digits and _, not starting with a digit)",
}


def _shown(value: Any) -> str:
    """A value as the message quotes it: short, printable."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = printable(value if isinstance(value, str) else repr(value))
    return repr(text[:80] + ("…" if len(text) > 80 else "")) if isinstance(value, str) else text[:80]


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
        what = "a list" if isinstance(data, list) else f"the plain value {_shown(data)}"
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    f"a spec document must be a mapping with apiVersion, kind, metadata and spec; this one is {what}",
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
                    "kind is missing: every spec document says kind: Task or kind: TaskSet"
                    if kind is None
                    else f"kind must be Task or TaskSet, got {_shown(kind)}",
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
        found = validation_problems(exc, node, file, document)
        found.sort(key=lambda p: (p.line or 0, p.column or 0))  # in the order they are read
        raise SpecInvalid("invalid spec", found) from None
    if isinstance(spec, TaskSet):  # names and expressions across steps (and their limits' keys)
        checked = check_expressions(spec.spec) if spec.spec.steps is not None else []
    else:  # a Task's limits' keys
        checked = check_task_expressions(spec.spec)
    if checked:
        problems = []
        for loc, message in checked:
            line, col = _locate(node, loc) if node is not None else (None, None)
            problems.append(Problem(message, field=_field_path(loc), file=file, line=line, column=col, document=document))  # fmt: skip
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
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
    message = f"YAML syntax error: {yaml_in_words(str(problem), str(context or ''))}"
    return Document(0, line or 1, None, [Problem(message, file=file, line=line, column=col)])


_TOKENS = {
    "<block mapping start>": "a new `key: value` mapping",
    "<block sequence start>": "a `- ` list",
    "<block end>": "the end of the block",
    "<document start>": "`---`",
    "<stream end>": "the end of the text",
    "<scalar>": "a plain value",
    "<flow mapping start>": "`{`",
    "<flow sequence start>": "`[`",
    "'-'": "a `- ` list item",
    "'?'": "a `? ` key",
}


def yaml_in_words(problem: str, context: str = "") -> str:
    """What the YAML parser found wrong, in words a spec writer reads: what is wrong here, and
    what it expects (the parser's own terms, like `<block mapping start>`, stay inside)."""
    p = problem.strip()
    if p.startswith("expected '<document start>'"):
        return ("a second top-level value starts here, but the document above has not ended: a spec file "
                "holds `key: value` mappings (apiVersion, kind, metadata, spec), one per document, separated "
                "by `---` lines (is this a spec file?)")  # fmt: skip
    if p.startswith("mapping values are not allowed here"):
        return "`: ` cannot come here: put quotes around a value that holds `: `, or start the key on its own line"
    if "'\\t'" in p or "\\t" in p or "\t" in p:
        return "a tab character: YAML indents with spaces only"
    if p.startswith("expected ',' or '}'"):
        return "a `{ … }` mapping is not closed here: a `,` or a `}` is missing"
    if p.startswith("expected ',' or ']'"):
        return "a `[ … ]` list is not closed here: a `,` or a `]` is missing"
    if "quoted scalar" in context or "quoted scalar" in p:
        return "a quoted string is not closed: its closing quote is missing"
    found = re.match(r'found duplicate key "(.*?)"', p)
    if found:
        return f"the key {found.group(1)!r} is written twice in the same mapping; keep one"
    found = re.match(r"found undefined alias '?(.*?)'?$", p)
    if found:
        return f"*{found.group(1)} refers to no anchor: write &{found.group(1)} on a value above it first"
    if p.startswith("expected <block end>, but found '-'") or "expected '-' indicator" in p:
        return "a `- ` list item here belongs to no key: indent it under the key it is for"
    if p.startswith("expected <block end>") or p.startswith("did not find expected key"):
        return "the indentation is off: this line does not line up with the keys above it"
    if p.startswith("could not find expected ':'"):
        return "a `key: value` line is missing its `:` (or a quoted string above is not closed)"
    found = re.match(r"found character '(.)' that cannot start any token", p)
    if found:
        return f"{found.group(1)!r} cannot start a plain value: put the value in quotes"
    if p.startswith("found unknown escape character"):
        return (
            "a double-quoted string holds an unknown escape (a backslash): use single quotes, or write \\\\"
        )
    if p.startswith("found unexpected end of stream"):
        return "the text ends inside an unfinished value (a quote, a `{` or a `[` is not closed)"
    words = p
    for token, said in _TOKENS.items():
        words = words.replace(f"('{token}',)", said).replace(f"'{token}'", said).replace(token, said)
    return words


def load_one(text: str, file: str | None = None) -> list[AnySpec]:
    """All documents of a text, or SpecInvalid listing every problem in it."""
    docs = load_documents(text, file)
    problems = [p for d in docs for p in d.problems]
    if problems:
        raise SpecInvalid(f"{file or 'input'}: invalid spec", problems)
    return [d.spec for d in docs if d.spec is not None]
