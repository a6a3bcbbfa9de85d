"""Log set-up (text for people, JSON for machines) and the fields that name an object.

Every line about an object names it in its message (`Task alice/hello`) and
carries `owner`, `kind`, `name` and `id` (and `step`, `attempt` for a call)
as fields: `--log-format json` writes one JSON object per line with ts,
level, logger and message besides (python-json-logger). Called by cli (set
up) and by every module that logs about objects (`about`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_installed: logging.Handler | None = None


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged, not what it was at setup."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = StderrHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
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


class TextFormatter(logging.Formatter):
    """The text format, with the object's id (when the line is about one) at the end."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        object_id = getattr(record, "id", None)
        return f"{text} [id {object_id}]" if object_id else text


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
