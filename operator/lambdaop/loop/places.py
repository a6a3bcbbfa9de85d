"""The places of limit keys this process holds, as the limiter keeps them.

`HeldPlaces` owns the concurrency places taken in the store and kept here (which call uses each,
and since when an idle one has been idle) and the rate places whose calls left, waiting to be
settled. It hands an idle place to a call, takes it back when the call returns, releases the
places idle for a poll (at once when another process waits for the key), renews every held place
by one lease, and writes the settles of a poll together, each key's to its latest window. Its
store work goes through the limiter's store thread (`submit`); only `release_all`, at the end of
the process, writes on the caller's thread. Called by the limiter, on the loop's thread; `count`
is safe from any thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from lambdaop.core.places import LimitType
from lambdaop.engine.limits import EPOCH
from lambdaop.loop.placejobs import LimiterStore, LimitSettings, release_job, renew_job, settle_job

Submit = Callable[[Callable[[], Any], LimitType | None, str], None]  # a job for the store thread, of a key


class HeldPlaces:
    def __init__(self, store: LimiterStore, me: str, settings: LimitSettings, submit: Submit) -> None:
        self.store, self.me, self.settings, self.submit = store, me, settings, submit
        self.places: dict[str, dict[int, str | None]] = {}  # key -> place -> the call using it (None: idle)
        self.idle_since: dict[tuple[str, int], dt.datetime] = {}  # an idle place is released a poll later
        self.settles: dict[str, list[tuple[int, dt.datetime]]] = {}  # rate places whose calls left
        self._settled = EPOCH

    @property
    def empty(self) -> bool:
        """No place is held and none is to be settled."""
        return not self.places and not self.settles

    def count(self) -> int:
        """Concurrency places held (any thread)."""
        return sum(len(p) for p in list(self.places.values()))

    def mine(self, key: str) -> frozenset[int]:
        """The numbers of the key's places held here (a take leaves them to this process's calls)."""
        return frozenset(self.places.get(key, ()))

    def first_idle(self, key: str, limit: int) -> int | None:
        """The lowest place of the key held here that no call uses, below the limit."""
        idle = [n for n, call in self.places.get(key, {}).items() if call is None and n < limit]
        return min(idle) if idle else None

    def took(self, key: str, number: int, now: dt.datetime) -> None:
        """A place taken in the store is held here, idle until a call uses it."""
        self.places.setdefault(key, {})[number] = None
        self.idle_since[(key, number)] = now

    def use(self, key: str, number: int, call: str) -> None:
        """The call uses this place now."""
        self.places.setdefault(key, {})[number] = call
        self.idle_since.pop((key, number), None)

    def free(self, key: str, number: int, now: dt.datetime) -> bool:
        """The place's call came back: the place is idle from now (False: it is not held here any
        more, lost to another process meanwhile)."""
        places = self.places.get(key)
        if places is None or number not in places:
            return False
        places[number] = None
        self.idle_since[(key, number)] = now
        return True

    def lose(self, key: str, number: int) -> str | None:
        """A place not renewed in time is not held here any more; answers the call that used it."""
        return self.places.get(key, {}).pop(number, None)

    def release_idle(self, now: dt.datetime, others_wait: Callable[[str], bool]) -> int:
        """Release the places idle for a poll (or idle at all, when another process waits for the
        key) and forget the keys with none left; answers how many were released."""
        released = 0
        for key, places in list(self.places.items()):
            soon = now if others_wait(key) else now - self.settings.poll
            idle = [n for n, call in places.items() if call is None and self.idle_since.get((key, n), now) <= soon]  # fmt: skip
            if idle:
                for n in idle:
                    del places[n]
                    self.idle_since.pop((key, n), None)
                released += len(idle)
                self.submit(release_job(self.store, self.me, key, idle, now), None, key)
            if not places:
                del self.places[key]
        return released

    def renew(self, now: dt.datetime) -> None:
        """Extend every place held by one lease."""
        places = [(key, n) for key, held in self.places.items() for n in held]
        if places:
            self.submit(renew_job(self.store, self.me, places, now + self.settings.lease), None, "")

    def release_all(self, now: dt.datetime, out: Callable[[str], bool]) -> None:
        """Release at once, on this thread, every place held whose call is not `out`."""
        for key, held in list(self.places.items()):
            free = [n for n, call in held.items() if call is None or not out(call)]
            if free:
                self.store.release_places(key, self.me, free, now)

    def clear(self) -> None:
        self.places.clear()
        self.idle_since.clear()

    # ----- rate places

    def settle(self, key: str, number: int, free_at: dt.datetime) -> None:
        """A rate place whose call left (or never will) is to be free at `free_at`."""
        self.settles.setdefault(key, []).append((number, free_at))

    def write_settles(self, now: dt.datetime) -> dict[str, dt.datetime]:
        """A poll after the last ones, write the settles gathered since; answers, per key, when
        its settled places are free."""
        if not self.settles or now - self._settled < self.settings.poll:
            return {}
        self._settled = now
        free_at: dict[str, dt.datetime] = {}
        for key, settles in self.settles.items():  # all to the latest one's window
            latest = free_at[key] = max(
                u for _, u in settles
            )  # (one write; a window is never shortened by it)
            self.submit(settle_job(self.store, self.me, key, [(n, latest) for n, _ in settles]), None, key)
        self.settles.clear()
        return free_at

    def next_settle(self) -> dt.datetime | None:
        """When the settles gathered are written."""
        return self._settled + self.settings.poll if self.settles else None
