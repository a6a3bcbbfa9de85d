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

The loop's thread calls everything here; the store jobs are in `placejobs`, and their answers
come back as events. `waiting_for` and the metrics' reads are safe from any thread.
Called by the loop's firing and reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lambdaop.core.clock import Clock
from lambdaop.core.places import PlaceKind, Waiter
from lambdaop.engine import templates
from lambdaop.engine.limits import (
    EPOCH,
    CallLimits,
    Line,
    Ticket,
    key_of,
    my_turn,
    shown,
)
from lambdaop.loop.placejobs import (
    LimiterStore,
    LimitSettings,
    PlacesFailed,
    PlacesRenewed,
    PlacesTaken,
    release_job,
    renew_job,
    settle_job,
    take_job,
)
from lambdaop.loop.seats import WAIT, Admission, Counts, Seat, Stage
from lambdaop.loop.storethread import StoreThread
from lambdaop.spec.flowcontrol import MAX_LIMIT

log = logging.getLogger("lambdaop.loop")

C, R = PlaceKind.CONCURRENCY, PlaceKind.RATE
LineId = tuple[PlaceKind, str]


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
        self.lines: dict[LineId, Line] = {}
        self.seats: dict[str, Seat] = {}  # by call
        self.by_object: dict[str, str] = {}  # object -> its call that waits or is ready
        self.places: dict[str, dict[int, str | None]] = {}  # key -> place -> the call using it (None: idle)
        self.idle_since: dict[tuple[str, int], dt.datetime] = {}  # an idle place is released a poll later
        self.settles: dict[str, list[tuple[int, dt.datetime]]] = {}  # rate places whose calls left
        self.batches: dict[LineId, int] = {}  # places the next take of a line asks for at most
        self.rivals: dict[LineId, tuple[Waiter, ...]] = {}
        self.asking: set[LineId] = set()
        self.next_ask: dict[LineId, dt.datetime] = {}
        self.words: dict[LineId, tuple[dt.datetime, dt.datetime]] = {}  # what this process said waits
        self.counts = Counts()
        self.shown: dict[str, dict[str, Any]] = {}  # object -> what it waits for (read by other threads)
        self._swept = EPOCH
        self._settled = EPOCH

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
            try:
                ctx = context()
                ckey = key_of(owner, limits.concurrency.key, ctx, f"{limits.where}.concurrency.key") if limits.concurrency else None  # fmt: skip
                rkey = (
                    key_of(owner, limits.rate.key, ctx, f"{limits.where}.rate.key") if limits.rate else None
                )
            except templates.TemplateError as exc:
                return Admission(False, refused=str(exc))
            except Exception as exc:  # a key that cannot be made fails its call alone
                log.exception("object %s: the key of its limit could not be made", object_id)
                return Admission(
                    False, refused=f"{limits.where}: the key of its limit could not be made: {exc}"
                )
            stage = Stage.CONCURRENCY if ckey is not None else Stage.RATE
            seat = self.seats[call] = Seat(call, object_id, limits, due, now, ckey, rkey, stage)
            self.by_object[object_id] = call
        return self._advance(seat, now)

    def _advance(self, seat: Seat, now: dt.datetime) -> Admission:
        if seat.stage is Stage.CONCURRENCY:
            assert seat.ckey is not None and seat.limits.concurrency is not None
            if seat.call in self.lines.get((C, seat.ckey), ()):
                return WAIT  # it waits in its place in line
            number = self._idle(seat.ckey, seat.limits.concurrency.limit, seat.due, now)
            if number is None:
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
            self.settles.setdefault(seat.rkey, []).append((seat.rnumber, left))
        if self.by_object.get(seat.object_id) == seat.call:
            del self.by_object[seat.object_id]
        self.shown.pop(seat.object_id, None)
        waited = (now - seat.since).total_seconds() if seat.waited else 0.0
        return Admission(True, free_since=seat.free_since, waited=waited)

    def _wait(self, seat: Seat, kind: PlaceKind, now: dt.datetime) -> Admission:
        key = seat.ckey if kind is C else seat.rkey
        assert key is not None
        limit = seat.limits.concurrency if kind is C else seat.limits.rate
        assert limit is not None
        per = getattr(limit, "per", None)
        line = self.lines.setdefault((kind, key), Line())
        if line.join(Ticket(seat.call, seat.object_id, seat.due, seat.since, limit.limit, per)):
            self.next_ask.setdefault((kind, key), now)
            self.shown[seat.object_id] = {"kind": seat.stage.value, "key": shown(key), "limit": limit.limit, "since": seat.since, **({"per": per} if per else {})}  # fmt: skip
        return WAIT

    def _waited(self, seat: Seat) -> None:
        """The call could not have a place when it asked: it waits (counted once)."""
        if not seat.waited:
            seat.waited = True
            self.counts.waits[seat.stage.value] += 1

    def _idle(self, key: str, limit: int, due: dt.datetime, now: dt.datetime) -> int | None:
        """A concurrency place of the key this process holds and nobody uses, if it is this call's turn."""
        places = self.places.get(key)
        idle = [n for n, call in (places or {}).items() if call is None and n < limit]
        if not idle or not my_turn(due, self.rivals.get((C, key), ()), now):
            return None
        return min(idle)

    def _seat(self, seat: Seat, number: int, free_since: dt.datetime) -> None:
        """The call holds this concurrency place now; it goes on to its rate place, or is ready."""
        assert seat.ckey is not None
        self.places.setdefault(seat.ckey, {})[number] = seat.call
        self.idle_since.pop((seat.ckey, number), None)
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
            line = self.lines.get((kind, key)) if key is not None else None
            if line is not None:
                line.leave(seat.call)
        if self.by_object.get(seat.object_id) == seat.call:
            del self.by_object[seat.object_id]
            self.shown.pop(seat.object_id, None)

    def _free(self, key: str, number: int, now: dt.datetime) -> None:
        """A concurrency place this process holds is free: the next call in line takes it at once,
        if it is this process's turn; else it stays idle until `tick` releases it."""
        places = self.places.get(key)
        if places is None or number not in places:
            return  # lost to another process meanwhile
        places[number] = None
        self.idle_since[(key, number)] = now
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
            if number >= ticket.limit or not my_turn(ticket.due, self.rivals.get((C, key), ()), now):
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
            self.settles.setdefault(seat.rkey, []).append((seat.rnumber, now))  # its call never left

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
        out = {}
        for (kind, key), line in list(self.lines.items()):
            owner, _, name = key.partition("\x1f")
            out[("concurrency" if kind is C else "rate", owner, name)] = len(line)
        return out

    def held_places(self) -> int:
        return sum(len(p) for p in list(self.places.values()))

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
        if not self.seats and not self.places and not self.words and not self.lines and not self.rivals and not self.settles:  # fmt: skip
            return None
        if self.settles and now - self._settled >= self.settings.poll:  # rate places whose calls left
            self._settled = now
            for key, settles in self.settles.items():  # a poll at a time, all to the latest one's window
                latest = max(u for _, u in settles)  # (one write; a window is never shortened by it)
                self._submit(settle_job(self.store, self.me, key, [(n, latest) for n, _ in settles]), None, key)  # fmt: skip
                if (R, key) in self.next_ask:  # its line asks again when they free
                    self.next_ask[(R, key)] = min(self.next_ask[(R, key)], latest)
            self.settles.clear()
        if now - self._swept >= dt.timedelta(seconds=1):
            self._sweep(now)
            for line_id, others in list(self.rivals.items()):  # what others said, while it holds
                if all(w.until <= now for w in others):
                    del self.rivals[line_id]
        wake: list[dt.datetime] = []
        for key, places in list(self.places.items()):  # idle for a poll, or others wait: released
            soon = (
                now if any(w.until > now for w in self.rivals.get((C, key), ())) else now - self.settings.poll
            )
            idle = [
                n for n, call in places.items() if call is None and self.idle_since.get((key, n), now) <= soon
            ]
            if idle:
                for n in idle:
                    del places[n]
                    self.idle_since.pop((key, n), None)
                self._submit(self._release(key, idle, now), None, key)
            if not places:
                del self.places[key]
            elif (C, key) not in self.lines:
                wake.append(now + self.settings.poll)
        if self.settles:
            wake.append(self._settled + self.settings.poll)
        for line_id, line in list(self.lines.items()):
            if line_id in self.asking:
                continue
            if not line and line_id not in self.words:
                del self.lines[line_id]
                self.next_ask.pop(line_id, None)
                continue
            at = self.next_ask.get(line_id, now)
            if at <= now:
                self.asking.add(line_id)
                self._submit(self._take(line_id, line, now), *line_id)
            else:
                wake.append(at)
        return min(wake, default=None)

    def _sweep(self, now: dt.datetime) -> None:
        """Drop calls nobody wants any more (their objects were changed or let go)."""
        self._swept = now
        for seat in list(self.seats.values()):
            if seat.stage is not Stage.OUT and not self.wants(seat.object_id, seat.call):
                self._drop(seat, now)

    def _submit(self, job: Callable[[], Any], kind: PlaceKind | None, key: str) -> None:
        def done(value: Any) -> None:
            if value is not None:  # (a release answers nothing)
                self.put(PlacesFailed(kind, key, value) if isinstance(value, Exception) else value)

        self.io.submit(job, done)

    def _release(self, key: str, numbers: list[int], now: dt.datetime) -> Callable[[], None]:
        self.counts.released += len(numbers)
        return release_job(self.store, self.me, key, numbers, now)

    def _take(self, line_id: LineId, line: Line, now: dt.datetime) -> Callable[[], PlacesTaken]:
        """A job: read the key, take the places the first calls in line may have, say what waits."""
        kind, key = line_id
        tickets = line.head(max((t.limit for t in line), default=1) + 1)
        mine = frozenset(self.places.get(key, ())) if kind is C else frozenset()
        batch = self.batches.get(line_id, self.settings.batch)
        return take_job(self.store, self.me, self.clock, self.settings, kind, key, tickets, len(line), self.words.get(line_id), mine, batch)  # fmt: skip

    def taken(self, event: PlacesTaken, now: dt.datetime) -> None:
        """A take came back: the calls that got places go on; the line asks again at its next time."""
        line_id = (event.kind, event.key)
        self.asking.discard(line_id)
        self.rivals[line_id] = event.rivals
        if event.word is None:
            self.words.pop(line_id, None)
        else:
            self.words[line_id] = event.word
        line = self.lines.get(line_id)
        for call, number, free_since in event.picks:
            self.counts.taken += 1
            seat = self.seats.get(call)
            if line is not None:
                line.leave(call)
            wanted = seat is not None and self.wants(seat.object_id, call)
            if event.kind is C:
                self.places.setdefault(event.key, {})[number] = None
                self.idle_since[(event.key, number)] = now
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
        later = (
            event.next_free
            if event.kind is R and event.next_free is not None
            else event.at + self.settings.poll
        )
        self.next_ask[line_id] = max(later, event.at + self.settings.poll / 4)
        batch = self.batches.pop(line_id, self.settings.batch)
        if len(event.picks) >= batch and line:  # a full take: more may be free, ask again now, for more
            self.next_ask[line_id] = event.at
            self.batches[line_id] = min(2 * batch, MAX_LIMIT)

    def failed(self, event: PlacesFailed, now: dt.datetime) -> None:
        if event.kind is not None:
            self.asking.discard((event.kind, event.key))
            self.next_ask[(event.kind, event.key)] = now + self.settings.poll
        what = "read" if event.kind else "released or renewed"
        log.warning("a limit key's places could not be %s (%s); %s", what, event.error,
                    "its calls ask again" if event.kind else "the next renewal tries again")  # fmt: skip

    # ----- renewal

    def renew(self, now: dt.datetime) -> None:
        """Extend every concurrency place this process holds by one lease (with the leases)."""
        places = [(key, n) for key, held in self.places.items() for n in held]
        if places:
            self._submit(renew_job(self.store, self.me, places, now + self.settings.lease), None, "")

    def renewed(self, event: PlacesRenewed, now: dt.datetime) -> None:
        for key, number in event.lost:
            call = self.places.get(key, {}).pop(number, None)
            self.counts.lost += 1
            seat = self.seats.get(call) if call is not None else None
            log.warning("a place of limit key %r was lost (not renewed in time)%s", shown(key), "; its call is out" if seat and seat.stage is Stage.OUT else "")  # fmt: skip
            if seat is not None and seat.stage is not Stage.OUT:
                rate_line = self.lines.get((R, seat.rkey)) if seat.rkey is not None else None
                if rate_line is not None:
                    rate_line.leave(seat.call)
                seat.number, seat.deadline, seat.stage = None, None, Stage.CONCURRENCY
                self._wait(seat, C, now)
            elif seat is not None:
                seat.number = None  # nothing to release when it comes back

    def stop(self, now: dt.datetime) -> None:
        """Release the places no call of this process has out, and withdraw every word (at the end of
        the process, on its thread). A call cut short keeps its place until its time ends, as it
        keeps its lease."""
        for key, held in list(self.places.items()):
            seats = {n: self.seats.get(call) if call is not None else None for n, call in held.items()}
            free = [n for n, seat in seats.items() if seat is None or seat.stage is not Stage.OUT]
            if free:
                self.store.release_places(key, self.me, free, now)
        for kind, key in list(self.words):
            self.store.put_waiting(key, kind, self.me, None, 0, now)
        self.places.clear()
        self.words.clear()
        self.idle_since.clear()

    @property
    def alive(self) -> bool:
        """Its store thread runs (or was never needed: no call had limits)."""
        return self._io is None or self._io.alive

    def close(self) -> None:
        if self._io is not None:
            self._io.stop()
