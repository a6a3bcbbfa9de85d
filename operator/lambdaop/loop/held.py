"""The objects this process holds under its lease, and when each is to fire.

A `Held` object was claimed ahead of its due time and read back whole: its
record as stored, the loop's own progress (which runs ahead of the store
while a call is out), its lease time, and what is under way (a call out, a
write with the writer, a result waiting for that write). `Holdings` owns all
of them, a heap of fire times, and the calls that have left and not come
back. The reconciler calls it from its thread only.
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from lambdaop.core.clock import iso
from lambdaop.core.logs import about
from lambdaop.engine import machine, recurring
from lambdaop.engine.progress import PlanSpec, Progress
from lambdaop.engine.record import StoredObject
from lambdaop.loop.invoker import CallResult
from lambdaop.store.contract import Due, WriteOutcome

log = logging.getLogger("lambdaop.loop")


@dataclass
class Held:
    record: StoredObject  # as the store has it
    progress: Progress  # the loop's: ahead of the store while its call is out
    until: dt.datetime  # when its lease ends unless renewed
    seq: int = 0  # of its latest place in the fire heap
    fired: bool = False  # its call has left
    fired_at: float = 0.0  # monotonic
    writes: int = 0  # this loop's writes of it not answered yet (with the writer, or queued behind one)
    results_out: int = 0  # of those, the writes of a call's result (which may end its run)
    sending: bool = False  # one of them is with the writer (the others wait in `queued`, in order)
    queued: list[Any] = field(default_factory=list)
    result: list[CallResult] | None = None  # results waiting for an earlier write to finish
    wave: dict[str, CallResult | None] | None = (
        None  # a parallel step's calls out, by step, as they come back
    )
    started_written: bool = False
    recovered: str | None = None  # why its call is made again (its last holder stopped)
    suspend_after: bool = False  # suspended while its run went on: takes effect when it ends
    asks: list[Any] = field(default_factory=list)  # requests taken again once its write under way lands

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def plan(self) -> PlanSpec:
        return self.record.plan

    @property
    def fence(self) -> int:
        """The fence its next write expects (its writes still with the writer each move it)."""
        return self.record.fence + self.writes


@dataclass
class Stats:
    """What the loop has done since it started (tests and benchmarks read it)."""

    dispatched: int = 0
    finished: int = 0
    recovered: int = 0
    stale: int = 0
    claimed: int = 0
    lost_claims: int = 0
    progress_at: float = 0.0  # monotonic: when a call last left or a write last landed


class Holdings:
    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._fire: list[tuple[dt.datetime, int, str]] = []
        self._seq = itertools.count()
        self._out: set[str] = set()  # calls that have left and not reported back
        self._out_order: collections.deque[tuple[float, str, int]] = collections.deque()
        self.held_back = 0  # calls the last pass did not fire: their lease might lapse during them

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._held

    def __len__(self) -> int:
        return len(self._held)

    def get(self, object_id: str) -> Held | None:
        return self._held.get(object_id)

    def values(self) -> list[Held]:
        return list(self._held.values())

    def ids(self) -> set[str]:
        return set(self._held)

    @property
    def in_flight(self) -> int:
        """Calls that have left and not come back."""
        return len(self._out)

    def hold(
        self, record: StoredObject, until: dt.datetime, now: dt.datetime, recovered: str | None
    ) -> tuple[Held | None, Progress | None]:
        """Hold a claimed object: a call that was out when its last holder stopped is made again
        now. Answers it (None when its spec cannot be read), and the progress `catchUp` gives it
        when runs were missed while the service was down (None when none were)."""
        try:
            plan = record.plan
        except ValueError as exc:
            log.error("object %s: its stored spec cannot be read; skipped: %s", record.id, exc, extra=about(record))  # fmt: skip
            return None, None
        progress = record.progress
        if progress.in_flight:
            progress = machine.recover(progress, now)
        progress = replace(progress, due=record.due or progress.due or now)
        held = Held(record, progress, until, recovered=recovered)
        self._held[held.id] = held
        caught = recurring.catch_up(plan, progress, now) if plan.schedule is not None else progress
        if caught == progress:
            return held, None
        log.warning("%s missed runs while the service was down; catchUp %s: next run at %s",
                    held.label, plan.schedule.catchUp if plan.schedule else "", iso(caught.scheduled), extra=about(record))  # fmt: skip
        return held, caught

    def pop(self, object_id: str) -> Held | None:
        self._out.discard(object_id)
        held = self._held.pop(object_id, None)
        if held is not None and held.queued:  # writes waiting behind one with the writer: never sent
            queued, held.queued = held.queued, []
            for send in queued:
                send.done(WriteOutcome.STALE)
        return held

    def arm(self, held: Held, at: dt.datetime | None = None) -> None:
        """Fire it at its progress's due time (or look at it again `at` then)."""
        when = at or held.progress.due
        assert when is not None
        held.seq = next(self._seq)
        heapq.heappush(self._fire, (when, held.seq, held.id))

    def due(
        self, now: dt.datetime, max_in_flight: int, safe_until: dt.datetime | None = None
    ) -> Iterator[Held]:
        """Held objects whose call is due now and may leave (armed, not fired, no write under way).

        With `safe_until`, one whose lease ends before it stays (fencing: the lease could lapse
        while its call is out, and another process would make the call again); it is looked at
        again when its lease is renewed."""
        held_back: list[Held] = []
        while self._fire and self._fire[0][0] <= now and len(self._out) < max_in_flight:
            _, seq, oid = heapq.heappop(self._fire)
            held = self._held.get(oid)
            if held is None or held.seq != seq or (held.fired and held.wave is None):
                continue  # (a parallel step with calls out may start more)
            if held.writes:  # a change of ours is being written: it is armed again once durable
                continue
            if safe_until is not None and held.until < safe_until:
                held_back.append(held)
                continue
            yield held
        for held in held_back:
            self.arm(held, now + dt.timedelta(milliseconds=500))
        self.held_back = len(held_back)

    def fired(self, held: Held, at: float) -> None:
        held.fired = True
        held.fired_at = at
        self._out.add(held.id)
        self._out_order.append((at, held.id, held.seq))

    def returned(self, object_id: str) -> None:
        """Its call came back (or will not)."""
        self._out.discard(object_id)

    def out_since(self, cutoff: float) -> Iterator[Held]:
        """Held objects whose call left at or before `cutoff` (each answered once) and is still out."""
        while self._out_order and self._out_order[0][0] <= cutoff:
            _, oid, seq = self._out_order.popleft()
            held = self._held.get(oid)
            if held is not None and held.seq == seq and held.fired:
                yield held

    def after_write(self, held: Held, arm: bool, release: bool) -> Due | None:
        """A write of it landed: fire it at its next due time (`arm`), or let it go (`release`;
        answers when it is due, if it still waits for a call)."""
        if arm:
            self.arm(held)
        elif release:
            self.pop(held.id)
            if held.progress.due is not None and not held.progress.final:
                return Due(held.id, held.progress.due, held.record.fence)
        return None

    def wake_times(self, now: dt.datetime, mono: float, long_call: dt.timedelta) -> list[dt.datetime]:
        """When the loop must look at its held objects again: the next call due, and when the oldest
        call out becomes long (and shows running)."""
        out = []
        if self._out_order:
            left = self._out_order[0][0] + long_call.total_seconds() - mono
            out.append(now + dt.timedelta(seconds=max(0.0, left)))
        fire = self.next_fire()
        if fire is not None:
            out.append(fire)
        return out

    def next_fire(self) -> dt.datetime | None:
        while self._fire:
            due, seq, oid = self._fire[0]
            held = self._held.get(oid)
            if held is None or held.seq != seq or (held.fired and held.wave is None):
                heapq.heappop(self._fire)
                continue
            return due
        return None
