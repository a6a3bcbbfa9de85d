"""How many objects were created when: the directory that sizes the lists' windows (MongoDB).

Lists read newest first in windows of ids (`ids.floor(t)` is the smallest id
made at `t`). The embedded server reads every entry of a range before it
applies a limit, so a window must hold few entries however densely the objects
in it were created (100,000 applied in a minute, then nothing for a month).

The `directory` collection counts the objects created per owner (and `*`,
everybody) and kind, one document per writer slot (as the counters, so
processes sharing a store never write the same document): per hour (`H`, with
the count of each of its minutes) and per minute (`M`, with the count of each
of its seconds and hundredths of a second), two upserts per owner in the
transaction that inserts the objects. A list reads the hours (at most 24 a
day), and the minute document of a crowded minute; it splits a crowded
hundredth by millisecond, so that each window it reads holds about `target`
entries (ids tell the millisecond, no finer).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from pymongo import UpdateOne

from lambdaop.store.contract import Doc
from lambdaop.store.ids import OBJECT_ID

HOUR, MINUTE, SECOND, HUNDREDTH = 3_600_000, 60_000, 1000, 10  # in milliseconds
EPOCH_MS = 0  # an id lambdaop did not make counts as made here
HOURS_FIRST, HOURS_MOST = 2 * 86_400_000, 64 * 86_400_000  # hours read at once: 48 entries, up to 1,536


class Bucket(NamedTuple):
    """A directory entry summed over writer slots: how many, and how many in each part of it."""

    n: int
    parts: dict[str, dict[int, int]]  # "m": minute offset -> n; "s": second offset, "c": hundredth offset


Read = Callable[[str, int, int], dict[int, Bucket]]  # (prefix, from t, below t) -> {t: bucket}
Target = int | Callable[[], int]  # entries a window should hold; a callable is asked at each bucket


def size(target: Target) -> int:
    return target() if callable(target) else target


def prefix(who: str, kind: str, level: str) -> str:
    return f"{who}\x1f{kind}\x1f{level}"


def made_in(object_id: str) -> int:
    """The millisecond an id was made in (since 1970); an id lambdaop did not make counts as made
    at EPOCH_MS, one of an earlier version (no milliseconds) in the last millisecond of its second."""
    if not OBJECT_ID.match(object_id):
        return EPOCH_MS
    ms = int(object_id[8:11], 16)
    return int(object_id[:8], 16) * 1000 + (ms if ms < 1000 else 999)


def increments(docs: Iterable[Doc]) -> dict[tuple[str, int], Counter[str]]:
    """(prefix, bucket start) -> the `$inc` of these new objects: n, and the count of each part."""
    out: dict[tuple[str, int], Counter[str]] = {}
    for doc in docs:
        at = made_in(doc["_id"])
        hour, minute = at // HOUR * HOUR, at // MINUTE * MINUTE
        for who in (doc["owner"], "*"):
            h = out.setdefault((prefix(who, doc["kind"], "H"), hour), Counter())
            h["n"] += 1
            h[f"m.{(minute - hour) // MINUTE}"] += 1
            m = out.setdefault((prefix(who, doc["kind"], "M"), minute), Counter())
            m["n"] += 1
            m[f"s.{(at - minute) // SECOND}"] += 1
            m[f"c.{(at - minute) // HUNDREDTH}"] += 1
    return out


def updates(docs: Iterable[Doc], slot: str) -> list[UpdateOne]:
    """The directory's writes for these new objects (one upsert per bucket and slot)."""
    return [
        UpdateOne({"_id": f"{p}\x1f{t}\x1f{slot}"}, {"$inc": dict(inc), "$setOnInsert": {"p": p, "t": t}}, upsert=True)
        for (p, t), inc in increments(docs).items()
    ]  # fmt: skip


def merged(docs: Iterable[Doc]) -> dict[int, Bucket]:
    """Directory documents read back, summed over slots by bucket."""
    out: dict[int, Bucket] = {}
    for doc in docs:
        bucket = out.setdefault(int(doc["t"]), Bucket(0, {"m": {}, "s": {}, "c": {}}))
        out[int(doc["t"])] = bucket._replace(n=bucket.n + int(doc.get("n", 0)))
        for part in ("m", "s", "c"):
            for key, n in (doc.get(part) or {}).items():
                counts = bucket.parts[part]
                counts[int(key)] = counts.get(int(key), 0) + int(n)
    return out


def windows(read: Read, who: str, kind: str, top: int, target: Target, bottom: int = EPOCH_MS) -> Iterator[tuple[int, int]]:  # fmt: skip
    """Windows [lo, hi) of creation time (ms since 1970) below `top`, newest first, each holding
    about `target` of the prefix's entries (or fewer), down to `bottom`."""
    hi, span = top, HOURS_FIRST
    while hi > bottom:
        lo = max(bottom // HOUR * HOUR, (hi - span) // HOUR * HOUR)
        hours = read(prefix(who, kind, "H"), lo, hi)
        for t in sorted(hours, reverse=True):
            yield from _hour(read, who, kind, t, min(t + HOUR, hi), hours[t], target)
        # a span with hours in it: the next holds about as many; an empty one: four times as long
        hi, span = lo, min(span * 4, HOURS_MOST) if hours else span * 4


def _hour(read: Read, who: str, kind: str, start: int, end: int, hour: Bucket, target: Target) -> Iterator[tuple[int, int]]:  # fmt: skip
    if hour.n <= size(target):
        yield (start, end)
        return
    for offset in sorted(hour.parts["m"], reverse=True):
        t = start + offset * MINUTE
        if t >= end:
            continue
        n = hour.parts["m"][offset]
        if n <= size(target):
            yield (t, min(t + MINUTE, end))
            continue
        minute = read(prefix(who, kind, "M"), t, t + 1).get(t, Bucket(n, {"s": {}, "c": {}}))
        yield from _minute(t, min(t + MINUTE, end), minute, target)


def _minute(start: int, end: int, minute: Bucket, target: Target) -> Iterator[tuple[int, int]]:
    seconds, hundredths = minute.parts.get("s", {}), minute.parts.get("c", {})
    if not seconds:  # no detail kept: the whole minute
        yield (start, end)
        return
    for offset in sorted(seconds, reverse=True):
        t = start + offset * SECOND
        if t >= end:
            continue
        if seconds[offset] <= size(target):
            yield (t, min(t + SECOND, end))
            continue
        inside = sorted((c for c in hundredths if offset * 100 <= c < offset * 100 + 100), reverse=True)
        if not inside:  # no detail kept: the whole second
            yield (t, min(t + SECOND, end))
        for k in inside:
            u = start + k * HUNDREDTH
            if u < end:
                yield from _split(u, min(u + HUNDREDTH, end), hundredths[k], target)


def _split(start: int, end: int, n: int, target: Target) -> Iterator[tuple[int, int]]:
    """A crowded hundredth: equal parts of it, to the millisecond."""
    parts = max(1, min(end - start, math.ceil(n / size(target))))
    cuts = [end - (end - start) * k // parts for k in range(parts + 1)]
    for hi, lo in itertools.pairwise(cuts):
        yield (lo, hi)
