"""Liveness (`/healthz`'s check) against a real loop on the in-memory store, driven pass by pass with
the test clock: no server, no threads, no sleeps. A loop that makes no pass stands for a stuck one."""

from __future__ import annotations

import datetime as dt
import itertools

from conftest import FakeClock
from helpers import HeldCalls
from lambdaop.engine import machine
from lambdaop.engine.record import StoredObject
from lambdaop.loop.reconciler import Reconciler
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.storethread import StoreThread
from lambdaop.runtime.probes import Probes
from lambdaop.spec import Kind, TaskSpec
from lambdaop.store.contract import Op, WriteOutcome
from lambdaop.store.memory import MemoryStore
from lambdaop.store.writer import Writer

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LIMIT = dt.timedelta(seconds=60)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class Process:
    """One process's loop and its probes (started at T0); the loop runs when the test makes a pass."""

    def __init__(self, **settings: object) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore()
        self.calls = HeldCalls(self.clock)
        self._ids = itertools.count(1)
        writer = Writer(self.store, "p1", "p1", self.clock, threaded=False)
        self.loop = Reconciler(
            self.store, writer, self.clock, "p1", {},
            LoopSettings(sole_owner=True, **settings),  # type: ignore[arg-type]
            invoker=self.calls, io=StoreThread(threaded=False),
        )  # fmt: skip
        self.calls.deliver = self.loop.deliver
        self.probes = Probes(self.clock, LIMIT, loop=self.loop, started=self.clock.monotonic())

    def task(self, due: float) -> str:
        spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
        n = next(self._ids)
        record = StoredObject(f"{n:024x}", Kind.TASK, "alice", f"t{n}", spec.model_dump(mode="json"), machine.start(spec, at(due)), due=at(due))  # fmt: skip
        op = Op(record.id, "alice", "Task", None, record.state, doc=record.for_storage())
        assert self.store.commit([op], "p1", "p1", self.clock.now()) == [WriteOutcome.OK]
        return record.id

    def wait(self, seconds: float) -> None:
        """Move the clock (wall and monotonic) to `seconds` after the start, with no pass."""
        self.clock.advance((at(seconds) - self.clock.now()).total_seconds())

    def run(self, seconds: float) -> None:
        """Move the clock to `seconds` after the start and make one pass."""
        self.wait(seconds)
        self.loop.reconcile_once(self.clock.now())


def test_a_loop_stuck_with_work_overdue_beyond_the_limit_fails_liveness() -> None:
    p = Process()
    p.task(due=10)
    for second in (0, 9):  # claimed ahead and held; then the loop makes no more passes
        p.run(second)
    assert p.loop.earliest_due == at(10) and not p.calls.jobs
    assert p.probes.liveness() == []
    p.wait(69)  # 59 s overdue: within the limit
    assert p.probes.liveness() == []
    p.wait(71)
    (problem,) = p.probes.liveness()
    assert "no progress for 71s" in problem and "61s overdue" in problem, problem


def test_a_loop_far_behind_that_still_makes_progress_stays_alive_until_it_stops() -> None:
    p = Process(max_in_flight=1)  # one call out at a time: the rest wait, overdue
    for _ in range(60):
        p.task(due=10)
    for start in (0, 9, 10):
        p.run(start)
    second = 10.0
    while second < 100:  # a call comes back every 2 s: overdue by 90 s, but moving
        second += 2
        p.calls.answer_all()
        p.run(second)
        assert p.probes.liveness() == [], f"at {second}s"
    last = second + 1
    p.run(last)  # the last result lands (the writer lingers a moment)
    assert p.loop.stats.progress_at == p.clock.monotonic()
    assert p.loop.earliest_due == at(10) and len(p.calls.jobs) == 1
    # the call out now never comes back: the loop keeps passing, and makes no progress
    while second < last + 59:
        second += 1
        p.run(second)
        assert p.probes.liveness() == [], f"at {second}s"
    p.run(last + 61)
    (problem,) = p.probes.liveness()
    assert "no progress for 61s" in problem, problem


def test_nothing_due_is_alive_however_long_the_loop_has_been_quiet() -> None:
    p = Process()
    done = p.task(due=10)
    p.task(due=7200)  # far beyond the horizon
    for second in (0, 9, 10):
        p.run(second)
    p.calls.answer_all()
    p.run(10.5)
    assert p.store.get(done)["state"] == "completed"  # type: ignore[index]
    p.run(3600)
    assert p.loop.earliest_due is None
    assert p.probes.liveness() == []
    p.wait(7000)  # and without a pass at all
    assert p.probes.liveness() == []


def test_work_overdue_since_before_the_process_started_counts_quiet_from_its_start() -> None:
    p = Process()
    p.task(due=10)
    for second in (0, 9):
        p.run(second)
    p.wait(300)
    p.probes.started = p.clock.monotonic()  # (as if the process had started only now)
    assert p.probes.liveness() == [], "just started: not judged before a whole limit"
    p.wait(361)
    assert p.probes.liveness() != []


def test_a_store_that_cannot_be_started_again_fails_liveness_whatever_the_loop_does() -> None:
    p = Process()
    p.probes.fatal = "the embedded store stopped 4 times within 60s and is not started again"
    assert p.probes.liveness() == [p.probes.fatal]
