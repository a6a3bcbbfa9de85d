"""How many objects were created when: the directory that sizes the lists' windows (MongoDB).

Lists read newest first in windows of ids (`ids.floor(t)` is the smallest id
made at `t`). The embedded server reads every entry of a range before it
applies a limit, so a window must hold few entries however densely the objects
in it were created (100,000 applied in a minute, then nothing for a month).

The `directory` collection counts the objects created per owner (and `*`,
everybody) and kind: in all (`first`: the millisecond of the oldest), per hour,
minute, second and hundredth of a second, one document per writer slot (as the
counters, so processes sharing a store never write the same document). A list
reads the hours (at most 24 a day), the minutes of a crowded hour (at most 60),
the seconds of a crowded minute, the hundredths of a crowded second, and splits
a crowded hundredth by millisecond, so that each window it reads holds about
`target` entries (ids tell the millisecond, no finer). The
directory is written in the transaction that inserts the objects.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from pymongo import UpdateOne

from lambdaop.store.contract import Doc
from lambdaop.store.ids import OBJECT_ID

ALL, LEVELS = 0, (3_600_000, 60_000, 1000, 10)  # bucket widths in milliseconds; 0: the whole prefix
EPOCH_MS = 1_420_070_400_000  # 2015-01-01: where an id lambdaop did not make is counted
HOURS_FIRST, HOURS_MOST = 2 * 86_400_000, 64 * 86_400_000  # hours read at once: 48 entries, up to 1,536
HOUR = LEVELS[0]

Read = Callable[[str, int, int], dict[int, int]]  # (prefix, from t, below t) -> {t: n}


def prefix(who: str, kind: str, level: int) -> str:
    return f"{who}\x1f{kind}\x1f{level}"


def made_in(object_id: str) -> int:
    """The millisecond an id was made in (since 1970); an id lambdaop did not make counts as made
    at EPOCH_MS, one of an earlier version (no milliseconds) in the last millisecond of its second."""
    if not OBJECT_ID.match(object_id):
        return EPOCH_MS
    ms = int(object_id[8:11], 16)
    return int(object_id[:8], 16) * 1000 + (ms if ms < 1000 else 999)


def increments(docs: Iterable[Doc]) -> Counter[tuple[str, int]]:
    """(prefix, bucket start) -> how many of these new objects it gains."""
    out: Counter[tuple[str, int]] = Counter()
    for doc in docs:
        at = made_in(doc["_id"])
        for who in (doc["owner"], "*"):
            out[(prefix(who, doc["kind"], ALL), 0)] += 1
            for width in LEVELS:
                out[(prefix(who, doc["kind"], width), at // width * width)] += 1
    return out


def updates(docs: Iterable[Doc], slot: str) -> list[UpdateOne]:
    """The directory's writes for these new objects (upserts of one document per bucket and slot)."""
    docs = list(docs)
    first: dict[str, int] = {}
    for doc in docs:
        for who in (doc["owner"], "*"):
            key = prefix(who, doc["kind"], ALL)
            first[key] = min(first.get(key, made_in(doc["_id"])), made_in(doc["_id"]))
    out = []
    for (p, t), n in increments(docs).items():
        update: Doc = {"$inc": {"n": n}, "$setOnInsert": {"p": p, "t": t}}
        if p in first:
            update["$min"] = {"first": first[p]}
        out.append(UpdateOne({"_id": f"{p}\x1f{t}\x1f{slot}"}, update, upsert=True))
    return out


def windows(read: Read, first: int | None, who: str, kind: str, top: int, target: int) -> Iterator[tuple[int, int]]:  # fmt: skip
    """Windows [lo, hi) of creation time (ms since 1970) below `top`, newest first, each holding
    about `target` of the prefix's entries (or fewer), down to the oldest (`first`)."""
    bottom = first if first is not None else EPOCH_MS
    hi, span = top, HOURS_FIRST
    while hi > bottom:
        lo = max(bottom // HOUR * HOUR, (hi - span) // HOUR * HOUR)
        hours = read(prefix(who, kind, HOUR), lo, hi)
        for t in sorted(hours, reverse=True):
            yield from _split(read, who, kind, 0, t, min(t + HOUR, hi), hours[t], target)
        # a span with hours in it: the next holds about as many; an empty one: four times as long
        hi, span = lo, min(span * 4, HOURS_MOST) if hours else span * 4


def _split(read: Read, who: str, kind: str, level: int, start: int, end: int, n: int, target: int) -> Iterator[tuple[int, int]]:  # fmt: skip
    """The bucket [start, end) of LEVELS[level] holding `n`: itself when that is few enough, else
    the buckets of the next level in it (or, for the last level, equal parts of it, to the ms)."""
    if n <= target or end - start <= 1:
        yield (start, end)
        return
    if level + 1 < len(LEVELS):
        width = LEVELS[level + 1]
        inner = read(prefix(who, kind, width), start, end)
        for t in sorted(inner, reverse=True):
            yield from _split(read, who, kind, level + 1, t, min(t + width, end), inner[t], target)
        return
    parts = min(end - start, math.ceil(n / target))
    cuts = [end - (end - start) * k // parts for k in range(parts + 1)]
    for hi, lo in itertools.pairwise(cuts):
        yield (lo, hi)
