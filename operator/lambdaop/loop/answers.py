"""What of a call's answer is kept: the excerpt, a named step's output, and no secret in either.

`Secrets` collects the values a call read from the environment (`fromEnv` in
headers, query, body or payload, `externalId`) and its signing secret, so
`redact` can take every one of them out of what is kept (the excerpt, the
error, the output) before it reaches the history, the store or a log line: an
endpoint that echoes a header back never puts its key in the history.
`output_of` reads a named step's answer as its output: JSON when it parses,
else its text, and nothing above `MAX_OUTPUT` bytes. Called by the invoker.
"""

from __future__ import annotations

import json
from typing import Any

from lambdaop.engine.outputs import MAX_OUTPUT

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values are not taken out (they would blank ordinary text)


class Secrets:
    """The secret values one call used (each call gets its own)."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> str:
        if len(value) >= MIN_SECRET:
            self.values.add(value)
        return value

    def redact(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):  # the longest first: one may hold another
            text = text.replace(value, REDACTED)
        return text

    def redact_json(self, value: Any) -> Any:
        if not self.values:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_json(v) for v in value]
        return value


def output_of(raw: bytes, secrets: Secrets) -> tuple[Any, int, str | None]:
    """A named step's output from its answer: the value, its size as JSON, and why none is kept
    (the answer is over `MAX_OUTPUT`)."""
    if len(raw) > MAX_OUTPUT:
        return (
            None,
            0,
            f"the answer is {len(raw)} bytes; a step keeps at most {MAX_OUTPUT} bytes as its output",
        )
    if not raw.strip():
        return None, 0, None
    text = raw.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    value = secrets.redact_json(value)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_OUTPUT:  # escaped text can grow
        return (
            None,
            0,
            f"the answer takes {size} bytes as JSON; a step keeps at most {MAX_OUTPUT} bytes as its output",
        )
    return value, size, None
