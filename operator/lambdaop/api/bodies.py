"""Request bodies and query parameters: read within bounds, parsed, and refused in words.

A body is at most 1 MiB; JSON and HTML forms are accepted, url-encoded or
`multipart/form-data` (forms give lists for repeated fields, and read the
PHP/jQuery spellings `taskUrls[]=a` as a list and `params[key]=v` as an
object); values the store or a call cannot hold are refused naming the
field. A JSON body sent as a form (what `curl -d` does) is refused saying
that its content type is missing. Called by the resources.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import falcon
from falcon.media.multipart import MultipartFormHandler

from lambdaop.app.service import is_object_id
from lambdaop.core.errors import BadRequest, PayloadTooLarge, Problem, SpecInvalid, UnsupportedMediaType
from lambdaop.spec.limits import Limit, load_json, storable

MAX_BODY = 1024 * 1024
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_FIELDS = 1000
_BRACKETS = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")  # taskUrls[], params[key], a[b][]
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def read_body(req: falcon.Request) -> bytes:
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise PayloadTooLarge(f"the body is {length} bytes; at most {MAX_BODY} are accepted")
    data = req.bounded_stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise PayloadTooLarge(f"the body is over {MAX_BODY} bytes")
    return data


def media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";")[0].strip().lower()


def media_message(media: str, accepted: str) -> str:
    return f"content type {media!r} is not accepted here; send {accepted}"


def read_fields(req: falcon.Request) -> dict[str, Any]:
    """A JSON object or an HTML form, as a dict (form fields given twice become lists)."""
    data = read_body(req)
    media = media_type(req)
    accepted = "application/json, application/x-www-form-urlencoded or multipart/form-data"
    if not data.strip():
        if media and media not in JSON_TYPES + FORM_TYPES:
            raise UnsupportedMediaType(media_message(media, accepted))
        return {}
    if media in JSON_TYPES or (not media and data.lstrip()[:1] in (b"{", b"[")):
        return checked(json_object(data))
    if media == "multipart/form-data":
        return checked(nested(multipart_pairs(req, data)))
    if media in FORM_TYPES or not media:
        if _looks_like_json(data):
            raise UnsupportedMediaType(
                f"the body is JSON, but it was sent as {media or 'a form'} (what `curl -d` does when no "
                "Content-Type is given): send it with the header Content-Type: application/json"
            )
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise BadRequest("the form body is not UTF-8") from None
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            raise BadRequest(f"the form has more than {MAX_FORM_FIELDS} fields") from None
        return checked(nested(pairs))
    raise UnsupportedMediaType(media_message(media, accepted))


def json_object(data: bytes) -> dict[str, Any]:
    try:
        value = load_json(data)
    except Limit as exc:
        raise SpecInvalid("invalid request", [Problem(exc.message)]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def _looks_like_json(data: bytes) -> bool:
    """A JSON object where a form was announced: `{"url": ...}` is never a form field's name."""
    text = data.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def multipart_pairs(req: falcon.Request, data: bytes) -> list[tuple[str, str]]:
    """The fields of a `multipart/form-data` body, in order (a file's content is refused)."""
    handler = MultipartFormHandler()
    handler.parse_options.max_body_part_count = MAX_FORM_FIELDS
    pairs: list[tuple[str, str]] = []
    try:
        for part in handler.deserialize(io.BytesIO(data), req.content_type, len(data)):
            if part.filename:
                raise SpecInvalid("invalid request", [Problem("a file upload is not accepted here; send the value as a plain field", field=part.name)])  # fmt: skip
            text = part.get_text()
            if text is None:
                raise BadRequest(f"the form field {part.name!r} is not text")
            pairs.append((part.name or "", text))
    except falcon.MediaMalformedError as exc:
        raise BadRequest(
            f"the multipart/form-data body cannot be read: {exc.description or exc.title}"
        ) from None
    except falcon.HTTPError as exc:  # too many parts, a missing boundary
        raise BadRequest(
            f"the multipart/form-data body cannot be read: {exc.description or exc.title}"
        ) from None
    except UnicodeDecodeError:
        raise BadRequest("the form body is not UTF-8") from None
    return pairs


def nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form fields as a dict: a name given twice is a list; `name[]` is a list however often it
    comes; `name[key]` is an object (PHP's and jQuery's spellings of arrays and objects)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        found = _BRACKETS.match(name)
        if found is None:
            if name in out:
                out[name] = out[name] + [value] if isinstance(out[name], list) else [out[name], value]
            else:
                out[name] = value
            continue
        keys = re.findall(r"\[([^\[\]]*)\]", found.group(2))
        _put(out, found.group(1), keys, value, name)
    return {k: _indexed(v) for k, v in out.items()}


def _indexed(value: Any) -> Any:
    """`tasks[0][url]=…&tasks[1][url]=…` (jQuery's numbered items) is a list, in number order."""
    if isinstance(value, list):
        return [_indexed(v) for v in value]
    if not isinstance(value, dict):
        return value
    inner = {k: _indexed(v) for k, v in value.items()}
    if inner and all(k.isdigit() and len(k) < 6 for k in inner):
        return [inner[k] for k in sorted(inner, key=int)]
    return inner


def _put(into: dict[str, Any], key: str, rest: list[str], value: str, whole: str) -> None:
    if not rest:
        into[key] = value
        return
    head, tail = rest[0], rest[1:]
    if head == "":  # name[]: a list
        items = into.setdefault(key, [])
        if not isinstance(items, list):
            raise SpecInvalid("invalid request", [Problem(f"{key} is given both as a list and as a value", field=whole)])  # fmt: skip
        if tail:
            child: dict[str, Any] = {}
            _put(child, "_", tail, value, whole)
            items.append(child["_"])
        else:
            items.append(value)
        return
    inner = into.setdefault(key, {})
    if not isinstance(inner, dict):
        raise SpecInvalid("invalid request", [Problem(f"{key} is given both as an object and as a value", field=whole)])  # fmt: skip
    _put(inner, head, tail, value, whole)


def checked(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse what the store or a call cannot hold (NUL or `$` keys, huge numbers, lone surrogates)."""
    problems = storable(fields)
    if problems:
        raise SpecInvalid("invalid request", problems)
    return fields


def bearer(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def limit_value(raw: Any) -> int:
    if raw is None or raw == "":
        return 50
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SpecInvalid(
            "invalid request", [Problem("expected a whole number 1-500", field="limit")]
        ) from None
    if not 1 <= value <= 500:
        raise SpecInvalid("invalid request", [Problem("must be between 1 and 500", field="limit")])
    return value


def query_params(req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The query parameters, refusing any not in `allowed`, and a cursor not from a previous page."""
    params = checked(dict(req.params))
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise SpecInvalid("invalid request", [Problem("unknown query parameter", field=k) for k in unknown])
    check_cursor(params.get("cursor"))
    return params


def check_cursor(cursor: Any) -> None:
    """A cursor is the `next` of a previous page: an object id, or `name:` and a name (a name search's)."""
    if isinstance(cursor, str) and cursor.startswith("name:"):
        return
    if cursor is not None and not (isinstance(cursor, str) and is_object_id(cursor.strip())):
        raise SpecInvalid(
            "invalid request", [Problem("expected the `next` value of a previous page", field="cursor")]
        )
