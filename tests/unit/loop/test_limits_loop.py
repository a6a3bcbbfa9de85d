"""Limits per key in the loop, pass by pass: the reconciler with the test clock, a synchronous
invoker, store thread and writer, on the in-memory store (tests/unit/loop/test_reconciler.py's rig).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lambdaop.engine.record import StoredObject
from lambdaop.loop.events import Action
from lambdaop.store.memory import MemoryStore
from unit.loop.test_reconciler import Rig

LIMIT = {"concurrency": {"key": "target-a", "limit": 2}}


@pytest.fixture
def rig(clock: Any) -> Any:
    clock.start = clock.now()
    shared = MemoryStore()
    return lambda owner="p1", **settings: Rig(shared, clock, owner, **settings)


def out(r: Any) -> list[str]:
    return sorted(j.object_id for j in r.calls.jobs)


def test_calls_beyond_the_limit_wait_held_and_leave_in_due_order_as_places_free(rig: Any) -> None:
    r = rig()
    ids = [r.task(f"t{i}", at=r.at(10 + i / 100).isoformat(), **LIMIT) for i in range(5)]
    r.run(0)
    r.run(9.5)
    for t in (10.0, 10.01, 10.02, 10.03, 10.04, 10.05):
        r.run(t)
    assert out(r) == sorted(ids[:2]), "two out, the first due"
    assert r.loop.waiting_for(ids[2]) == {"kind": "concurrency", "key": "target-a", "limit": 2, "since": r.at(10.02)}  # fmt: skip
    assert r.state(ids[2]) == "scheduled"
    asked = Counter(r.store.asked)
    (first,) = [j for j in r.calls.jobs if j.object_id == ids[0]]
    r.calls.answer(first)
    r.run(10.06)
    assert out(r) == sorted([ids[1], ids[2]]), "the next due took the freed place"
    assert r.loop.limiter.counts.handed == 1
    assert r.store.asked["claim"] == asked["claim"]
    while r.calls.jobs:
        r.calls.answer_all()
        r.run(10.07)
    assert [r.state(i) for i in ids] == ["completed"] * 5
    r.run(10.5)
    assert r.loop.limiter.held_places() == 0, "places nobody wants are released"


def test_another_process_sharing_the_store_tells_what_a_waiting_call_waits_for(rig: Any) -> None:
    r, other = rig("p1"), rig("p2")
    ids = [r.task(f"t{i}", at=r.at(10).isoformat(), **LIMIT) for i in range(3)]
    r.run(0)
    r.run(9.5)
    r.run(10)
    r.run(10.01)
    (waiting,) = [i for i in ids if i not in out(r)]
    record = StoredObject.from_storage(r.store.get(waiting))
    assert r.service.waiting_for(record) == {"kind": "concurrency", "key": "target-a", "limit": 2, "since": r.at(10)}  # fmt: skip
    assert other.service.waiting_for(record) is None, "a list does not look in the store"
    told = other.service.waiting_for(record, look=True)
    assert told == {"kind": "concurrency", "key": "target-a", "limit": 2, "since": r.at(10), "calls": 1}


def test_a_waiting_call_cancelled_gives_its_turn_and_never_leaves(rig: Any) -> None:
    r = rig()
    ids = [r.task(f"t{i}", at=r.at(10 + i / 100).isoformat(), **LIMIT) for i in range(3)]
    r.run(0)
    r.run(9.5)
    for t in (10.0, 10.01, 10.02, 10.03):
        r.run(t)
    answer = r.loop.request(Action.CANCEL, ids[2])
    r.run(10.04)
    assert answer.result(0).record.state == "cancelled"
    r.calls.answer_all()
    for t in (10.05, 10.06, 11.2, 11.3):
        r.run(t)
    assert out(r) == [] and r.state(ids[2]) == "cancelled"
    assert r.loop.waiting_for(ids[2]) is None


def test_a_key_that_cannot_be_made_leaves_as_a_refused_call_holding_no_place(rig: Any) -> None:
    """The invoker answers a refused call as a `config` failure naming the field, as it does a call
    whose own expression cannot be filled in."""
    r = rig()
    oid = r.task(
        "nolabel", at=r.at(10).isoformat(), concurrency={"key": "${{ object.labels.team }}", "limit": 1}
    )
    r.run(0)
    r.run(9.5)
    r.run(10)
    (job,) = r.calls.jobs
    assert job.object_id == oid and job.refused is not None
    assert job.refused.startswith("spec.concurrency.key: the key") and "came out empty" in job.refused
    assert r.loop.limiter.held_places() == 0 and not r.loop.limiter.seats


@pytest.mark.parametrize("limits", [{}, LIMIT])
def test_the_store_work_of_a_call_with_and_without_a_limit(rig: Any, limits: dict[str, Any]) -> None:
    """With no limit the store sees nothing of the limiter; a limited call with a free place costs a
    read of its key and a take (and, a poll later, its release)."""
    r = rig()
    oid = r.task("one", at=r.at(10).isoformat(), **limits)
    r.run(0)
    r.run(9.5)
    before = Counter(r.store.asked)
    r.run(10)
    r.run(10.01)
    r.calls.answer_all()
    r.run(10.02)
    r.run(10.5)
    assert r.state(oid) == "completed"
    asked = Counter(r.store.asked) - before
    places = {k: v for k, v in asked.items() if k in ("key_state", "take_places", "release_places", "put_waiting")}  # fmt: skip
    assert places == ({} if not limits else {"key_state": 1, "take_places": 1, "release_places": 1})
