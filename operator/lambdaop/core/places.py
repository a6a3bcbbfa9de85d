"""The places of limit keys as values: what the store keeps of a key and the loop decides on.

A limit key (a call's `concurrency` or `rate`) has places of two kinds; each place is taken by
one holder (a process) and free again from its `until` on. `Waiter` is a process saying how many
of its calls wait for a key's places. These are the words the store's `PlaceStore` and the
engine's `limits` share (neither knows the other). Values only: no I/O.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import NamedTuple


class LimitType(StrEnum):
    """The two types of place a limit key has (concurrency or rate)."""

    CONCURRENCY = "c"  # held while a call is out, released when it is back
    RATE = "r"  # taken when a call leaves, free again `per` later (never released)


class Place(NamedTuple):
    """One place of a limit key as stored: taken by `holder` and free from `until` on."""

    kind: LimitType
    number: int
    holder: str | None  # None once released
    until: dt.datetime


class Waiter(NamedTuple):
    """A process's calls waiting for places of a key: how many, the due time of the earliest, and
    until when the entry is meant (after that it is stale: its process stopped saying so)."""

    kind: LimitType
    holder: str
    first: dt.datetime
    calls: int
    until: dt.datetime


class KeyState(NamedTuple):
    """What the store has of one limit key: its places (by kind, then number) and who waits for them."""

    places: list[Place]
    waiters: list[Waiter]
