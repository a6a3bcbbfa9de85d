"""The directory sizes the lists' windows: each holds about `target` entries however they were created."""

from __future__ import annotations

import bisect
import random

from lambdaop.store.ids import floor_ms, new_id
from lambdaop.store.mongo import directory

NOW = 1_800_000_000.0  # seconds since 1970; ids are made at given times, never from the clock


def made(times: list[float]) -> list[str]:
    return sorted(new_id(at=t) for t in times)


def reader(ids: list[str], owner: str = "alice") -> directory.Read:
    """The directory's documents as the store keeps them after these inserts (one slot)."""
    docs: dict[tuple[str, int], dict[str, object]] = {}
    for (p, t), inc in directory.increments({"_id": i, "owner": owner, "kind": "Task"} for i in ids).items():
        doc = docs.setdefault((p, t), {"p": p, "t": t, "n": 0})
        for path, n in inc.items():
            if "." in path:
                part, key = path.split(".")
                counts = doc.setdefault(part, {})
                counts[key] = counts.get(key, 0) + n  # type: ignore[attr-defined]
            else:
                doc[path] = int(doc[path]) + n  # type: ignore[call-overload]

    def read(key: str, lo: int, hi: int) -> dict[int, directory.Bucket]:
        return directory.merged(d for (p, t), d in docs.items() if p == key and lo <= t < hi)

    return read


def walk(ids: list[str], top: int, target: int = 200) -> list[int]:
    """How many of the ids each window holds, newest window first, checking they tile the ids."""
    read = reader(ids)
    held, covered, previous_lo = [], 0, None
    for lo, hi in directory.windows(read, "alice", "Task", top, target):
        assert lo < hi and (previous_lo is None or hi <= previous_lo)
        previous_lo = lo
        n = bisect.bisect_left(ids, floor_ms(hi)) - bisect.bisect_left(ids, floor_ms(lo))
        held.append(n)
        covered += n
    assert covered == len(ids)  # every entry is in exactly one window
    return held


def test_a_burst_of_a_hundred_thousand_in_a_minute_is_read_in_windows_of_about_the_target() -> None:
    rng = random.Random(7)
    burst = [NOW - 60 + rng.random() * 60 for _ in range(100_000)]
    month_ago = [NOW - 30 * 86400 + rng.random() * 3600 for _ in range(300)]
    ids = made(burst + month_ago)
    held = walk(ids, int(NOW * 1000) + 1000)
    assert max(held) <= 2 * 200 and sum(held) == 100_300


def test_a_sparse_history_is_read_in_few_windows() -> None:
    ids = made([NOW - k * 86400 for k in range(20)])  # one a day for twenty days
    held = walk(ids, int(NOW * 1000) + 1000)
    assert sum(held) == 20 and len(held) == 20 and max(held) == 1


def test_windows_below_a_cursor_start_under_it() -> None:
    rng = random.Random(3)
    ids = made([NOW - rng.random() * 10 for _ in range(5000)])
    cursor = ids[2500]
    read = reader(ids)
    top = directory.made_in(cursor) + 1
    windows = list(directory.windows(read, "alice", "Task", top, 200))
    assert floor_ms(windows[0][1]) > cursor  # the cursor's own millisecond is in the first window
    assert floor_ms(windows[-1][0]) <= ids[0]
