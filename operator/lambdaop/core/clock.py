"""The only module that reads the wall clock.

Everything time-dependent takes `now` (a timezone-aware UTC datetime) or a
`Clock`; the reconciler asks its clock, the state machine never does.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

UTC = dt.UTC


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock: UTC wall time for due times, monotonic time for durations."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def to_utc(value: dt.datetime) -> dt.datetime:
    """Normalise an aware datetime to UTC, truncated to milliseconds (what the store keeps)."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
