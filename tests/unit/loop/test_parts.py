"""The loop's parts on their own: the upcoming index, the refill watermark, the held objects."""

from __future__ import annotations

import datetime as dt

from conftest import FakeClock
from lambdaop.engine import machine
from lambdaop.engine.record import Change, StoredObject
from lambdaop.loop.events import Write, Written
from lambdaop.loop.held import Held, Holdings, Stats
from lambdaop.loop.upcoming import Refill, Upcoming
from lambdaop.loop.writes import Next, Writes
from lambdaop.spec import Kind, TaskSpec
from lambdaop.store.contract import Due, Op, WriteOutcome
from lambdaop.store.memory import MemoryStore
from lambdaop.store.writer import Writer

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_upcoming_takes_what_is_due_in_order_and_forgets_beyond_the_horizon() -> None:
    up = Upcoming(dt.timedelta(seconds=30))
    up.add(Due("b", at(5), 0), T0)
    up.add(Due("a", at(2), 0), T0)
    up.add(Due("far", at(60), 0), T0)
    up.add(Due("b", at(1), 1), T0)  # moved earlier by a newer fence
    assert "far" not in up and up.first_due() == at(1)
    assert [d.id for d in up.take_until(at(2))] == ["b", "a"]
    assert len(up) == 0 and up.first_due() is None


def test_a_read_from_the_start_asked_while_a_refill_is_out_still_comes() -> None:
    refill = Refill(dt.timedelta(seconds=30), 100)
    first = refill.next_read(T0)
    assert first is not None and first.after is None
    assert refill.next_read(T0) is None, "one read at a time"
    refill.read_all_again()
    refill.done(at(30), more=False)
    assert refill.wanted()
    again = refill.next_read(at(1))
    assert again is not None and again.after is None, "read from the start, not from the watermark"
    refill.done(at(31), more=False)
    following = refill.next_read(at(2))
    assert following is not None and following.after == at(31)


def test_a_held_object_fires_once_at_its_time_and_not_while_its_write_is_out() -> None:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    progress = machine.start(spec, at(3))
    record = StoredObject(
        "0" * 24, Kind.TASK, "alice", "a", spec.model_dump(mode="json"), progress, due=at(3)
    )
    held_objects = Holdings()
    held, caught = held_objects.hold(record, at(33), at(1), None)
    assert held is not None and caught is None
    held_objects.arm(held)
    assert list(held_objects.due(at(2), 10)) == []
    held.writes = 1
    assert list(held_objects.due(at(3), 10)) == [], "a write under way: armed again once durable"
    held.writes = 0
    held_objects.arm(held)
    (due,) = held_objects.due(at(3), 10)
    held_objects.fired(due, 100.0)
    assert held_objects.in_flight == 1 and list(held_objects.due(at(4), 10)) == []


def _held_in(store: MemoryStore, clock: FakeClock) -> tuple[Held, Writer, list[Written], Writes]:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    progress = machine.start(spec, at(3))
    record = StoredObject(
        "0" * 24, Kind.TASK, "alice", "a", spec.model_dump(mode="json"), progress, due=at(3)
    )
    insert = Op(record.id, "alice", "Task", None, record.state, doc=record.for_storage(), claim_until=at(33))
    assert store.commit([insert], "p1", "p1", at(1)) == [WriteOutcome.OK]
    writer = Writer(store, "p1", "p1", clock, threaded=False)
    answers: list[Written] = []
    return Held(record, progress, at(33)), writer, answers, Writes(writer, dt.timedelta(seconds=2), dt.timedelta(seconds=30), answers.append, clock)  # fmt: skip


def test_the_loop_hands_the_writer_one_write_of_an_object_at_a_time() -> None:
    store, clock = MemoryStore(), FakeClock(at(1))
    held, writer, answers, writes = _held_in(store, clock)
    for n in (1, 2):
        writes.submit(
            held, Write.SET, held.progress, Change(updated=at(n), labels={"n": str(n)}), at(1), keep=True
        )
    assert held.writes == 2 and writer.backlog == 1, "the second waits for the first"
    writer.run_pending()
    (first,) = answers
    assert writes.landed(held, first, Stats()) is not None and writer.backlog == 1
    writer.run_pending()
    assert writes.landed(held, answers[1], Stats()) is not None
    assert store.get(held.id)["labels"] == {"n": "2"} and store.get(held.id)["fence"] == 2  # type: ignore[index]


def test_writes_waiting_behind_one_that_fails_are_never_written() -> None:
    store, clock = MemoryStore(), FakeClock(at(1))
    held, writer, answers, writes = _held_in(store, clock)
    store.release("p1", [held.id])  # the lease is gone: the first write is stale
    for n in (1, 2):
        writes.submit(
            held, Write.SET, held.progress, Change(updated=at(n), labels={"n": str(n)}), at(1), keep=True
        )
    writer.run_pending()
    assert writes.landed(held, answers[0], Stats()) is Next.FAILED
    assert [a.outcome for a in answers] == [WriteOutcome.STALE, WriteOutcome.STALE] and writer.backlog == 0
    assert store.get(held.id)["labels"] == {}  # type: ignore[index]


class _Commits:
    """A store that remembers which objects each commit wrote."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.commits = store, list[list[str]]()

    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[WriteOutcome]:
        self.commits.append([op.id for op in ops])
        return self.store.commit(ops, owner, slot, now)


def _insert(i: int) -> Op:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    record = StoredObject(f"{i:024x}", Kind.TASK, "alice", f"t{i}", spec.model_dump(mode="json"), machine.start(spec, at(60)), due=at(60))  # fmt: skip
    return Op(record.id, "alice", "Task", None, record.state, doc=record.for_storage())


def test_writes_somebody_waits_for_are_committed_before_the_loops_queued_with_them() -> None:
    store = _Commits(MemoryStore())
    writer = Writer(store, "p1", "p1", FakeClock(at(1)), threaded=False)  # type: ignore[arg-type]
    done: list[WriteOutcome] = []
    loops = [writer.submit(_insert(i), done.append) for i in (1, 2)]  # the loop's: nobody waits
    waited = [writer.submit(_insert(i), done.append, urgent=True) for i in (3, 4)]
    writer.run_pending()
    assert store.commits == [[waited[0].op.id, waited[1].op.id], [loops[0].op.id, loops[1].op.id]]
    assert done == [WriteOutcome.OK] * 4


def test_a_waited_write_of_an_object_with_a_loop_write_queued_keeps_its_place() -> None:
    store = _Commits(MemoryStore())
    writer = Writer(store, "p1", "p1", FakeClock(at(1)), threaded=False)  # type: ignore[arg-type]
    ops = [_insert(1), _insert(2)]
    writer.submit(ops[0], lambda _: None)
    writer.submit(ops[1], lambda _: None, urgent=True)
    writer.submit(Op(ops[0].id, "alice", "Task", "scheduled", "scheduled", fence=0, change=Change(updated=at(2), labels={"n": "1"})), lambda _: None, urgent=True)  # fmt: skip
    writer.run_pending()
    assert store.commits == [[ops[1].id], [ops[0].id, ops[0].id]]
