"""The limiter's store jobs and their answers: a key read with its places taken, releases, settles, renewals.

Each job runs on the limiter's own store thread and answers one event for the loop's queue
(`PlacesTaken`, `PlacesRenewed`; a job that raises answers `PlacesFailed`). `take_job` is the one
that matters: it reads everything of a key (`key_state`, one bounded read), chooses the places the
first calls in line may take (`engine.limits.choose`, with the time read on that thread just
before the write), takes them (one conditional write per place), and writes this process's word
about the calls still waiting when that word changed (`put_waiting`). Called by the limiter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from lambdaop.core.clock import Clock
from lambdaop.core.places import KeyState, LimitType, Place, Waiter
from lambdaop.engine.limits import EPOCH, Ticket, choose, lapsed_holders, next_free, rivals, second_of
from lambdaop.store.contract import PlaceStore


class LimiterStore(PlaceStore, Protocol):
    """What the limiter asks of the store: places, and whether their holders still live."""

    def stopped(self, processes: Iterable[str], now: dt.datetime) -> set[str]: ...


C = LimitType.CONCURRENCY


@dataclass(frozen=True)
class LimitSettings:
    lease: dt.timedelta = dt.timedelta(seconds=30)  # a concurrency place lasts this long unless renewed
    poll: dt.timedelta = dt.timedelta(milliseconds=100)  # a key with calls waiting is read this often
    grace: dt.timedelta = dt.timedelta(milliseconds=500)  # a place free this long goes to any process
    margin: dt.timedelta = dt.timedelta(milliseconds=50)  # a rate place's window ends this long after `per`
    word: dt.timedelta = dt.timedelta(seconds=2)  # how long a process's word that it has calls waiting holds
    batch: int = 50  # places the first take of a burst asks for at most (its first calls leave sooner); each next one twice as many


@dataclass(frozen=True)
class PlacesTaken:
    """A key was read and places taken: (call, place number, since when it was free) for each call
    that got one, the places' `until` (a rate place: the time its call must leave by), who else
    waits, when the next rate place frees, and what this process now says of its waiting calls."""

    kind: LimitType
    key: str
    picks: tuple[tuple[str, int, dt.datetime], ...]
    until: dt.datetime
    rivals: tuple[Waiter, ...]
    next_free: dt.datetime | None
    at: dt.datetime
    word: tuple[dt.datetime, dt.datetime] | None  # (second of the earliest, until) as put; None: withdrawn
    said: bool  # the word was written by this job


@dataclass(frozen=True)
class PlacesFailed:
    kind: LimitType | None
    key: str
    error: Exception


@dataclass(frozen=True)
class PlacesRenewed:
    lost: frozenset[tuple[str, int]]
    until: dt.datetime


def take_job(
    store: LimiterStore,
    me: str,
    clock: Clock,
    s: LimitSettings,
    kind: LimitType,
    key: str,
    tickets: list[Ticket],
    waiting: int,
    word: tuple[dt.datetime, dt.datetime] | None,
    mine: frozenset[int],
    batch: int,
) -> Callable[[], PlacesTaken]:
    """A job that takes the places of a key the first calls in line (`tickets`, of `waiting` in all)
    may have now, at most `batch`, and says how many still wait (`word`: what this process said
    last; `mine`: the places of the key this process holds)."""

    def job() -> PlacesTaken:
        at = clock.now()
        state = store.key_state(key)
        lapsed = lapsed_holders(state, kind, me, at)  # (a read only after a holder was late or stopped)
        alive = lapsed - store.stopped(lapsed, at) if lapsed else set()
        picks = choose(state, kind, tickets[: batch + 1], me, at, s.grace, mine, alive)[:batch]
        until = at + s.lease  # a rate place's call leaves by then, or gives it up; its window is set then
        asks = [(n, until if kind is C else until + s.margin + (t.per or dt.timedelta(0))) for t, n in picks]
        got = set(store.take_places(key, kind, me, asks, at)) if asks else set()
        won = [(t, n) for t, n in picks if n in got]
        freed = {p.number: p.until for p in state.places if p.kind is kind}
        left = [t for t in tickets if t.call not in {w.call for w, _ in won}]
        first = left[0].due if left and waiting > len(won) else None
        said = say(store, key, kind, me, first, waiting - len(won), word, at, s.word)
        new = [p for p in state.places if p.kind is not kind or p.number not in got]
        new += [Place(kind, n, me, u) for n, u in asks if n in got]
        soonest = next_free(KeyState(new, []), kind, min((t.limit for t in left), default=1), at)
        picked = tuple((t.call, n, freed.get(n, EPOCH)) for t, n in won)
        word_now = None if first is None else (said or word)
        others = tuple(rivals(state, kind, me, at))
        return PlacesTaken(kind, key, picked, until, others, soonest, at, word_now, said is not None)

    return job


def release_job(store: LimiterStore, me: str, key: str, numbers: list[int], now: dt.datetime) -> Callable[[], None]:  # fmt: skip
    def job() -> None:
        store.release_places(key, me, numbers, now)

    return job


def settle_job(store: LimiterStore, me: str, key: str, settles: list[tuple[int, dt.datetime]]) -> Callable[[], None]:  # fmt: skip
    def job() -> None:
        store.settle_places(key, me, settles)

    return job


def renew_job(store: LimiterStore, me: str, places: list[tuple[str, int]], until: dt.datetime) -> Callable[[], PlacesRenewed]:  # fmt: skip
    return lambda: PlacesRenewed(frozenset(store.renew_places(me, places, until)), until)


def say(
    store: LimiterStore,
    key: str,
    kind: LimitType,
    me: str,
    first: dt.datetime | None,
    calls: int,
    word: tuple[dt.datetime, dt.datetime] | None,
    at: dt.datetime,
    lasts: dt.timedelta,
) -> tuple[dt.datetime, dt.datetime] | None:
    """Write this process's word about its calls waiting for a key when it changed: the earliest one's
    second moved, it is about to go stale, or none wait any more. Answers what it wrote (None: nothing)."""
    if first is None:
        if word is not None:
            store.put_waiting(key, kind, me, None, 0, at)
        return None
    if word is not None and word[0] == second_of(first) and word[1] - at > lasts / 2:
        return None
    store.put_waiting(key, kind, me, first, calls, at + lasts)
    return (second_of(first), at + lasts)
