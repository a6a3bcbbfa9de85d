"""When recurring objects run: cron and rate schedules as pure functions of time.

Cron expressions are read by `cronsim` in the schedule's IANA zone, so times
are exact across daylight-saving changes (a 02:30 run on a spring-forward day
runs once, at 03:00; on a fall-back day once, not twice). A rate (`every`)
counts from its anchor: `start`, or when the object was applied. Jitter is a
fixed fraction per object and run (derived from a salt), so the same run
always lands at the same moment. No clock is read here. Called by machine,
recurring, changes, the service and the API (next runs, the schedule in words).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Iterator

from cronsim import CronSim

from lambdaop.spec import Schedule, format_duration

UTC = dt.UTC


def _cron_after(schedule: Schedule, after: dt.datetime) -> Iterator[dt.datetime]:
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    start = after.astimezone(zone).replace(microsecond=0)
    assert schedule.cron is not None
    for moment in CronSim(schedule.cron, start):
        if moment.astimezone(UTC) > after:
            yield moment.astimezone(UTC)


def _every_after(schedule: Schedule, after: dt.datetime, anchor: dt.datetime) -> Iterator[dt.datetime]:
    assert schedule.every is not None
    step = schedule.every
    base = schedule.start or anchor
    k = 0 if after < base else int((after - base) / step) + 1
    while True:
        moment = base + k * step
        if moment > after:
            yield moment.astimezone(UTC)
        k += 1


def occurrences(schedule: Schedule, after: dt.datetime, anchor: dt.datetime) -> Iterator[dt.datetime]:
    """Run times strictly after `after`, within `start` and `end`, in order (UTC)."""
    floor = max(after, schedule.start - dt.timedelta(microseconds=1)) if schedule.start else after
    source = _cron_after(schedule, floor) if schedule.cron else _every_after(schedule, floor, anchor)
    for moment in source:
        if schedule.end is not None and moment > schedule.end:
            return
        yield moment


def next_run(schedule: Schedule, after: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The first run time strictly after `after`, or None when the schedule has ended."""
    return next(occurrences(schedule, after, anchor), None)


def upcoming(
    schedule: Schedule, after: dt.datetime, anchor: dt.datetime, count: int = 5
) -> list[dt.datetime]:
    out = []
    for moment in occurrences(schedule, after, anchor):
        out.append(moment)
        if len(out) >= count:
            break
    return out


def missed(schedule: Schedule, since: dt.datetime, until: dt.datetime, anchor: dt.datetime, limit: int = 10_000) -> list[dt.datetime]:  # fmt: skip
    """Run times in (since, until], at most `limit` of them (the most recent ones kept)."""
    out: list[dt.datetime] = []
    for moment in occurrences(schedule, since, anchor):
        if moment > until:
            break
        out.append(moment)
        if len(out) > limit:
            out.pop(0)
    return out


def jitter(schedule: Schedule, salt: int, run: int) -> dt.timedelta:
    """The fixed offset in [0, jitter) of one run of one object."""
    if not schedule.jitter:
        return dt.timedelta(0)
    return schedule.jitter * fraction(salt, f"run{run}")


def fraction(salt: int, what: str) -> float:
    """A repeatable number in [0, 1) for one object (its salt) and one purpose."""
    digest = hashlib.sha256(f"{salt}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def describe(schedule: Schedule) -> str:
    """The schedule in words: "At 09:00 on Monday through Friday (Europe/Berlin)", "every 15m"."""
    if schedule.cron:
        try:
            words = CronSim(schedule.cron, dt.datetime(2026, 1, 1, tzinfo=UTC)).explain()
        except Exception:
            words = f"cron {schedule.cron}"
        text = f"{words} ({schedule.timezone})"
    else:
        assert schedule.every is not None
        text = f"every {format_duration(schedule.every)}"
    if schedule.start:
        text += f", from {schedule.start.astimezone(UTC).isoformat()}"
    if schedule.end:
        text += f", until {schedule.end.astimezone(UTC).isoformat()}"
    return text
