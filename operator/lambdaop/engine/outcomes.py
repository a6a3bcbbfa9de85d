"""A call's result as the state machine sees it: success, or a failure of a named kind.

The invoker reports what happened on the wire; the loop turns it into an
`Outcome`, which the machine and the retry policy decide on. Pure values.
Called by machine, retrypolicy and the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Failure(StrEnum):
    """What kind of failure a call had (what `retryOn` selects)."""

    SERVER = "5xx"
    CLIENT = "4xx"
    THROTTLED = "429"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BODY = "body"  # 2xx, but the success test on the body failed
    FUNCTION = "function"  # a Lambda function ran and failed (X-Amz-Function-Error)
    CONFIG = "config"  # the call cannot be made as configured (never retried by default)

    @classmethod
    def of_status(cls, status: int) -> Failure:
        """The kind of a failed call that got an answer with this status."""
        return cls.THROTTLED if status == 429 else cls.SERVER if status >= 500 else cls.BODY if 200 <= status < 300 else cls.CLIENT  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """`failure` says what kind a failed call was; `retry_after` the seconds a 429 or 503 asked for."""

    ok: bool
    error: str | None = None
    failure: Failure | None = None
    retry_after: float | None = None
