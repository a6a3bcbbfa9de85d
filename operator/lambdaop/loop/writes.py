"""The loop's writes of held objects: each one fenced, under the lease, through the group-commit writer.

`submit` turns a change of a held object into the store's `Op` (expecting the
fence its earlier writes leave, proving the lease, ending it when the next
call is not due soon, else extending it), counts it as under way on the
object, and hands it to the writer; the writer's answer comes back to the
loop's queue as `Written`. Nothing else of the loop writes an object.
Called by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from enum import Enum

from lambdaop.core.clock import Clock
from lambdaop.core.logs import about
from lambdaop.engine.progress import Progress
from lambdaop.engine.record import CallRecord, Change
from lambdaop.engine.runs import RunRecord
from lambdaop.loop.events import Answer, Pending, Write, Written
from lambdaop.loop.held import Held, Stats
from lambdaop.store.contract import Op, WriteOutcome
from lambdaop.store.writer import Writer

log = logging.getLogger("lambdaop.loop")


@dataclass(frozen=True)
class Send:
    """A write of a held object, handed to the writer once the one before it is answered."""

    op: Op
    done: Callable[[WriteOutcome], None]
    urgent: bool


class Next(Enum):
    """What the loop does once a write of a held object is answered."""

    NOTHING = 0  # a write that does not move the object (started, set): it goes on as it was
    RESULT = 1  # a result waited for this write: write it now
    ARM = 2  # the next call is due soon: fire it at its time
    RELEASE = 3  # the lease has ended: the store has the object again
    FAILED = 4  # the write was refused: let the object go


class Writes:
    def __init__(
        self,
        writer: Writer,
        claim_window: dt.timedelta,
        lease: dt.timedelta,
        put: Callable[[Written], None],
        clock: Clock,
    ) -> None:
        self.clock = clock
        self.writer = writer
        self.claim_window = claim_window
        self.lease = lease
        self.put = put

    def submit(
        self,
        held: Held,
        why: Write,
        progress: Progress,
        change: Change,
        now: dt.datetime,
        keep: bool = False,
        reply: Future[Answer] | None = None,
        calls: tuple[CallRecord, ...] = (),
        later: bool = False,
        ended: RunRecord | None = None,
    ) -> None:
        """Write `change` of a held object; `progress` is the loop's once it is written."""
        release = not keep and (progress.due is None or progress.due > now + self.claim_window)
        until = max(held.until, (progress.due or now) + self.lease)
        if change.progress is not None and why is not Write.STARTED:
            change = replace(change, progress=replace(change.progress, in_flight=False))
        record = held.record
        op = Op(
            held.id,
            record.owner,
            record.kind.value,
            record.state,
            change.new_state(record),
            fence=held.fence,
            change=change,
            leased=True,
            release=release,
            until=None if release else until,
            attempts=[call.for_storage() for call in calls],
            run=ended.for_storage() if ended is not None else change.ended,
        )
        held.writes += 1
        held.results_out += why is Write.RESULT
        pending = Pending(held.id, why, progress, change, release, until, reply, later)
        soon = progress.due is not None and progress.due <= now + dt.timedelta(seconds=self.writer.linger)

        def done(outcome: WriteOutcome) -> None:
            self.put(Written(pending, outcome))

        # the next step is due now, or somebody waits: no lingering
        send = Send(op, done, soon or reply is not None)
        if held.sending:  # one write of an object at a time: the store writes a leased one by id alone
            held.queued.append(send)
        else:
            held.sending = True
            self.writer.submit(send.op, send.done, urgent=send.urgent)

    def _next(self, held: Held, landed: bool) -> None:
        """A write of this object was answered: hand the writer the next one, or, when this one
        failed, answer the rest as stale (they were built on it)."""
        held.sending = False
        queued, held.queued = held.queued, []
        if not landed:
            for send in queued:
                send.done(WriteOutcome.STALE)
            return
        if queued:
            held.sending, held.queued = True, queued[1:]
            self.writer.submit(queued[0].op, queued[0].done, urgent=queued[0].urgent)

    def landed(self, held: Held, event: Written, stats: Stats) -> Next:
        """Take the writer's answer into the held object, and say what follows."""
        pending = event.pending
        held.writes -= 1
        held.results_out -= pending.why is Write.RESULT
        if held.sending:
            self._next(held, event.outcome is WriteOutcome.OK)
        if event.outcome is WriteOutcome.STALE:
            stats.stale += 1
            log.warning("%s: its lease was lost or it changed before the %s was written; another process runs it", held.label, pending.why.value, extra=about(held.record))  # fmt: skip
            return Next.FAILED
        if event.outcome is not WriteOutcome.OK:
            log.error("%s: the %s could not be written (%s); it is released and will run again", held.label, pending.why.value, event.outcome.value, extra=about(held.record))  # fmt: skip
            return Next.FAILED
        stats.progress_at = self.clock.monotonic()
        held.record = pending.change.applied_to(held.record)
        held.until = max(held.until, pending.until)
        if pending.why in (Write.STARTED, Write.SET):
            if held.result is not None and not held.writes:
                return Next.RESULT
            return Next.ARM if not held.fired and not held.writes else Next.NOTHING
        out = bool(held.wave)  # calls of a parallel step still out: it stays in flight
        held.progress = replace(pending.progress, in_flight=out)
        held.fired, held.started_written = out, False
        return Next.RELEASE if pending.release else Next.ARM
