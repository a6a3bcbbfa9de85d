"""The upcoming index: work due within the horizon that the loop does not hold yet.

`Upcoming` knows each object by id, due time and fence, and keeps a heap by
due time, so the loop finds what to claim next without asking the store.
`Refill` is the incremental range read that feeds it: it remembers how far
the store has been read (a watermark on `due`), so each read asks only for
what newly entered the horizon, and it can be told to read everything again
(objects freed from a stopped process are overdue, behind the watermark).
Both own their state; the reconciler calls them from its thread only.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from lambdaop.loop.events import Refilled
from lambdaop.store.contract import Due, LoopStore


@dataclass(frozen=True)
class _Entry:
    due: Due
    seq: int


class Upcoming:
    def __init__(self, horizon: dt.timedelta) -> None:
        self.horizon = horizon
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[dt.datetime, int, str]] = []
        self._seq = itertools.count()

    def add(self, due: Due, now: dt.datetime) -> None:
        """Know this object as due then (a later fence or another time replaces what was known)."""
        known = self._entries.get(due.id)
        if known is not None and known.due.fence >= due.fence and known.due.due == due.due:
            return
        if due.due > now + self.horizon:
            self._entries.pop(due.id, None)
            return
        entry = _Entry(due, next(self._seq))
        self._entries[due.id] = entry
        heapq.heappush(self._heap, (due.due, entry.seq, due.id))

    def discard(self, object_id: str) -> None:
        self._entries.pop(object_id, None)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> set[str]:
        return set(self._entries)

    def first_due(self) -> dt.datetime | None:
        """When the earliest known object is due (None when none is)."""
        while self._heap:
            due, seq, oid = self._heap[0]
            entry = self._entries.get(oid)
            if entry is not None and entry.seq == seq:
                return due
            heapq.heappop(self._heap)
        return None

    def take_until(self, limit: dt.datetime) -> list[Due]:
        """Remove and answer every object due at or before `limit`, earliest first."""
        out: list[Due] = []
        while self._heap and self._heap[0][0] <= limit:
            _, seq, oid = heapq.heappop(self._heap)
            entry = self._entries.get(oid)
            if entry is None or entry.seq != seq:
                continue
            del self._entries[oid]
            out.append(entry.due)
        return out


@dataclass(frozen=True)
class Read:
    """One range read to make: due in (after, until], at most `limit`."""

    after: dt.datetime | None
    until: dt.datetime
    limit: int


class Refill:
    """How far the store's due range has been read, and whether a read is out."""

    def __init__(self, horizon: dt.timedelta, limit: int) -> None:
        self.horizon = horizon
        self.limit = limit
        self.covered: dt.datetime | None = None
        self.busy = False
        self.again = False  # another read is wanted as soon as this one is back
        self._from_start = False

    def next_read(self, now: dt.datetime) -> Read | None:
        """The read to make now, or None while one is out."""
        if self.busy:
            return None
        self.busy = True
        after = self.covered
        if self._from_start:
            after, self._from_start = None, False
        return Read(after, now + self.horizon, self.limit)

    def job(self, store: LoopStore, now: dt.datetime) -> Callable[[], Refilled] | None:
        """A store job making the next read (None while one is out)."""
        read = self.next_read(now)
        if read is None:
            return None

        def job() -> Refilled:
            found = store.due_between(read.after, read.until, read.limit)
            if len(found) >= read.limit:  # more than one read holds: continue from the last one
                return Refilled(tuple(found), found[-1].due - dt.timedelta(microseconds=1), True)
            return Refilled(tuple(found), read.until, False)

        return job

    def read_all_again(self) -> None:
        """The next read starts from the beginning (overdue objects were freed)."""
        self._from_start = True
        self.again = True

    def done(self, covered: dt.datetime, more: bool) -> None:
        self.busy = False
        self.covered = covered
        self.again = more or self._from_start  # a read from the start asked for meanwhile still comes

    def failed(self) -> None:
        self.busy = False

    def wanted(self) -> bool:
        """Whether a read is asked for and none is out."""
        if self.again and not self.busy:
            self.again = False
            return True
        return False
