"""The in-memory store's places of limit keys: the same answers as the MongoDB store's `places`."""

from __future__ import annotations

import datetime as dt

from lambdaop.store.contract import MAX_PLACES, KeyState, LimitType, Place, Waiter
from lambdaop.store.memory.base import Tables, _bson

SEP = "\x1f"


class MemoryPlaces(Tables):
    def key_state(self, key: str) -> KeyState:
        places: list[Place] = []
        waiters: list[Waiter] = []
        found = sorted((k, d) for k, d in self._limits.items() if k[0] == key)
        for (_, kind, number, holder), doc in found[: 2 * MAX_PLACES + 1000]:
            if holder is None:
                places.append(Place(LimitType(kind), number, doc.get("holder"), doc["until"]))
            else:
                waiters.append(Waiter(LimitType(kind), holder, doc["first"], doc["calls"], doc["until"]))
        return KeyState(places, waiters)

    def take_places(
        self, key: str, kind: LimitType, holder: str, asks: list[tuple[int, dt.datetime]], now: dt.datetime
    ) -> list[int]:
        now = _bson(now)
        taken = []
        for number, until in asks:
            doc = self._limits.get((key, kind.value, number, None))
            if doc is None or doc["until"] <= now:
                self._limits[(key, kind.value, number, None)] = {"holder": holder, "until": _bson(until)}
                taken.append(number)
        return taken

    def release_places(self, key: str, holder: str, numbers: list[int], now: dt.datetime) -> int:
        released = 0
        for number in dict.fromkeys(numbers):
            place = (key, LimitType.CONCURRENCY.value, number, None)
            if self._limits.get(place, {}).get("holder") == holder:
                self._limits[place] = {"until": _bson(now)}
                released += 1
        return released

    def settle_places(self, key: str, holder: str, settles: list[tuple[int, dt.datetime]]) -> int:
        moved = 0
        for number, until in settles:
            place = (key, LimitType.RATE.value, number, None)
            doc = self._limits.get(place)
            if doc is not None and doc.get("holder") == holder and doc["until"] > _bson(until):
                self._limits[place] = {**doc, "until": _bson(until)}
                moved += 1
        return moved

    def renew_places(
        self, holder: str, places: list[tuple[str, int]], until: dt.datetime
    ) -> set[tuple[str, int]]:
        lost = set()
        for key, number in places:
            place = (key, LimitType.CONCURRENCY.value, number, None)
            if self._limits.get(place, {}).get("holder") == holder:
                self._limits[place] = {"holder": holder, "until": _bson(until)}
            else:
                lost.add((key, number))
        return lost

    def put_waiting(
        self,
        key: str,
        kind: LimitType,
        holder: str,
        first: dt.datetime | None,
        calls: int,
        until: dt.datetime,
    ) -> None:
        entry = (key, kind.value, -1, holder)
        if first is None:
            self._limits.pop(entry, None)
        else:
            self._limits[entry] = _bson({"first": first, "calls": calls, "until": until})
