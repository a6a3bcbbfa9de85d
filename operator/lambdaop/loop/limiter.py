"""The limiter: this process's calls that wait for places of their limit keys, and the places it holds.

A due call whose step has limits (`engine.limits.limits_of`) asks `admit` before it leaves. It goes
at once when it holds what it needs: a concurrency place of its key (one this process holds and
nobody uses, or one the store gives it), then a rate place. Otherwise it waits in its key's
`Line`, in due order, and the loop is told (`wake`) when it may go. Every call without limits
never reaches this module: `admit` is asked only for calls that have them.

- A concurrency place, once taken in the store, stays this process's while it has calls to give
  it to: when a call comes back (`returned`), the next call of the line takes its place at once,
  with no store work, unless another process says it has a call waiting that was due in an
  earlier second; then the place is released for that process to take. A place nobody here
  wants is released a poll later (a call of the key due meanwhile takes it with no store work).
  Places are renewed with the leases (`renew`), so those of a process that stops are free again
  within one lease.
- A rate place is taken in the store for each call, long enough for the call to leave (a lease,
  then `per`); once it has left, the place is settled to be free `per` (and `margin`) after that
  moment (the settles of a poll go together). A call not sent within a lease of the take gives
  it up and asks again. The line asks again when the next place frees (`next_free`).
- Each key with calls waiting is read every `poll` (places other processes freed, and who else
  waits); the read, the takes and this process's word that it has calls waiting (`put_waiting`,
  refreshed when its earliest call's second changes or the word is about to go stale) are one
  job on the limiter's own store thread, so neither the loop nor its claims ever wait on it. A
  line asks in the pass in which a call joins it; a burst takes its places in growing batches.

The `Limiter` keeps each call's `Seat` and moves it on; the places it holds are kept by
`places.HeldPlaces`, the lines and their asks of the store by `lines.Lines`. The loop's thread
calls everything here; the store jobs are in `placejobs`, and their answers come back as events.
`waiting_for` and the metrics' reads are safe from any thread. Called by the loop's firing and
reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lambdaop.core.clock import Clock
from lambdaop.core.places import LimitType
from lambdaop.engine import templates
from lambdaop.engine.limits import EPOCH, CallLimits, Ticket, key_of, shown
from lambdaop.loop.lines import Lines
from lambdaop.loop.placejobs import LimiterStore, LimitSettings, PlacesFailed, PlacesRenewed, PlacesTaken
from lambdaop.loop.places import HeldPlaces
from lambdaop.loop.seats import WAIT, Admission, Counts, Seat, Stage
from lambdaop.loop.storethread import StoreThread

log = logging.getLogger("lambdaop.loop")

C, R = LimitType.CONCURRENCY, LimitType.RATE


def new_seat(
    object_id: str,
    owner: str,
    call: str,
    due: dt.datetime,
    limits: CallLimits,
    context: Callable[[], Mapping[str, Any]],
    now: dt.datetime,
) -> Seat | Admission:
    """The seat of a call that asks for the first time, with the keys of its limits made from its
    object's context; or, when a key cannot be made, the answer that refuses the call."""
    try:
        ctx = context()
        ckey = key_of(owner, limits.concurrency.key, ctx, f"{limits.where}.concurrency.key") if limits.concurrency else None  # fmt: skip
        rkey = key_of(owner, limits.rate.key, ctx, f"{limits.where}.rate.key") if limits.rate else None
    except templates.TemplateError as exc:
        return Admission(False, refused=str(exc))
    except Exception as exc:  # a key that cannot be made fails its call alone
        log.exception("object %s: the key of its limit could not be made", object_id)
        return Admission(False, refused=f"{limits.where}: the key of its limit could not be made: {exc}")
    stage = Stage.CONCURRENCY if ckey is not None else Stage.RATE
    return Seat(call, object_id, limits, due, now, ckey, rkey, stage)


class Limiter:
    def __init__(
        self,
        store: LimiterStore,
        me: str,
        clock: Clock,
        wake: Callable[[str], None],
        wants: Callable[[str, str], bool],
        put: Callable[[Any], None],
        settings: LimitSettings | None = None,
        io: StoreThread | None = None,
    ) -> None:
        self.store, self.me, self.clock = store, me, clock
        self.wake, self.wants, self.put = wake, wants, put  # let a call go; still wanted?; answer the loop
        self.settings = settings or LimitSettings()
        self._io = io
        self.seats: dict[str, Seat] = {}  # by call
        self.by_object: dict[str, str] = {}  # object -> its call that waits or is ready
        self.held = HeldPlaces(store, me, self.settings, self._submit)
        self.lines = Lines(store, me, clock, self.settings, self._submit)
        self.counts = Counts()
        self.shown: dict[str, dict[str, Any]] = {}  # object -> what it waits for (read by other threads)
        self._swept = EPOCH

    @property
    def io(self) -> StoreThread:
        if self._io is None:
            self._io = StoreThread(name="limits")
        return self._io

    # ----- the loop's questions

    def admit(
        self,
        object_id: str,
        owner: str,
        call: str,
        due: dt.datetime,
        limits: CallLimits,
        context: Callable[[], Mapping[str, Any]],
        now: dt.datetime,
    ) -> Admission:
        """May this due call leave now? If not, it waits for its places and `wake` says when."""
        seat = self.seats.get(call)
        if seat is None:
            made = new_seat(object_id, owner, call, due, limits, context, now)
            if isinstance(made, Admission):
                return made  # its key cannot be made: refused
            seat = self.seats[call] = made
            self.by_object[object_id] = call
        return self._advance(seat, now)

    def _advance(self, seat: Seat, now: dt.datetime) -> Admission:
        if seat.stage is Stage.CONCURRENCY:
            assert seat.ckey is not None and seat.limits.concurrency is not None
            if self.lines.waits((C, seat.ckey), seat.call):
                return WAIT  # it waits in its place in line
            number = self.held.first_idle(seat.ckey, seat.limits.concurrency.limit)  # held, nobody uses it
            if number is None or not self.lines.turn((C, seat.ckey), seat.due, now):
                return self._wait(seat, C, now)
            self._seat(seat, number, now)
        if seat.stage is Stage.RATE:
            return self._wait(seat, R, now)
        if seat.stage is Stage.READY and seat.deadline is not None and now > seat.deadline:
            self.counts.voided += 1  # its rate place is spent: it asks for another, in its place in line
            seat.deadline, seat.rnumber, seat.stage = None, None, Stage.RATE
            return self._wait(seat, R, now)
        seat.stage = Stage.OUT
        if seat.rnumber is not None and seat.rkey is not None and seat.limits.rate is not None:
            left = self.clock.now() + self.settings.margin + seat.limits.rate.per  # its window, from now
            self.held.settle(seat.rkey, seat.rnumber, left)
        if self.by_object.get(seat.object_id) == seat.call:
            del self.by_object[seat.object_id]
        self.shown.pop(seat.object_id, None)
        waited = (now - seat.since).total_seconds() if seat.waited else 0.0
        return Admission(True, free_since=seat.free_since, waited=waited)

    def _wait(self, seat: Seat, kind: LimitType, now: dt.datetime) -> Admission:
        key = seat.ckey if kind is C else seat.rkey
        assert key is not None
        limit = seat.limits.concurrency if kind is C else seat.limits.rate
        assert limit is not None
        per = getattr(limit, "per", None)
        if self.lines.join((kind, key), Ticket(seat.call, seat.object_id, seat.due, seat.since, limit.limit, per), now):  # fmt: skip
            self.shown[seat.object_id] = {"kind": seat.stage.value, "key": shown(key), "limit": limit.limit, "since": seat.since, **({"per": per} if per else {})}  # fmt: skip
        return WAIT

    def _waited(self, seat: Seat) -> None:
        """The call could not have a place when it asked: it waits (counted once)."""
        if not seat.waited:
            seat.waited = True
            self.counts.waits[seat.stage.value] += 1

    def _seat(self, seat: Seat, number: int, free_since: dt.datetime) -> None:
        """The call holds this concurrency place now; it goes on to its rate place, or is ready."""
        assert seat.ckey is not None
        self.held.use(seat.ckey, number, seat.call)
        seat.number, seat.free_since = number, max(seat.free_since, free_since)
        seat.stage = Stage.RATE if seat.rkey is not None else Stage.READY

    def returned(self, call: str, now: dt.datetime) -> None:
        """A call came back (or will never leave): its concurrency place goes to the next in line."""
        seat = self.seats.pop(call, None)
        if seat is None:
            return
        self._forget(seat)
        if seat.number is not None and seat.ckey is not None:
            self._free(seat.ckey, seat.number, now)

    def _forget(self, seat: Seat) -> None:
        for kind, key in ((C, seat.ckey), (R, seat.rkey)):
            if key is not None:
                self.lines.leave((kind, key), seat.call)
        if self.by_object.get(seat.object_id) == seat.call:
            del self.by_object[seat.object_id]
            self.shown.pop(seat.object_id, None)

    def _free(self, key: str, number: int, now: dt.datetime) -> None:
        """A concurrency place this process holds is free: the next call in line takes it at once,
        if it is this process's turn; else it stays idle until `tick` releases it."""
        if not self.held.free(key, number, now):
            return  # lost to another process meanwhile
        line = self.lines.get((C, key))
        while line is not None and (ticket := line.first()) is not None:
            seat = self.seats.get(ticket.call)
            if (
                seat is None
                or seat.stage is not Stage.CONCURRENCY
                or not self.wants(seat.object_id, seat.call)
            ):
                line.pop()
                if seat is not None:
                    self._drop(seat, now)
                continue
            if number >= ticket.limit or not self.lines.turn((C, key), ticket.due, now):
                return
            line.pop()
            self.counts.handed += 1
            self._waited(seat)  # it was in line behind the call that held the place
            self._seat(seat, number, now)
            self._ready_or_rate(seat, now)
            return

    def _ready_or_rate(self, seat: Seat, now: dt.datetime) -> None:
        if seat.stage is Stage.RATE:
            self._wait(seat, R, now)
        else:
            self.shown.pop(seat.object_id, None)
            self.wake(seat.object_id)

    def _drop(self, seat: Seat, now: dt.datetime) -> None:
        """A call nobody wants any more (its object changed, or is no longer held here)."""
        self.seats.pop(seat.call, None)
        self._forget(seat)
        if seat.number is not None and seat.ckey is not None and seat.stage is not Stage.OUT:
            self._free(seat.ckey, seat.number, now)
        if seat.rnumber is not None and seat.rkey is not None and seat.stage is not Stage.OUT:
            self.held.settle(seat.rkey, seat.rnumber, now)  # its call never left

    def forget(self, object_id: str, now: dt.datetime) -> None:
        """An object that waited or was ready is no longer held here (its call will not leave)."""
        call = self.by_object.get(object_id)
        seat = self.seats.get(call) if call is not None else None
        if seat is not None and seat.stage is not Stage.OUT:
            self._drop(seat, now)

    def waiting_for(self, object_id: str) -> dict[str, Any] | None:
        """What a held object's due call waits for (any thread): kind, key, limit, since."""
        return self.shown.get(object_id)

    def waiting(self) -> dict[tuple[str, str, str], int]:
        """Calls waiting per (kind, owner, key) (any thread: a copy)."""
        return self.lines.waiting()

    def held_places(self) -> int:
        return self.held.count()

    def tallies(self) -> dict[str, int]:
        """What `Counts` has, as the metrics name it (`waits:KIND`, `places:EVENT`)."""
        c = self.counts
        places = {"taken": c.taken, "handed": c.handed, "released": c.released, "voided": c.voided, "lost": c.lost}  # fmt: skip
        return {
            **{f"waits:{k}": n for k, n in c.waits.items()},
            **{f"places:{k}": n for k, n in places.items()},
        }

    # ----- one pass

    def tick(self, now: dt.datetime) -> dt.datetime | None:
        """Release idle places, ask the store for keys whose calls wait; answers when to look again."""
        if not self.seats and self.held.empty and self.lines.empty:
            return None
        for key, free_at in self.held.write_settles(now).items():  # rate places whose calls left
            self.lines.sooner((R, key), free_at)  # its line asks again when they free
        if now - self._swept >= dt.timedelta(seconds=1):
            self._sweep(now)
            self.lines.forget_rivals(now)  # what others said, while it holds
        wake: list[dt.datetime] = []
        self.counts.released += self.held.release_idle(now, lambda key: self.lines.others_wait((C, key), now))  # fmt: skip
        if any((C, key) not in self.lines for key in self.held.places):  # the idle ones, a poll later
            wake.append(now + self.settings.poll)
        for at in (self.held.next_settle(), self.lines.ask(now, self.held.mine)):
            if at is not None:
                wake.append(at)
        return min(wake, default=None)

    def _sweep(self, now: dt.datetime) -> None:
        """Drop calls nobody wants any more (their objects were changed or let go)."""
        self._swept = now
        for seat in list(self.seats.values()):
            if seat.stage is not Stage.OUT and not self.wants(seat.object_id, seat.call):
                self._drop(seat, now)

    def _submit(self, job: Callable[[], Any], kind: LimitType | None, key: str) -> None:
        def done(value: Any) -> None:
            if value is not None:  # (a release answers nothing)
                self.put(PlacesFailed(kind, key, value) if isinstance(value, Exception) else value)

        self.io.submit(job, done)

    def taken(self, event: PlacesTaken, now: dt.datetime) -> None:
        """A take came back: the calls that got places go on; the line asks again at its next time."""
        line = self.lines.answered(event)
        for call, number, free_since in event.picks:
            self.counts.taken += 1
            seat = self.seats.get(call)
            if line is not None:
                line.leave(call)
            wanted = seat is not None and self.wants(seat.object_id, call)
            if event.kind is C:
                self.held.took(event.key, number, now)
                if seat is None or not wanted or seat.stage is not Stage.CONCURRENCY:
                    self._free(event.key, number, now)  # to the next in line, or released
                    continue
                self._seat(seat, number, free_since)
                self._ready_or_rate(seat, now)
            elif seat is not None and wanted and seat.stage is Stage.RATE:
                seat.deadline, seat.rnumber, seat.stage = event.until, number, Stage.READY
                seat.free_since = max(seat.free_since, free_since)
                self.shown.pop(seat.object_id, None)
                self.wake(seat.object_id)
            else:
                self.counts.voided += 1
        for ticket in line or ():  # those the store had no place for when they asked: they wait
            seat = self.seats.get(ticket.call)
            if seat is not None and ticket.since <= event.at:
                self._waited(seat)
        self.lines.schedule(event)

    def failed(self, event: PlacesFailed, now: dt.datetime) -> None:
        if event.kind is not None:
            self.lines.retry((event.kind, event.key), now)
        what = "read" if event.kind else "released or renewed"
        log.warning("a limit key's places could not be %s (%s); %s", what, event.error,
                    "its calls ask again" if event.kind else "the next renewal tries again")  # fmt: skip

    # ----- renewal

    def renew(self, now: dt.datetime) -> None:
        """Extend every concurrency place this process holds by one lease (with the leases)."""
        self.held.renew(now)

    def renewed(self, event: PlacesRenewed, now: dt.datetime) -> None:
        for key, number in event.lost:
            call = self.held.lose(key, number)
            self.counts.lost += 1
            seat = self.seats.get(call) if call is not None else None
            log.warning("a place of limit key %r was lost (not renewed in time)%s", shown(key), "; its call is out" if seat and seat.stage is Stage.OUT else "")  # fmt: skip
            if seat is not None and seat.stage is not Stage.OUT:
                if seat.rkey is not None:
                    self.lines.leave((R, seat.rkey), seat.call)
                seat.number, seat.deadline, seat.stage = None, None, Stage.CONCURRENCY
                self._wait(seat, C, now)
            elif seat is not None:
                seat.number = None  # nothing to release when it comes back

    def stop(self, now: dt.datetime) -> None:
        """Release the places no call of this process has out, and withdraw every word (at the end of
        the process, on its thread). A call cut short keeps its place until its time ends, as it
        keeps its lease."""
        self.held.release_all(now, self._out)
        self.lines.withdraw(now)
        self.held.clear()

    def _out(self, call: str) -> bool:
        seat = self.seats.get(call)
        return seat is not None and seat.stage is Stage.OUT

    @property
    def alive(self) -> bool:
        """Its store thread runs (or was never needed: no call had limits)."""
        return self._io is None or self._io.alive

    def close(self, timeout: float = 15.0) -> None:
        if self._io is not None:
            self._io.stop(timeout)
