"""A request's fields as the original clients send them: taken by any of their names, typed, and
refused in words (unknown fields, bad numbers, times without a zone).

Forms send every value as a string; bare numbers for delays are
milliseconds; a time is `at` (ISO 8601 or epoch ms), a date and time pair in
a zone, or a delay. As the original server did, a time without an offset is
read in the request's `timezone` or else the server's `--timezone`, and a
JavaScript `Date` string (`Date.toString()`, `toUTCString()`) is read as the
time it names. Called by seed and the user routes.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import re
import zoneinfo
from typing import Any

from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.spec import MAX_DURATION

AT = ("at", "scheduledTime", "dateTime")
DATE, TIME, ZONE = ("datefield",), ("timefield",), ("timezone",)
DELAY = ("delay", "timeInMs", "delayInMS", "timeDelay")
PARAMS = ("params", "parameters", "queryParams")
_ROW = re.compile(r"^(checkbox|key|value)(\d+)$")


class Fields:
    """A request's fields: takes each by any of its names, and reports what was left unused."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.used: set[str] = set()
        self.problems: list[Problem] = []

    def take(self, names: tuple[str, ...]) -> tuple[str | None, Any]:
        present = [n for n in names if n in self.data and self.data[n] not in (None, "")]
        self.used.update(n for n in names if n in self.data)
        if len(present) > 1 and len({json.dumps(self.data[n], default=str) for n in present}) > 1:
            self.problems.append(
                Problem(f"{' and '.join(present)} mean the same thing; send one", field=present[0])
            )
        if not present:
            return None, None
        return present[0], self.data[present[0]]

    def problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(message, field=field))

    def params(self) -> dict[str, str] | None:
        """The Lambda's query parameters: a JSON object, or the form's rows (checkboxN=on, keyN, valueN)."""
        name, value = self.take(PARAMS)
        query: dict[str, str] = {}
        if name is not None:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int | float | bool) for v in value.values()
            ):
                self.problem(name, "expected an object of parameter names and plain values")
                return None
            query.update(
                {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
            )
        rows: dict[int, dict[str, Any]] = {}
        for field_name, field_value in self.data.items():
            match = _ROW.match(field_name)
            if match:
                self.used.add(field_name)
                rows.setdefault(int(match.group(2)), {})[match.group(1)] = field_value
        for number in sorted(rows):
            row = rows[number]
            if str(row.get("checkbox", "")).strip().lower() not in ("on", "true", "1", "yes", "checked"):
                continue  # an unticked row does not count
            key = str(row.get("key") or "").strip()
            if not key:
                self.problem(f"key{number}", "a ticked row needs a parameter name")
                continue
            query[key] = str(row.get("value") if row.get("value") is not None else "")
        return query or None

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                self.problems.append(Problem("unknown field", field=name))
        if self.problems:
            raise SpecInvalid("invalid request", self.problems)

    # ----- typed takes

    def integer(self, names: tuple[str, ...], minimum: int = 0) -> int | None:
        name, value = self.take(names)
        if name is None:
            return None
        try:
            number = (
                int(str(value).strip()) if not isinstance(value, int) or isinstance(value, bool) else value
            )
        except ValueError:
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        if isinstance(value, bool):
            self.problem(name, f"expected a whole number, got {value!r}")
            return None
        if number < minimum:
            self.problem(name, f"must be at least {minimum}, got {number}")
            return None
        return number

    def millis(self, names: tuple[str, ...]) -> str | None:
        """A delay: a bare number is milliseconds; a string with a unit (30s, PT30S) is taken as is."""
        name, value = self.take(names)
        if name is None:
            return None
        if isinstance(value, bool):
            self.problem(name, f"expected milliseconds, got {value!r}")
            return None
        text = str(value).strip()
        try:
            ms = float(text)
        except ValueError:
            return text  # a duration with a unit; the spec model checks it
        if not math.isfinite(ms):
            self.problem(name, f"expected milliseconds, got {value!r}")
            return None
        if ms < 0:
            self.problem(name, f"must not be negative, got {value}")
            return None
        if ms > MAX_DURATION.total_seconds() * 1000:
            self.problem(name, f"must be at most {int(MAX_DURATION.total_seconds() * 1000)} ms (ten years)")
            return None
        return f"{int(ms)}ms" if ms == int(ms) else f"{ms}ms"

    def when(self, now: dt.datetime, zone: str, required: bool = False) -> dict[str, Any]:
        """`at` (absolute), a date/time pair, or `after` (a delay in ms)."""
        out: dict[str, Any] = {}
        at_name, at = self.take(AT)
        date_name, date = self.take(DATE)
        time_name, time_ = self.take(TIME)
        zone_name, zone_value = self.take(ZONE)
        delay = self.millis(DELAY)
        given = [n for n in (at_name, date_name or time_name, delay and "delay") if n]
        if len(given) > 1:
            self.problem(given[1], f"give one of {given[0]} and {given[1]}")
            return out
        if at_name is not None:
            if isinstance(at, bool) or not isinstance(at, int | float | str):
                self.problem(at_name, "expected an ISO 8601 time (an offset is optional here), a JavaScript Date string, or epoch milliseconds")  # fmt: skip
                return out
            epoch = _epoch_ms(at)
            if epoch is False:
                self.problem(at_name, "epoch milliseconds must fall between 1970 and 2999")
                return out
            if epoch is not None:
                out["at"] = epoch
                return out
            text = str(at).strip()
            written = _javascript_date(text)
            if written is not None:
                out["at"] = written
                return out
            local = _without_offset(text)
            if local is None:
                out["at"] = at  # with an offset (or not a time: the spec model says what is wrong)
                return out
            tz_name = str(zone_value) if zone_name else zone
            tz = time_zone(tz_name)
            if tz is None:
                self.problem(zone_name or "timezone", f"unknown time zone {tz_name[:80]!r}; use an IANA name such as Europe/Berlin")  # fmt: skip
                return out
            out["at"] = local.replace(tzinfo=tz).isoformat()
        elif date_name or time_name:
            if not (date_name and time_name):
                self.problem(
                    "datefield" if not date_name else "timefield", "datefield and timefield go together"
                )
                return out
            tz_name = str(zone_value) if zone_name else zone
            tz = time_zone(tz_name)
            if tz is None:
                self.problem(
                    zone_name or "timezone",
                    f"unknown time zone {tz_name[:80]!r}; use an IANA name such as Europe/Berlin",
                )
                return out
            try:
                local = dt.datetime.fromisoformat(f"{str(date).strip()}T{str(time_).strip()}")
            except ValueError:
                self.problem("datefield", f"expected YYYY-MM-DD and HH:MM, got {date!r} and {time_!r}")
                return out
            out["at"] = local.replace(tzinfo=tz).isoformat()
        elif delay is not None:
            out["after"] = delay
        elif required:
            self.problem(
                "at", "a new time is needed: at, scheduledTime, dateTime, datefield+timefield, or delay"
            )
        return out


_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$")


def time_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone of that name, or None (never an OSError for a strange name)."""
    if not isinstance(name, str) or len(name) > 64 or not _ZONE.match(name):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _epoch_ms(value: float | str) -> str | None | bool:
    """Epoch milliseconds (a number, or digits as a form sends them) as ISO 8601; None if not a number.

    False when the number is outside 1970-2999.
    """
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"\d{1,16}", text):
            return None
        value = int(text)
    if not math.isfinite(value) or not 0 <= value < 32503680000000:
        return False
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat()


_JS_DATE = re.compile(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+"
    r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4})\s+"
    r"(?P<time>\d{1,2}:\d{2}(?::\d{2})?)\s+(?:GMT|UTC)(?P<offset>[+-]\d{2}:?\d{2})?(?:\s+\([^()]*\))?$"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _javascript_date(text: str) -> str | None:
    """A time as JavaScript writes it, as ISO 8601: `new Date().toString()` (`Sat Nov 28 2026
    09:00:00 GMT+0100 (Central European Standard Time)`) or `toUTCString()` (`Sat, 28 Nov 2026
    09:00:00 GMT`). None for any other text."""
    found = _JS_DATE.match(text)
    if found is not None:
        offset = (found["offset"] or "+0000").replace(":", "")
        parts = [int(p) for p in found["time"].split(":")] + [0]
        try:
            local = dt.datetime(int(found["year"]), _MONTHS.index(found["month"]) + 1, int(found["day"]), parts[0], parts[1], parts[2])  # fmt: skip
        except ValueError:
            return None
        sign = -1 if offset[0] == "-" else 1
        zone = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        return local.replace(tzinfo=zone).isoformat()
    if re.match(
        r"^[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}(:\d{2})? (GMT|UTC|[+-]\d{4})$", text
    ):
        try:
            return email.utils.parsedate_to_datetime(text).isoformat()
        except (TypeError, ValueError):
            return None
    return None


def _without_offset(text: str) -> dt.datetime | None:
    """An ISO 8601 date and time with no offset (`2026-12-01T12:22`), else None."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", text):
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is None else None
