"""Limits per key, as users write them on a Task or a TaskSet's named step: `concurrency` and `rate`.

`concurrency: {key, limit}`: at most `limit` of the calls that name `key` are out at once;
`rate: {key, limit, per}`: at most `limit` of them leave in any `per`. A call beyond a limit waits
for a place (it is never dropped). `key` is a string that may hold `${{ EXPR }}` (the context of
the call it limits); what it comes to names the key, one per owner. What the loop does with them
is `engine.limits`. Called by models, expressions and the engine.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator

from lambdaop.spec.calls import SpecModel
from lambdaop.spec.durations import Duration

MAX_LIMIT = 1000  # places one key may have of each kind
MAX_KEY = 256  # characters of a key, once filled in
MIN_PER = dt.timedelta(seconds=1)
MAX_PER = dt.timedelta(days=1)

_KEY_HELP = "the key: a literal (target-a) is one key for every call that names it; ${{ EXPR }} in it gives each call the key its value makes (e.g. ${{ object.labels.team }}); keys are per owner"  # fmt: skip


def _key(value: str) -> str:
    if not value.strip():
        raise ValueError("a key must not be empty")
    if not value.isprintable():
        raise ValueError("a key must not hold control characters")
    return value


class Concurrency(SpecModel):
    """At most `limit` calls of a key out at once, across every process sharing the store."""

    key: str = Field(min_length=1, max_length=MAX_KEY, description=_KEY_HELP)
    limit: int = Field(ge=1, le=MAX_LIMIT, description="calls of the key out at once, at most")

    @field_validator("key")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _key(value)


class Rate(SpecModel):
    """At most `limit` calls of a key leaving in any window of `per`, across every process."""

    key: str = Field(min_length=1, max_length=MAX_KEY, description=_KEY_HELP)
    limit: int = Field(ge=1, le=MAX_LIMIT, description="calls of the key that leave in any window of `per`, at most")  # fmt: skip
    per: Duration = Field(description="the window, from 1s to 1d (e.g. 1s, 1m, 1h)")

    @field_validator("key")
    @classmethod
    def _printable(cls, value: str) -> str:
        return _key(value)

    @field_validator("per")
    @classmethod
    def _window(cls, value: dt.timedelta) -> dt.timedelta:
        if not MIN_PER <= value <= MAX_PER:
            raise ValueError("per must be from 1s to 1d")
        return value
