"""Claims: work comes in from the store ahead of its due time, and goes back when it is let go.

`Claims` runs the loop's store jobs on the store thread (`submit`: a job that
raises answers a `StoreFailed`) and takes the answers of those that move work:
refills feed the upcoming index, `claim_ahead` claims in batches what comes
due within the claim window and `claimed` holds what the claim read back
(missed runs first written as catch-up), `release` lets objects go, `renew`
extends the leases of what is held, the lease sweep frees the work of stopped
processes and finds what nobody holds, and a failed refill, sweep or claim is
undone so the next one retries. Requests that waited for a claim are taken
again once it is back. It keeps no state of its own: it moves work between the
parts the reconciler owns (`Upcoming`, `Refill`, `Holdings`, `LeaseKeeper`).
Called by reconciler (its passes, events and chores), on the loop's thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from lambdaop.core.clock import Clock
from lambdaop.engine.record import Change, StoredObject
from lambdaop.loop.events import Claimed, Refilled, Released, StoreFailed, Swept, Write
from lambdaop.loop.held import Holdings, Stats
from lambdaop.loop.leases import LeaseKeeper
from lambdaop.loop.limiter import Limiter
from lambdaop.loop.requests import Desk
from lambdaop.loop.runner import Inbox
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.storethread import StoreThread
from lambdaop.loop.upcoming import Refill, Upcoming
from lambdaop.loop.writes import Writes
from lambdaop.store.contract import Due, LoopStore

log = logging.getLogger("lambdaop.loop")


class Claims:
    def __init__(
        self,
        store: LoopStore,
        settings: LoopSettings,
        clock: Clock,
        io: StoreThread,
        inbox: Inbox,
        upcoming: Upcoming,
        refill: Refill,
        held: Holdings,
        leases: LeaseKeeper,
        writes: Writes,
        limiter: Limiter,
        desk: Desk,
        stats: Stats,
    ) -> None:
        self.store, self.settings, self.clock, self.io, self.inbox = store, settings, clock, io, inbox
        self.upcoming, self.refill, self.held, self.leases = upcoming, refill, held, leases
        self.writes, self.limiter, self.desk, self.stats = writes, limiter, desk, stats

    def holds(self, object_id: str) -> bool:
        return object_id in self.held or object_id in self.leases.claiming

    def submit(
        self, job: Callable[[], Any], what: str, asked: tuple[Due, ...] = (), quiet: bool = False
    ) -> None:
        """Run a store job on the store thread; its event (`quiet`: only a failure) comes back."""

        def done(value: Any) -> None:
            if isinstance(value, Exception):
                self.inbox.put(StoreFailed(what, value, asked))
            elif not quiet:
                self.inbox.put(value)

        self.io.submit(job, done)

    def add_upcoming(self, due: Due, now: dt.datetime) -> None:
        if not self.holds(due.id):
            self.upcoming.add(due, now)

    # ----- reads, claims, releases

    def start_refill(self, now: dt.datetime) -> None:
        job = self.refill.job(self.store, now)
        if job is not None:
            self.submit(job, "refill")

    def refilled(self, event: Refilled, now: dt.datetime) -> None:
        self.refill.done(event.covered, event.more)
        for due in event.found:
            self.add_upcoming(due, now)

    def claim_ahead(self, now: dt.datetime) -> None:
        """Claim, in batches, what comes due within the claim window (and a little beyond, so claims are few)."""
        s = self.settings
        first = self.upcoming.first_due()
        if self.leases.batches or first is None or first > now + s.claim_window:
            return
        batch = self.upcoming.take_until(now + s.claim_window + s.claim_gather)
        for i in range(0, len(batch), s.claim_batch):
            part = batch[i : i + s.claim_batch]
            self.submit(self.leases.claim(part, now), "claim", tuple(part))

    def claimed(self, event: Claimed, now: dt.datetime) -> None:
        records, unwanted = self.leases.sort(event, now, self.clock.now(), self.settings.claim_window, self.stats)  # fmt: skip
        unwanted += [r.id for r in records if not self.hold(r, event.until, now)]
        if unwanted:
            self.release(unwanted)
        self._answer_waiting([d.id for d in event.asked])

    def hold(self, record: StoredObject, until: dt.datetime, now: dt.datetime) -> bool:
        """Hold a record this process now leases (False: it is not to be held)."""
        held, caught = self.held.hold(record, until, now, self.leases.recovered.pop(record.id, None))
        if held is None:
            return False
        if caught is None:
            self.held.arm(held)
        else:  # runs were missed while the service was down: catchUp decides
            keep = caught.due is not None and caught.due <= now + self.settings.claim_window
            self.writes.submit(held, Write.CATCH_UP, caught, Change(updated=now, progress=caught), now, keep=keep)  # fmt: skip
        return True

    def release(self, ids: list[str]) -> None:
        for oid in ids:
            self.held.pop(oid)
            self.limiter.forget(oid, self.clock.now())
        self.submit(self.leases.release(ids), "release")

    def released(self, event: Released, now: dt.datetime) -> None:
        for due in event.waiting:
            self.add_upcoming(due, now)

    def _answer_waiting(self, ids: list[str]) -> None:
        for req in self.desk.claimed(ids):
            self.inbox.put(req, wake=False)

    # ----- leases: sweep and renewal

    def sweep(self, now: dt.datetime) -> None:
        """Free leases of processes that stopped, and find due work that nobody holds."""
        live = self.held.ids() | self.leases.claiming
        job = self.leases.sweep(now, live, live | self.upcoming.ids())
        if job is not None:
            self.submit(job, "lease sweep")

    def swept(self, event: Swept, now: dt.datetime) -> None:
        self.leases.swept(event.freed)
        self.stats.recovered += len(event.freed)
        if event.freed:
            self.refill.read_all_again()  # the freed objects are overdue: read them with the rest
        for due in event.unheld:
            self.add_upcoming(due, now)

    def renew(self, now: dt.datetime) -> None:
        """Renew this process's leases, and the places of limit keys it holds with them."""
        self.submit(self.leases.renew(self.held.values(), now), "lease renewal")
        self.limiter.renew(now)

    def store_failed(self, event: StoreFailed, now: dt.datetime) -> None:
        failed = {"refill": self.refill.failed, "lease sweep": self.leases.sweep_failed}.get(event.what)
        if failed is not None:
            failed()
        elif event.what == "claim":
            self.leases.claimed(event.asked)
            for due in event.asked:
                self.add_upcoming(due, now)
            self._answer_waiting([d.id for d in event.asked])
        after = {"claim": "they are tried again", "release": "the leases expire by themselves"}
        if event.what not in ("fold", "prune"):
            log.warning("%s failed (%s); %s", event.what, event.error, after.get(event.what, "the next one retries"))  # fmt: skip
