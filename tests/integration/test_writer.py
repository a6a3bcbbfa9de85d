"""What a creation's answer says when the store stalls: a write a commit took may still be stored
(its answer says so, and names its id), a write no commit took is withdrawn and never written."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from helpers import wait_until
from lambdaop.core.clock import SystemClock
from lambdaop.core.errors import StoreUnavailable
from lambdaop.engine import machine
from lambdaop.engine.record import StoredObject
from lambdaop.spec import Kind, TaskSpec
from lambdaop.store.contract import Op, WriteOutcome
from lambdaop.store.memory import MemoryStore
from lambdaop.store.writer import Writer

DUE = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class Stalled:
    """A store whose commits wait until it is let go (what a stopped store server does)."""

    def __init__(self) -> None:
        self.store, self.go, self.started = MemoryStore(), threading.Event(), threading.Event()

    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[WriteOutcome]:
        self.started.set()
        assert self.go.wait(30)
        return self.store.commit(ops, owner, slot, now)


def creation(i: int) -> Op:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    record = StoredObject(f"{i:024x}", Kind.TASK, "alice", f"t{i}", spec.model_dump(mode="json"), machine.start(spec, DUE), due=DUE)  # fmt: skip
    return Op(record.id, "alice", "Task", None, record.state, doc=record.for_storage())


def test_a_write_in_a_stalled_commit_may_be_stored_and_one_not_taken_is_withdrawn() -> None:
    stalled = Stalled()
    writer = Writer(stalled, "p1", "p1", SystemClock(), linger=0.0)  # type: ignore[arg-type]
    try:
        first, second = creation(1), creation(2)
        with pytest.raises(StoreUnavailable) as taken:
            writer.write(first, timeout=0.3)
        assert stalled.started.is_set()
        assert "may still be stored" in str(taken.value) and first.id in str(taken.value), taken.value
        assert "nothing was written" not in str(taken.value)
        with pytest.raises(StoreUnavailable) as queued:  # the writer is inside the stalled commit
            writer.write(second, timeout=0.3)
        assert "nothing was written" in str(queued.value), queued.value
        stalled.go.set()
        wait_until(lambda: stalled.store.get(first.id) is not None, timeout=10)
        wait_until(lambda: writer.backlog == 0, timeout=10)
        assert stalled.store.get(second.id) is None, "a write no commit took is never written"
    finally:
        stalled.go.set()
        writer.stop()
