"""Durations and times as users write them: `30s`, `1h30m`, `PT30S`; ISO 8601 times with an offset.

Pure functions and the pydantic field types built on them. Called by the spec models, the original
routes' field parsing and the CLI.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, PlainSerializer, WithJsonSchema

MAX_DURATION = dt.timedelta(days=3650)  # ten years: anything longer is a typo, and overflows the calendar
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|d|h|m|s))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> dt.timedelta:
    """`30s`, `5m`, `1h30m`, `250ms`, `2d`, ISO 8601 `PT30S`; `0` alone; never negative."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h30m or PT30S")
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a duration")
        if value != 0:
            raise ValueError(
                f"a bare number ({value}) has no unit: write e.g. {value}s, {value}ms or {value}m"
            )
        seconds = 0.0
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
        if text == "0":
            seconds = 0.0
        elif _DURATION.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            iso = _ISO.match(text.upper())
            if not iso or text.upper() in ("P", "PT"):
                raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or PT30S, got {value!r}")
            seconds = sum(
                float(iso.group(k) or 0) * m for k, m in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
            )
    else:
        raise ValueError("expected a duration such as 30s, 5m, 1h30m or PT30S")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if not seconds <= MAX_DURATION.total_seconds():  # also NaN
        raise ValueError(f"must be at most 3650d (ten years), got {value!r}")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    ms = round(value.total_seconds() * 1000)
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^((\d+(\.\d+)?)(ms|d|h|m|s))+$|^0$|^P",
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or ISO 8601 (PT30S).",
            "examples": ["30s", "5m", "1h30m", "PT30S"],
        }
    ),
]


def parse_time(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"expected an ISO 8601 time with an offset, e.g. 2026-11-28T09:00:00Z, got {value!r}"
            ) from exc
        value = parsed
    elif not isinstance(value, dt.datetime):
        raise ValueError(
            f"expected an ISO 8601 time with an offset, e.g. 2026-11-28T09:00:00Z, got {value!r}"
        )
    if value.tzinfo is None:
        raise ValueError(
            f"time {value.isoformat()} has no offset: add Z (UTC) or +HH:MM, "
            "lambdaop never guesses a local time zone"
        )
    try:
        in_range = EARLIEST <= value.astimezone(dt.UTC) < LATEST
    except (OverflowError, ValueError):
        in_range = False
    if not in_range:
        raise ValueError(f"time {value.isoformat()} must be between 1970-01-01 and 2999-12-31 (UTC)")
    return value


Time = Annotated[
    AwareDatetime,
    BeforeValidator(parse_time),
    PlainSerializer(lambda v: v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"), return_type=str),
]


def check_zone(name: str) -> str:
    import zoneinfo

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}", name or "") or len(name) > 64:
        raise ValueError(f"unknown time zone {name[:80]!r}; use an IANA name such as Europe/Berlin")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None
    return name
