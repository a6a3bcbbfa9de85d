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
    CONFIG = "config"  # the call cannot be made as configured (never retried by default)


@dataclass(frozen=True)
class Outcome:
    """`failure` says what kind a failed call was; `retry_after` the seconds a 429 or 503 asked for."""

    ok: bool
    error: str | None = None
    failure: Failure | None = None
    retry_after: float | None = None
