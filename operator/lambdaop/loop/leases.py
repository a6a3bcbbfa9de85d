"""The lease keeper: claims ahead, renewals, releases and the sweep of stopped processes' leases.

It owns what is being claimed (and how many claim batches are out), whether a
sweep is out, and why freed objects are due again. Its methods answer store
jobs, functions that run on the store thread and answer one typed event,
which the reconciler hands back to it (`claimed`, `swept`). It never reads
the clock: every job gets `now`. Called by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from lambdaop.core.logs import about
from lambdaop.engine.record import StoredObject
from lambdaop.loop.events import Claimed, Released, Renewed, Swept
from lambdaop.loop.held import Held, Holdings, Stats
from lambdaop.store.contract import Doc, Due, LoopStore, ObjectReads

log = logging.getLogger("lambdaop.loop")

Job = Callable[[], object]


def read_record(doc: Doc) -> StoredObject | None:
    """A stored document as the typed record, spec read too; None (logged) when it cannot be read."""
    try:
        record = StoredObject.from_storage(doc)
        record.plan  # noqa: B018 - read the spec now: one that cannot be read is skipped
        return record
    except (KeyError, TypeError, ValueError) as exc:
        log.error("object %s: its stored document cannot be read (written by a newer version?); skipped: %s", doc.get("_id"), exc, extra=about(doc))  # fmt: skip
        return None


@dataclass(frozen=True)
class LeaseTimes:
    lease: dt.timedelta
    orphan_grace: dt.timedelta  # overdue work nobody holds is taken after this long


class KeeperStore(LoopStore, ObjectReads, Protocol):
    """What the keeper asks of the store."""


class LeaseKeeper:
    """`heartbeat`: whether the renewals also say this process is alive (a runtime that keeps its
    own heartbeat, from before the loop starts and never behind the loop's reads, turns it off).
    `monotonic` times the sweep's own store reads: a sweep that waited on a stalled store takes
    nobody's work over (the others' heartbeats may be in line behind the same stall)."""

    def __init__(
        self, store: KeeperStore, owner: str, slot: str, times: LeaseTimes, monotonic: Callable[[], float]
    ) -> None:
        self.store = store
        self.owner = owner
        self.slot = slot
        self.times = times
        self.monotonic = monotonic
        self.heartbeat = True
        self.claiming: set[str] = set()
        self.batches = 0  # claim batches with the store thread
        self.sweeping = False
        self.recovered: dict[str, str] = {}  # object -> why its call is made again

    # ----- claims

    def claim(self, batch: list[Due], now: dt.datetime) -> Callable[[], Claimed]:
        """A job that holds these objects until the last is due plus a lease, and reads them back."""
        ids = [d.id for d in batch]
        self.claiming.update(ids)
        self.batches += 1
        until = max(max(d.due for d in batch), now) + self.times.lease
        owner, store = self.owner, self.store

        dues = [d.due for d in batch]
        # a batch of what comes due next is read back as one range of the due index, unless it
        # spans far more than the claim window (an overdue object freed from a stopped process)
        # (objects due at one instant are read by id: a range of one instant holds all of them,
        # however many batches they are claimed in)
        span = (min(dues), max(dues)) if min(dues) < max(dues) <= min(dues) + self.times.lease else None

        def job() -> Claimed:  # the records are read here, on the store thread, not the loop's
            got = store.claim(owner, until, ids)
            records = {d["_id"]: (d.get("due"), read_record(d)) for d in store.fetch(got, span)}
            return Claimed(tuple(batch), frozenset(got), records, until, now)

        return job

    def claimed(self, asked: Iterable[Due]) -> None:
        """A claim came back (or failed): these are no longer being claimed."""
        self.batches -= 1
        self.claiming.difference_update(d.id for d in asked)

    def sort(
        self, event: Claimed, now: dt.datetime, back: dt.datetime, window: dt.timedelta, stats: Stats
    ) -> tuple[list[StoredObject], list[str]]:
        """Of what a claim now holds (it came back at `back`): the records to hold, and the ids to
        let go (changed since they were read, not due soon any more, or unreadable)."""
        self.claimed(event.asked)
        earliest = min(d.due for d in event.asked)
        sent = event.sent or earliest
        # warn only when the claim itself made them late, not when they were overdue before it was sent
        if earliest < now and back - max(earliest, sent) > dt.timedelta(milliseconds=50):
            log.warning("a claim of %d object(s) finished %.0f ms after the first was due (the store is slow); "
                        "those calls leave late", len(event.asked), (back - max(earliest, sent)).total_seconds() * 1000)  # fmt: skip
        if sent - earliest > dt.timedelta(seconds=5):
            log.info("%d object(s) fell due before this process could claim them (it was not running, or the "
                     "store did not answer; the first %.0f s ago): they run now",
                     len(event.asked), (sent - earliest).total_seconds())  # fmt: skip
        stats.claimed += len(event.got)
        stats.lost_claims += len(event.asked) - len(event.got)
        keep: list[StoredObject] = []
        unwanted: list[str] = []
        for oid in event.got:
            due, record = event.records.get(oid, (None, None))
            if record is None or due is None or due > now + 2 * window:
                unwanted.append(oid)
            else:
                keep.append(record)
        return keep, unwanted

    def release(self, ids: list[str]) -> Callable[[], Released]:
        """A job that ends this process's leases of these objects and answers those still waiting."""
        owner, store = self.owner, self.store

        def job() -> Released:
            store.release(owner, ids)
            waiting = [Due(d["_id"], d["due"], d.get("fence", 0)) for d in store.fetch(ids) if d.get("due")]
            return Released(tuple(waiting))

        return job

    def free_at_start(self) -> list[str]:
        """The only process of an embedded store starts: every other lease is stale (runs inline)."""
        freed = self.store.drop_leases_of_others(self.owner)
        for oid in freed:
            self.recovered[oid] = "lambdaop restarted while its call was due or in flight"
        if freed:
            log.warning("%d object(s) held before a restart are due again", len(freed))
        return freed

    # ----- renewal

    def renew(self, held: Iterable[Held], now: dt.datetime) -> Callable[[], Renewed]:
        """A job that says this process is alive and extends the leases of these held objects that
        end within two thirds of a lease, by one lease from `now`."""
        until = now + self.times.lease
        ids = [h.id for h in held if h.until <= now + 2 * self.times.lease / 3]
        owner, slot, store, beat = self.owner, self.slot, self.store, self.heartbeat
        info = {"owner": owner, "at": now}

        def job() -> Renewed:
            if beat:
                store.heartbeat(slot, until, info)
            lost = store.renew(owner, ids, until) if ids else set()
            return Renewed(frozenset(lost), tuple(i for i in ids if i not in lost), until)

        return job

    def renewed(self, event: Renewed, holdings: Holdings) -> None:
        """A renewal came back: the renewed leases last until its time (only now is it known);
        the held objects whose lease another process took over are dropped."""
        for oid in event.renewed:
            held = holdings.get(oid)
            if held is not None and event.until is not None:
                held.until = max(held.until, event.until)
        for oid in event.lost:
            held = holdings.get(oid)
            if held is None or held.writes:  # released by our own write meanwhile
                continue
            holdings.pop(oid)
            log.warning("%s: its lease was taken over by another process; dropped", held.label, extra=about(held.record))  # fmt: skip

    # ----- the sweep

    def sweep(self, now: dt.datetime, live: set[str], known: set[str]) -> Callable[[], Swept] | None:
        """A job that frees the expired leases of stopped processes and finds overdue work nobody
        holds; None while one is out. `live` is what this process holds or claims, `known` also
        what it knows is upcoming.

        A lease that ended is taken over only when its holder's heartbeat has ended too: a live
        process whose renewals are late (its commits or reads are slow) keeps its work, and only
        one that stopped saying it is alive loses it. Nothing is taken over by a sweep whose own
        first read took longer than a fifth of a lease (a stalled store)."""
        if self.sweeping:
            return None
        self.sweeping = True
        owner, store, grace, clock = self.owner, self.store, self.times.orphan_grace, self.monotonic
        slow = self.times.lease.total_seconds() / 5

        def job() -> Swept:
            freed: dict[str, str] = {}
            began = clock()
            expired = store.expired_leases(now)
            by_holder: dict[str, list[str]] = {}
            for lease in expired:
                by_holder.setdefault(lease.owner, []).append(lease.id)
            stopped = store.stopped([h for h in by_holder if h != owner], now)
            if clock() - began <= slow:  # the store answered promptly: heartbeats are current
                for process in store.lapsed(now):  # one that died inside a transaction stalls the store
                    if process != owner:
                        store.end_sessions_of(process, now)
                for holder, ids in by_holder.items():
                    if holder == owner:  # left behind by a write that failed
                        store.drop_leases(holder, [i for i in ids if i not in live], now)
                    elif holder in stopped:
                        store.end_sessions_of(holder, now)  # it may have died inside a transaction
                        why = f"the lease of {holder} expired while its call was due or in flight"
                        freed.update(dict.fromkeys(store.drop_leases(holder, ids, now), why))
            overdue = [d for d in store.due_between(None, now - grace, 1000) if d.id not in known]
            held = store.holders([d.id for d in overdue[:200]])
            unheld = tuple(d for d in overdue[:200] if d.id not in held)
            return Swept(freed, unheld)

        return job

    def sweep_failed(self) -> None:
        self.sweeping = False

    def swept(self, freed: dict[str, str]) -> None:
        self.sweeping = False
        self.recovered.update(freed)
        if freed:
            log.warning("%d object(s) of a stopped process are due again", len(freed))
