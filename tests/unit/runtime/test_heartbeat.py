"""The process's heartbeat, driven by hand with the test clock (no thread, no sleeps)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lambdaop.runtime.heartbeat import Heartbeat
from lambdaop.store.memory import MemoryStore

LEASE = dt.timedelta(seconds=8)


class Failing(MemoryStore):
    down = False

    def heartbeat(self, slot: str, until: dt.datetime, info: Any) -> None:
        if self.down:
            raise ConnectionError("the store does not answer")
        super().heartbeat(slot, until, info)


def test_each_beat_keeps_the_process_alive_for_a_lease_from_then(clock: Any) -> None:
    store = Failing()
    beat = Heartbeat(store, "p1", LEASE, clock)
    assert beat.every == 2.0
    assert beat.tick()
    assert store.stopped(["p1"], clock.now() + LEASE - dt.timedelta(seconds=1)) == set()
    clock.advance(6)
    assert beat.tick()
    assert store.stopped(["p1"], clock.now() + dt.timedelta(seconds=7)) == set()
    assert store.stopped(["p1"], clock.now() + dt.timedelta(seconds=9)) == {"p1"}


def test_a_store_fault_is_survived_and_the_next_beat_lands(clock: Any, caplog: Any) -> None:
    store = Failing()
    beat = Heartbeat(store, "p1", LEASE, clock)
    store.down = True
    assert not beat.tick() and not beat.tick()
    assert sum("could not reach the store" in r.message for r in caplog.records) == 1  # said once
    store.down = False
    assert beat.tick()
    assert store.stopped(["p1"], clock.now()) == set()


def test_a_stuck_process_stops_beating_so_that_its_work_is_taken_over(clock: Any) -> None:
    store = Failing()
    beat = Heartbeat(store, "p1", LEASE, clock)
    assert beat.tick()
    beat.well = lambda: False  # its loop has stopped making progress
    clock.advance(5)
    assert not beat.tick()
    assert store.stopped(["p1"], clock.now() + dt.timedelta(seconds=4)) == {"p1"}
