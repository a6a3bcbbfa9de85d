"""Fencing on a shared store: a process that could not renew its leases does not start a call whose
lease would end within a third of `--lease` (another process may take it over and make it). The loop
is driven pass by pass with the test clock on the in-memory store; several loops on one store are
several processes sharing it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from conftest import FakeClock
from helpers import HeldCalls
from lambdaop.engine import machine
from lambdaop.engine.record import StoredObject
from lambdaop.loop.reconciler import Reconciler
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.storethread import StoreThread
from lambdaop.spec import Kind, TaskSpec
from lambdaop.store.contract import Op, WriteOutcome
from lambdaop.store.memory import MemoryStore
from lambdaop.store.writer import Writer

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=6)  # a third: 2 s


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class Renewals:
    """The shared store as one process reaches it: while `cut`, its renewals (and the heartbeat they
    carry) do not get through; everything else does."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.cut = False

    def heartbeat(self, slot: str, until: dt.datetime, info: Any) -> None:
        if self.cut:
            raise ConnectionError("the store does not answer")
        self.store.heartbeat(slot, until, info)

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> set[str]:
        if self.cut:
            raise ConnectionError("the store does not answer")
        return self.store.renew(owner, ids, until)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Process:
    def __init__(self, shared: MemoryStore, clock: FakeClock, owner: str, **settings: Any) -> None:
        self.clock, self.owner = clock, owner
        self.store = Renewals(shared)
        self.calls = HeldCalls(clock)
        writer = Writer(self.store, owner, owner, clock, threaded=False)
        self.loop = Reconciler(
            self.store, writer, clock, owner, {},
            LoopSettings(lease=LEASE, **settings),
            invoker=self.calls, io=StoreThread(threaded=False),
        )  # fmt: skip
        self.calls.deliver = self.loop.deliver

    def run(self, seconds: float) -> None:
        """Move the shared clock (wall and monotonic) to `seconds` after T0 and make one pass."""
        self.clock.advance((at(seconds) - self.clock.now()).total_seconds())
        self.loop.reconcile_once(self.clock.now())


def tasks(store: MemoryStore, due: float, count: int) -> list[str]:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    ids = []
    for n in range(1, count + 1):
        record = StoredObject(f"{n:024x}", Kind.TASK, "alice", f"t{n}", spec.model_dump(mode="json"), machine.start(spec, at(due)), due=at(due))  # fmt: skip
        op = Op(record.id, "alice", "Task", None, record.state, doc=record.for_storage())
        assert store.commit([op], "p0", "p0", T0) == [WriteOutcome.OK]
        ids.append(record.id)
    return ids


def holding_one_behind_a_call(**settings: Any) -> tuple[Process, str, str]:
    """p1 holds two objects due at 10 under leases until 16, one call out at a time: the first
    leaves at 10, the second waits for it; from 9 on p1's renewals do not get through."""
    shared, clock = MemoryStore(), FakeClock(T0)
    tasks(shared, due=10, count=2)
    p1 = Process(shared, clock, "p1", max_in_flight=1, **settings)
    for second in (0, 8.5):
        p1.run(second)
    p1.store.cut = True
    p1.run(10)
    (out,) = p1.calls.jobs
    (waiting,) = (h for h in p1.loop.held.values() if h.id != out.object_id)
    assert waiting.until == at(16) and not waiting.fired
    for second in (11, 12, 13):  # renewals fail meanwhile (chores every 2 s)
        p1.run(second)
    assert waiting.until == at(16)
    return p1, out.object_id, waiting.id


def test_a_call_whose_lease_ends_within_a_third_of_a_lease_does_not_leave() -> None:
    p1, first, waiting = holding_one_behind_a_call()
    p1.run(14.5)
    p1.calls.answer_all()  # its turn comes at 14.5: its lease ends at 16, before 14.5 + 2
    for second in (14.6, 15, 15.5, 16, 17, 18, 20):
        p1.run(second)
    assert p1.store.get(first)["state"] == "completed"
    assert p1.calls.of(waiting) == [], (
        "its lease could lapse while it is out: another process would call again"
    )
    assert p1.loop.holds(waiting), "held still: it leaves once a renewal gets through"


def test_a_call_whose_lease_lasts_beyond_a_third_of_a_lease_leaves() -> None:
    p1, first, waiting = holding_one_behind_a_call()
    p1.calls.answer_all()
    p1.run(13.5)  # its turn comes at 13.5: its lease ends at 16, after 13.5 + 2
    assert [j.object_id for j in p1.calls.jobs] == [waiting]


def test_once_its_lease_is_renewed_again_the_held_back_call_leaves() -> None:
    p1, first, waiting = holding_one_behind_a_call()
    p1.calls.answer_all()
    for second in (14.5, 15, 15.5):
        p1.run(second)
    assert p1.calls.of(waiting) == []
    p1.store.cut = False  # the store answers again: the next renewal (every 2 s) gets through
    for second in (16, 16.5, 17, 17.5, 18):
        p1.run(second)
    assert len(p1.calls.of(waiting)) == 1
    assert p1.store.holders([waiting])[waiting].until > at(18) + LEASE / 3


def test_the_sole_owner_of_its_store_fires_whatever_its_lease_says() -> None:
    p1, first, waiting = holding_one_behind_a_call(sole_owner=True)
    p1.calls.answer_all()
    p1.run(15)
    p1.run(15.5)
    assert [j.object_id for j in p1.calls.jobs] == [waiting], "nobody else could take it over"


def test_a_held_back_call_is_made_once_by_the_process_that_takes_it_over() -> None:
    p1, first, waiting = holding_one_behind_a_call()
    p2 = Process(p1.store.store, p1.clock, "p2", max_in_flight=1)
    p1.calls.answer_all()
    second = 14.0
    while second < 30:  # p1's lease and heartbeat lapse (16, 14.5): p2 sweeps, claims and calls
        second += 0.5
        p1.run(second)
        p2.run(second)
        p2.calls.answer_all()
    (again,) = p2.calls.of(waiting)
    assert p1.calls.of(waiting) == [], "p1 never made it: no call twice"
    assert p2.store.get(waiting)["state"] == "completed"
    p1.store.cut = False  # p1 reaches the store again: its renewal finds the object gone, and drops it
    for second in (30.5, 31, 32, 33):
        p1.run(second)
    assert not p1.loop.holds(waiting) and p1.calls.of(waiting) == []
    assert len(p2.calls.of(waiting)) == 1
