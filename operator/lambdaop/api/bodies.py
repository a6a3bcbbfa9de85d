"""Request bodies and query parameters: read within bounds, parsed, and refused in words.

A body is at most 1 MiB; JSON and HTML forms are accepted (forms give lists
for repeated fields); values the store or a call cannot hold are refused
naming the field. Called by the resources.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import falcon

from lambdaop.app.service import is_object_id
from lambdaop.core.errors import BadRequest, PayloadTooLarge, Problem, SpecInvalid, UnsupportedMediaType
from lambdaop.spec.limits import Limit, load_json, storable

MAX_BODY = 1024 * 1024
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded",)
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
    accepted = "application/json or application/x-www-form-urlencoded"
    if not data.strip():
        if media and media not in JSON_TYPES + FORM_TYPES:
            raise UnsupportedMediaType(media_message(media, accepted))
        return {}
    if media in JSON_TYPES or (not media and data.lstrip()[:1] in (b"{", b"[")):
        try:
            value = load_json(data)
        except Limit as exc:
            raise SpecInvalid("invalid request", [Problem(exc.message)]) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return checked(value)
    if media in FORM_TYPES or not media:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise BadRequest("the form body is not UTF-8") from None
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False)
        return checked({k: v[0] if len(v) == 1 else v for k, v in parsed.items()})
    raise UnsupportedMediaType(media_message(media, accepted))


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
