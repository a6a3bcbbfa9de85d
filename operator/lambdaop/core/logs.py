"""Log set-up (text for people, JSON for machines) and the fields that name an object.

Every line about an object names it in its message (`Task alice/hello`) and
carries `owner`, `kind`, `name` and `id` (and `step`, `attempt` for a call)
as fields: `--log-format json` writes one JSON object per line with ts,
level, logger and message besides (python-json-logger). Times are ISO 8601
in UTC with `Z`, as everywhere else in lambdaop. A line may carry a mapping
of `settings` (the start-up configuration): a JSON object in JSON lines,
`key=value` pairs after the message in text. Called by cli (set up) and by
every module that logs about objects (`about`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from lambdaop.core.clock import iso

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("watchfiles",)  # libraries whose INFO lines say nothing an operator needs
_installed: logging.Handler | None = None


def utc_time(record: logging.LogRecord) -> str:
    """When the line was logged: ISO 8601, UTC, milliseconds, `Z`."""
    stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonLines(JsonFormatter):
    """One JSON object per line, `ts` in ISO 8601 with Z."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged, not what it was at setup."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr


def iso_times(record: logging.LogRecord) -> bool:
    """A time in a message's arguments is written as ISO 8601 with Z, like the line's own time."""
    if isinstance(record.args, tuple) and any(isinstance(a, dt.datetime) for a in record.args):
        record.args = tuple(
            iso(a) if isinstance(a, dt.datetime) and a.tzinfo is not None else a for a in record.args
        )
    return True


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = StderrHandler()
    handler.addFilter(iso_times)
    if fmt == "json":
        handler.setFormatter(
            JsonLines(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={
                    "asctime": "ts",
                    "levelname": "level",
                    "name": "logger",
                    "object_name": "name",
                },
            )
        )
    else:
        handler.setFormatter(TextFormatter(TEXT))
    root = logging.getLogger()
    global _installed
    if _installed is not None:  # set up again (tests call main() many times): replace only our own
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class TextFormatter(logging.Formatter):
    """The text format: settings as `key=value` after the message, the object's id (when the
    line is about one) at the end."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        settings = getattr(record, "settings", None)
        if isinstance(settings, dict):
            pairs = " ".join(f"{k}={_text_value(v)}" for k, v in settings.items())
            head, newline, tail = text.partition("\n")  # a traceback stays below
            text = f"{head} {pairs}{newline}{tail}"
        object_id = getattr(record, "id", None)
        return f"{text} [id {object_id}]" if object_id else text


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


def about(obj: Any, step: str | None = None, attempt: int | None = None) -> dict[str, Any]:
    """`extra=` fields naming an object (a stored record, or a stored document) and a call of it."""
    if isinstance(obj, dict):
        owner, kind, name, object_id = obj.get("owner"), obj.get("kind"), obj.get("name"), obj.get("_id")
    else:
        owner, kind, name, object_id = obj.owner, str(obj.kind), obj.name, obj.id
    fields: dict[str, Any] = {
        "owner": owner,
        "kind": kind,
        "object_name": name,  # `name` in JSON lines (a log record keeps `name` for the logger)
        "id": object_id,
    }
    if step is not None:
        fields["step"] = step
    if attempt is not None:
        fields["attempt"] = attempt
    return fields
