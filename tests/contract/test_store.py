"""The store contract (lambdaop.store.contract), one suite for every implementation.

Each test runs on `MemoryStore` and on `MongoStore` over the embedded server
(the `any_store` fixture), and is written from the contract's text and the
MongoDB store's behaviour, so both answer alike. Objects are made as the
engine makes them (`StoredObject.for_storage`, `Change`). Time is fixed: no
sleeps, no wall clock; datetimes are whole milliseconds (MongoDB keeps no more).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, replace
from typing import Any

import pytest

from lambdaop.core import labels
from lambdaop.core.errors import Conflict
from lambdaop.engine.progress import Phase, Progress
from lambdaop.engine.record import CallRecord, Change, RunSummary, Source, StoredObject
from lambdaop.spec import Kind
from lambdaop.store.contract import Due, Lease, Mutation, Op, Page, Store, WriteOutcome

OK, STALE, HELD, EXISTS, ERROR = (
    WriteOutcome.OK,
    WriteOutcome.STALE,
    WriteOutcome.HELD,
    WriteOutcome.EXISTS,
    WriteOutcome.ERROR,
)
T0 = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
FAR = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # web sessions' expiry: never reached by a store's own clock
TASK, TASKSET = Kind.TASK, Kind.TASKSET
SPEC = {"invoke": {"url": "http://127.0.0.1:9/hook"}}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def oid(i: int) -> str:
    return f"{i:024x}"


def record(
    i: int,
    name: str | None = None,
    owner: str = "alice",
    kind: Kind = TASK,
    due: dt.datetime | None = None,
    phase: Phase = Phase.SCHEDULED,
    **fields: Any,
) -> StoredObject:
    """An object as the engine makes it; a scheduled one is due at T0+60s unless told."""
    if due is None and phase is Phase.SCHEDULED:
        due = at(60)
    progress = Progress(phase=phase, step="task", due=due)
    return StoredObject(
        id=oid(i), kind=kind, owner=owner, name=name or f"n{i}", spec=SPEC, progress=progress, due=due,
        spec_hash="h", created=T0, updated=T0, **{"labels": {"team": "a"}, **fields},
    )  # fmt: skip


def insert(rec: StoredObject, **kw: Any) -> Op:
    return Op(rec.id, rec.owner, rec.kind.value, None, rec.state, doc=rec.for_storage(), **kw)


def change(rec: StoredObject, ch: Mutation | None, fence: int | None = None, **kw: Any) -> Op:
    new_state = ch.new_state(rec) if isinstance(ch, Change) else rec.state
    expected = rec.fence if fence is None else fence
    return Op(rec.id, rec.owner, rec.kind.value, rec.state, new_state, fence=expected, change=ch, **kw)


def create(store: Store, *recs: StoredObject, slot: str = "p1") -> None:
    assert store.commit([insert(r) for r in recs], "p1", slot, T0) == [OK] * len(recs)


def running(seconds: float = 1) -> Change:
    """The call starts: running, in flight, no longer due."""
    progress = Progress(phase=Phase.RUNNING, step="task", in_flight=True, calls=1, started=at(seconds))
    return Change(updated=at(seconds), progress=progress)


def call(n: int, ok: bool = False) -> CallRecord:
    return CallRecord(step="task", attempt=n, at=at(n), ok=ok, status=200 if ok else 500, duration_ms=1.5)


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def ids(docs: list[dict[str, Any]] | Page) -> list[str]:
    return [d["_id"] for d in (docs.docs if isinstance(docs, Page) else docs)]


@dataclass
class Push:
    """A mutation that only appends to a list (the engine appends runs so)."""

    name: str
    items: list[Any]
    keep: int

    def sets(self) -> dict[str, Any]:
        return {}

    def unsets(self) -> tuple[str, ...]:
        return ()

    def pushes(self) -> dict[str, tuple[list[Any], int]]:
        return {self.name: (self.items, self.keep)}


# ----- objects, names, inserts


def test_an_insert_is_read_back_by_id_name_and_fetch(any_store: Store) -> None:
    rec = record(1, source=Source(file="a.yaml", folder="/specs"), manager="folder:/specs")
    create(any_store, rec)
    doc = any_store.get(rec.id)
    assert doc == rec.for_storage()
    assert StoredObject.from_storage(doc) == rec
    assert any_store.find_by_name("alice", "Task", rec.name) == doc
    assert any_store.fetch([rec.id]) == [doc]
    doc["state"] = "failed"  # what a read answers is the caller's own copy
    doc["progress"]["step"] = "other"
    assert any_store.get(rec.id) == rec.for_storage()


def test_get_answers_none_for_an_id_lambdaop_never_makes(any_store: Store) -> None:
    foreign = ["not-an-object-id", "ABCDEF" + "0" * 18]  # stored, but not under ids lambdaop makes
    create(any_store, replace(record(1), id=foreign[0]), replace(record(3), id=foreign[1]), record(2))
    assert [any_store.get(i) for i in foreign] == [None, None]
    assert sorted(ids(any_store.fetch(foreign))) == sorted(foreign)
    assert any_store.get(oid(2)) is not None
    for bad in ("", oid(2)[:-1], oid(2) + "0", "g" * 24, 42):
        assert any_store.get(bad) is None  # type: ignore[arg-type]
    assert any_store.get(oid(99)) is None


def test_fetch_leaves_out_missing_objects_and_a_legacy_history_array(any_store: Store) -> None:
    rec = record(1)
    doc = {**rec.for_storage(), "attempts": [{"step": "task", "attempt": 1, "at": T0}]}
    assert any_store.commit([Op(rec.id, "alice", "Task", None, "scheduled", doc=doc)], "p1", "p1", T0) == [OK]
    create(any_store, record(2))
    assert any_store.get(rec.id) == doc  # a read by id keeps it
    fetched = {d["_id"]: d for d in any_store.fetch([oid(9), rec.id, oid(2), oid(8)])}
    assert set(fetched) == {rec.id, oid(2)}
    assert "attempts" not in fetched[rec.id]
    assert fetched[rec.id] == rec.for_storage()
    assert any_store.fetch([]) == []


def test_a_taken_name_answers_exists_and_nothing_of_that_op_is_written(any_store: Store) -> None:
    first = record(1, name="hello")
    create(any_store, first)
    before = any_store.counts("alice", "Task")
    taken = record(2, name="hello", due=at(5))
    outcome = any_store.commit(
        [insert(taken, claim_until=at(30), attempts=[call(1).for_storage()])], "p1", "p1", T0
    )
    assert outcome == [EXISTS]
    assert any_store.get(taken.id) is None
    assert any_store.holders([taken.id]) == {}
    assert any_store.history(taken.id) == []
    assert any_store.due_between(None, at(10), 10) == []
    assert any_store.counts("alice", "Task") == before
    assert any_store.find_by_name("alice", "Task", "hello")["_id"] == first.id  # type: ignore[index]
    assert ids(any_store.list_objects("Task", None, None, None, 10)) == [first.id]
    # the same name of another owner or another kind is another name
    create(any_store, record(3, name="hello", owner="bob"), record(4, name="hello", kind=TASKSET))
    assert any_store.find_by_name("bob", "Task", "hello")["_id"] == oid(3)  # type: ignore[index]
    assert any_store.find_by_name("alice", "TaskSet", "hello")["_id"] == oid(4)  # type: ignore[index]


def test_a_name_taken_twice_in_one_batch_is_written_once(any_store: Store) -> None:
    a, b = record(1, name="twin"), record(2, name="twin")
    assert any_store.commit([insert(a), insert(record(3)), insert(b)], "p1", "p1", T0) == [OK, OK, EXISTS]
    assert any_store.get(a.id) is not None and any_store.get(oid(3)) is not None
    assert any_store.get(b.id) is None
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 2}


def test_find_by_names_answers_the_owners_objects_of_a_kind(any_store: Store) -> None:
    create(
        any_store, record(1, "a"), record(2, "b"), record(3, "a", owner="bob"), record(4, "c", kind=TASKSET)
    )
    found = any_store.find_by_names("alice", "Task", ["a", "b", "c", "missing"])
    assert {name: doc["_id"] for name, doc in found.items()} == {"a": oid(1), "b": oid(2)}
    assert found["a"] == record(1, "a").for_storage()
    assert any_store.find_by_names("bob", "Task", ["a", "b"]).keys() == {"a"}
    assert any_store.find_by_names("alice", "Task", []) == {}
    assert any_store.find_by_name("alice", "Task", "missing") is None
    assert any_store.find_by_name("carol", "Task", "a") is None


def test_objects_from_folder_answers_the_owners_objects_applied_from_it(any_store: Store) -> None:
    specs, other = Source(file="x.yaml", folder="/specs"), Source(file="y.yaml", folder="/other")
    create(
        any_store,
        record(1, source=specs, manager="folder:/specs", annotations={"k": "v"}),
        record(2, source=specs, owner="bob", pruned=True),
        record(3, source=other),
        record(4),
        record(5, source=specs, owner="carol"),
        record(6, source=specs, kind=TASKSET, phase=Phase.COMPLETED),
    )
    found = {d["_id"]: d for d in any_store.objects_from_folder("/specs", ["bob", "alice", "alice"])}
    assert set(found) == {oid(1), oid(2), oid(6)}
    assert found[oid(1)] == {
        "_id": oid(1), "owner": "alice", "kind": "Task", "name": "n1", "state": "scheduled",
        "source": {"file": "x.yaml", "folder": "/specs"}, "annotations": {"k": "v"}, "manager": "folder:/specs",
    }  # fmt: skip
    assert found[oid(2)]["pruned"] is True
    assert found[oid(6)]["state"] == "completed" and found[oid(6)]["kind"] == "TaskSet"
    assert any_store.objects_from_folder("/specs", []) == []


# ----- rule 1: fencing


def test_a_change_with_the_expected_fence_is_written_and_moves_the_fence(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    ch = running()
    assert any_store.commit([change(rec, ch)], "p1", "p1", at(1)) == [OK]
    doc = any_store.get(rec.id)
    assert doc is not None
    assert doc["fence"] == 1 and doc["state"] == "running" and doc["updated"] == at(1)
    assert doc["progress"] == ch.progress.for_storage()  # type: ignore[union-attr]
    assert "due" not in doc  # the progress says none: `due` is removed
    written = ch.applied_to(StoredObject.from_storage(rec.for_storage()))
    assert StoredObject.from_storage(doc) == written
    done = Change(updated=at(2), progress=replace(written.progress, phase=Phase.COMPLETED, in_flight=False))
    assert any_store.commit([change(written, done)], "p1", "p1", at(2)) == [OK]
    assert any_store.get(rec.id)["fence"] == 2  # type: ignore[index]


def test_a_change_expecting_another_fence_is_stale_and_writes_nothing(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    before = any_store.counts("alice", "Task")
    op = change(rec, running(), fence=1, attempts=[call(1).for_storage()])
    assert any_store.commit([op], "p1", "p1", at(1)) == [STALE]
    assert any_store.get(rec.id) == rec.for_storage()
    assert any_store.history(rec.id) == []
    assert any_store.counts("alice", "Task") == before
    assert any_store.commit([change(record(9), running())], "p1", "p1", at(1)) == [STALE]  # no such object
    assert any_store.get(oid(9)) is None


def test_a_change_without_a_mutation_moves_only_the_fence(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    assert any_store.commit([change(rec, None)], "p1", "p1", at(1)) == [OK]
    assert any_store.get(rec.id) == {**rec.for_storage(), "fence": 1}
    assert any_store.commit([change(rec, None)], "p1", "p1", at(1)) == [STALE]  # the fence moved on


def test_due_follows_the_progress_unless_kept(any_store: Store) -> None:
    rec = record(1, due=at(10))
    create(any_store, rec)
    starting = replace(running(), keep_due=True)  # a call that starts keeps its due time
    assert any_store.commit([change(rec, starting)], "p1", "p1", at(1)) == [OK]
    doc = any_store.get(rec.id)
    assert doc is not None and doc["due"] == at(10) and doc["state"] == "running"
    rec = StoredObject.from_storage(doc)
    assert any_store.commit([change(rec, running(2))], "p1", "p1", at(2)) == [OK]
    assert "due" not in any_store.get(rec.id)  # type: ignore[operator]
    rec = StoredObject.from_storage(any_store.get(rec.id))  # type: ignore[arg-type]
    retry = Change(
        updated=at(3), progress=Progress(phase=Phase.SCHEDULED, step="task", attempt=2, due=at(90))
    )
    assert any_store.commit([change(rec, retry)], "p1", "p1", at(3)) == [OK]
    assert any_store.get(rec.id)["due"] == at(90)  # type: ignore[index]


def test_pushes_append_and_keep_only_the_newest(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    for fence, (items, keep) in enumerate([([1, 2, 3], 2), ([4], 2), ([5, 6, 7], 5), ([], 5), ([8], 1)]):
        assert any_store.commit([change(rec, Push("marks", items, keep), fence=fence)], "p1", "p1", T0) == [
            OK
        ]
    doc = any_store.get(rec.id)
    assert doc is not None and doc["marks"] == [8] and doc["fence"] == 5
    history = [
        ([1, 2, 3], 2, [2, 3]),
        ([4], 2, [3, 4]),
        ([5, 6, 7], 5, [3, 4, 5, 6, 7]),
        ([], 5, [3, 4, 5, 6, 7]),
    ]
    other = record(2)
    create(any_store, other)
    for fence, (items, keep, expected) in enumerate(history):
        assert any_store.commit([change(other, Push("marks", items, keep), fence=fence)], "p1", "p1", T0) == [
            OK
        ]
        assert any_store.get(other.id)["marks"] == expected  # type: ignore[index]


def test_a_run_that_ends_is_appended_to_the_runs(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    for n in (1, 2):
        run = RunSummary(run=n, scheduled=at(n), started=at(n), finished=at(n + 0.5), result="completed")
        progress = Progress(phase=Phase.SCHEDULED, step="task", run=n + 1, due=at(60 * n))
        assert any_store.commit([change(rec, Change(updated=at(n), progress=progress, run=run), fence=n - 1)], "p1", "p1", at(n)) == [OK]  # fmt: skip
    doc = any_store.get(rec.id)
    assert doc is not None
    assert [r["run"] for r in doc["runs"]] == [1, 2]
    assert doc["lastRun"] == doc["runs"][-1] and doc["lastRun"]["finished"] == at(2.5)
    assert StoredObject.from_storage(doc).runs[0].result == "completed"


def test_a_value_the_store_cannot_hold_is_an_error_and_writes_nothing(any_store: Store) -> None:
    bad = record(1, name="bad")
    doc = {**bad.for_storage(), "labels": {"team": {1, 2}}}  # a set: no document holds one
    ops = [insert(record(2)), Op(bad.id, "alice", "Task", None, "scheduled", doc=doc), insert(record(3))]
    assert any_store.commit(ops, "p1", "p1", T0) == [OK, ERROR, OK]
    assert any_store.get(bad.id) is None
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 2}
    assert any_store.commit([insert(bad)], "p1", "p1", T0) == [OK]  # its name was not taken


def test_an_insert_of_an_id_that_exists_is_an_error_and_takes_no_name(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    again = record(1, name="other", due=at(5))
    assert any_store.commit([insert(again, claim_until=at(30)), insert(record(2))], "p1", "p1", T0) == [
        ERROR,
        OK,
    ]
    assert any_store.get(rec.id) == rec.for_storage()
    assert any_store.find_by_name("alice", "Task", "other") is None
    assert any_store.holders([rec.id]) == {}
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 2}


def test_datetimes_are_kept_to_the_millisecond_in_utc(any_store: Store) -> None:
    """As BSON keeps them: what a read answers equals what was written, to the millisecond."""
    due = dt.datetime(2026, 11, 27, 13, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1, minutes=30)))
    create(any_store, record(1, due=due))
    kept = dt.datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=dt.UTC)
    assert any_store.get(oid(1))["due"] == kept  # type: ignore[index]
    assert any_store.get(oid(1))["due"].utcoffset() == dt.timedelta(0)  # type: ignore[index]
    assert any_store.due_between(None, kept, 10) == [Due(oid(1), kept, 0)]
    assert any_store.due_between(kept, at(1), 10) == []


# ----- rule 2: one lease per object, leased writes and guarded changes


def test_only_one_claim_of_an_object_wins(any_store: Store) -> None:
    a, b, c, d = oid(1), oid(2), oid(3), oid(4)
    assert any_store.claim("p1", at(30), [a, b]) == {a, b}
    assert any_store.claim("p2", at(30), [b, c]) == {c}
    assert any_store.claim("p1", at(60), [a]) == set()  # held, even by the claimer itself
    assert any_store.claim("p2", at(30), [d, d]) == {d}
    assert any_store.claim("p2", at(30), []) == set()
    assert any_store.holders([a, b, c, d, oid(5)]) == {
        a: Lease(a, "p1", at(30)), b: Lease(b, "p1", at(30)), c: Lease(c, "p2", at(30)), d: Lease(d, "p2", at(30)),
    }  # fmt: skip


def test_claims_from_several_threads_never_hold_an_object_twice(any_store: Store) -> None:
    objects = [oid(i) for i in range(1, 41)]
    won: dict[str, set[str]] = {}

    def claim(owner: str) -> None:
        won[owner] = any_store.claim(owner, at(30), objects[::-1] if owner in ("p2", "p4") else objects)

    threads = [threading.Thread(target=claim, args=(f"p{n}",)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == 4
    assert sum(len(w) for w in won.values()) == len(set().union(*won.values()))  # nobody shares one
    holders = any_store.holders(objects)
    assert {i: lease.owner for i, lease in holders.items()} == {i: o for o, w in won.items() for i in w}


def test_release_ends_only_the_owners_leases(any_store: Store) -> None:
    a, b = oid(1), oid(2)
    any_store.claim("p1", at(30), [a, b])
    any_store.release("p2", [a, b])
    assert any_store.holders([a, b]).keys() == {a, b}
    any_store.release("p1", [a])
    assert any_store.holders([a, b]).keys() == {b}
    assert any_store.claim("p2", at(30), [a, b]) == {a}


def test_renew_extends_the_owners_leases_and_answers_those_gone(any_store: Store) -> None:
    a, b, c, d = oid(1), oid(2), oid(3), oid(4)
    any_store.claim("p1", at(30), [a, b])
    any_store.claim("p2", at(30), [c])
    assert any_store.renew("p1", [a, b, c, d], at(90)) == {c, d}
    held = any_store.holders([a, b, c])
    assert held[a].until == at(90) and held[b].until == at(90)
    assert held[c] == Lease(c, "p2", at(30))  # another's lease is left alone
    assert any_store.renew("p1", [], at(90)) == set()


def test_an_expired_lease_holds_until_the_sweep_drops_it(any_store: Store) -> None:
    a, b, c = oid(1), oid(2), oid(3)
    any_store.claim("p1", at(10), [a])
    any_store.claim("p1", at(30), [b])
    any_store.claim("p2", at(10), [c])
    assert any_store.expired_leases(at(10)) == []  # expired once its time has passed, not at it
    assert sorted(any_store.expired_leases(at(20))) == [Lease(a, "p1", at(10)), Lease(c, "p2", at(10))]
    assert len(any_store.expired_leases(at(20), limit=1)) == 1
    assert any_store.claim("p3", at(60), [a]) == set()  # expired, still held
    assert any_store.drop_leases("p2", [a], at(20)) == set()  # not the holder's
    assert any_store.drop_leases("p1", [a, b], at(5)) == set()  # not expired yet
    assert any_store.drop_leases("p1", [a, b], at(20)) == {a}  # b is not expired
    assert any_store.holders([a, b]).keys() == {b}
    assert any_store.claim("p3", at(60), [a]) == {a}
    any_store.renew("p2", [c], at(90))
    assert any_store.drop_leases("p2", [c], at(20)) == set()  # renewed meanwhile: it stays


def test_drop_leases_of_others_leaves_only_the_owners(any_store: Store) -> None:
    any_store.claim("p1", at(30), [oid(1)])
    any_store.claim("p2", at(30), [oid(2)])
    any_store.claim("p3", at(30), [oid(3)])
    assert sorted(any_store.drop_leases_of_others("p1")) == [oid(2), oid(3)]
    assert any_store.holders([oid(1), oid(2), oid(3)]).keys() == {oid(1)}
    assert any_store.drop_leases_of_others("p1") == []


def test_an_insert_with_claim_until_is_created_held_by_the_writer(any_store: Store) -> None:
    held, free = record(1, due=at(5)), record(2)
    assert any_store.commit([insert(held, claim_until=at(35)), insert(free)], "p1", "p1", T0) == [OK, OK]
    assert any_store.holders([held.id, free.id]) == {held.id: Lease(held.id, "p1", at(35))}
    assert any_store.claim("p2", at(60), [held.id, free.id]) == {free.id}


def test_a_leased_write_that_releases_ends_the_lease(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    any_store.claim("p1", at(30), [rec.id])
    assert any_store.commit([change(rec, running(), leased=True, release=True)], "p1", "p1", at(1)) == [OK]
    assert any_store.holders([rec.id]) == {}
    assert any_store.get(rec.id)["fence"] == 1  # type: ignore[index]


def test_a_leased_write_that_keeps_the_lease_moves_it_to_until(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    any_store.claim("p1", at(30), [rec.id])
    op = change(rec, running(), leased=True, until=at(50))
    assert any_store.commit([op], "p1", "p1", at(1)) == [OK]
    assert any_store.holders([rec.id]) == {rec.id: Lease(rec.id, "p1", at(50))}
    op = change(rec, None, fence=1, leased=True)  # no `until`: the lease lasts until the commit's now
    assert any_store.commit([op], "p1", "p1", at(7)) == [OK]
    assert any_store.holders([rec.id]) == {rec.id: Lease(rec.id, "p1", at(7))}


def test_a_leased_write_is_fenced_by_its_lease_and_written_by_id(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    any_store.claim("p1", at(30), [rec.id])
    op = change(rec, running(), fence=5, leased=True, until=at(40))  # the loop's writes go one at a time
    assert any_store.commit([op], "p1", "p1", at(1)) == [OK]
    assert any_store.get(rec.id)["fence"] == 1  # type: ignore[index]
    assert any_store.commit([change(record(2), running(), leased=True, until=at(40))], "p1", "p1", at(1)) == [STALE]  # fmt: skip


@pytest.mark.parametrize("release", [True, False], ids=["release", "keep"])
def test_a_leased_write_without_the_writers_lease_is_stale(any_store: Store, release: bool) -> None:
    rec = record(1)
    create(any_store, rec)
    op = change(rec, running(), leased=True, release=release, until=None if release else at(50))
    op.attempts = [call(1).for_storage()]
    assert any_store.commit([op], "p1", "p1", at(1)) == [STALE]  # nobody holds it
    any_store.claim("p2", at(30), [rec.id])
    assert any_store.commit([op], "p1", "p1", at(1)) == [STALE]  # taken over
    assert any_store.holders([rec.id]) == {rec.id: Lease(rec.id, "p2", at(30))}
    assert any_store.get(rec.id) == rec.for_storage()
    assert any_store.history(rec.id) == []
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 1}


def test_a_guarded_change_is_held_while_anyone_holds_the_object(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    any_store.claim("p1", at(30), [rec.id])
    cancel = Change(updated=at(1), progress=Progress(phase=Phase.CANCELLED, step="task", reason="by hand"))
    assert any_store.commit([change(rec, cancel, guard=True)], "api", "api", at(1)) == [HELD]
    assert any_store.commit([change(rec, cancel, guard=True)], "p1", "p1", at(1)) == [HELD]  # its own too
    assert any_store.commit([change(rec, cancel, guard=True)], "api", "api", at(45)) == [
        HELD
    ]  # expired: held
    assert any_store.holders([rec.id]) == {rec.id: Lease(rec.id, "p1", at(30))}
    assert any_store.get(rec.id) == rec.for_storage()
    any_store.release("p1", [rec.id])
    assert any_store.commit([change(rec, cancel, guard=True)], "api", "api", at(1)) == [OK]
    assert any_store.get(rec.id)["state"] == "cancelled"  # type: ignore[index]
    assert any_store.holders([rec.id]) == {}  # the guard leaves no lease behind
    assert any_store.claim("p1", at(30), [rec.id]) == {rec.id}
    assert nonzero(any_store.counts("alice", "Task")) == {"cancelled": 1}


def test_a_guarded_change_with_a_stale_fence_is_stale_and_leaves_no_lease(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    assert any_store.commit([change(rec, running(), fence=3, guard=True)], "api", "api", at(1)) == [STALE]
    assert any_store.holders([rec.id]) == {}
    assert any_store.claim("p1", at(30), [rec.id]) == {rec.id}


# ----- rule 3: all or nothing per op, never per batch


def test_a_failing_op_never_affects_the_others_of_its_batch(any_store: Store) -> None:
    stale, good, held, leased = record(1), record(2), record(3), record(4)
    create(any_store, stale, good, held, leased)
    any_store.claim("p9", at(30), [held.id])
    any_store.claim("p1", at(30), [leased.id])
    ops = [
        insert(record(5), attempts=[call(1).for_storage()]),
        change(stale, running(), fence=7, attempts=[call(1).for_storage()]),
        insert(record(6, name="n2")),  # the name of `good`
        change(good, running(), attempts=[call(2).for_storage()]),
        change(held, running(), guard=True),
        change(record(7, owner="bob"), running()),  # no such object
        change(leased, running(), leased=True, release=True),
    ]
    assert any_store.commit(ops, "p1", "p1", at(1)) == [OK, STALE, EXISTS, OK, HELD, STALE, OK]
    assert any_store.get(oid(5)) is not None and any_store.get(oid(6)) is None
    assert any_store.get(stale.id) == stale.for_storage()
    assert any_store.get(held.id) == held.for_storage()
    assert any_store.get(good.id)["state"] == "running"  # type: ignore[index]
    assert any_store.get(leased.id)["state"] == "running"  # type: ignore[index]
    assert [h["attempt"] for h in any_store.history(oid(5))] == [1]
    assert [h["attempt"] for h in any_store.history(good.id)] == [2]
    assert any_store.history(stale.id) == []
    assert any_store.holders([held.id, leased.id]) == {held.id: Lease(held.id, "p9", at(30))}
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 3, "running": 2}
    assert nonzero(any_store.counts("bob", "Task")) == {}


# ----- loop reads: due work


def test_due_between_answers_waiting_objects_in_range_earliest_first(any_store: Store) -> None:
    dues = {1: 50, 2: 10, 3: 40, 4: 20, 5: 30}
    create(any_store, *[record(i, due=at(s)) for i, s in dues.items()])
    create(any_store, record(6, phase=Phase.COMPLETED), record(7, phase=Phase.RUNNING))  # no due time
    assert any_store.due_between(None, at(30), 100) == [Due(oid(2), at(10), 0), Due(oid(4), at(20), 0), Due(oid(5), at(30), 0)]  # fmt: skip
    assert [d.id for d in any_store.due_between(at(10), at(30), 100)] == [oid(4), oid(5)]  # (after, until]
    assert [d.id for d in any_store.due_between(None, at(100), 2)] == [oid(2), oid(4)]
    assert [d.id for d in any_store.due_between(at(20), at(100), 100)] == [oid(5), oid(3), oid(1)]
    assert any_store.due_between(at(50), at(100), 100) == []
    assert any_store.due_between(None, at(9.999), 100) == []


def test_an_object_leaves_due_work_when_its_call_starts_and_returns_with_its_fence(any_store: Store) -> None:
    rec = record(1, due=at(10))
    create(any_store, rec)
    assert any_store.commit([change(rec, running())], "p1", "p1", at(1)) == [OK]
    assert any_store.due_between(None, at(100), 10) == []
    again = Change(
        updated=at(2), progress=Progress(phase=Phase.SCHEDULED, step="task", attempt=2, due=at(70))
    )
    assert any_store.commit([change(rec, again, fence=1)], "p1", "p1", at(2)) == [OK]
    assert any_store.due_between(None, at(100), 10) == [Due(rec.id, at(70), 2)]


# ----- lists


def test_list_objects_of_an_owner_in_a_state_pages_newest_first(any_store: Store) -> None:
    create(
        any_store, *[record(i) for i in range(1, 6)], record(6, phase=Phase.RUNNING), record(7, owner="bob")
    )
    legacy = {**record(8).for_storage(), "attempts": [{"step": "task"}]}
    assert any_store.commit([Op(oid(8), "alice", "Task", None, "scheduled", doc=legacy)], "p1", "p1", T0) == [
        OK
    ]
    page = any_store.list_objects("Task", "alice", "scheduled", None, 3)
    assert ids(page) == [oid(8), oid(5), oid(4)] and page.next == oid(4)
    assert "attempts" not in page.docs[0] and page.docs[1] == record(5).for_storage()
    assert ids(any_store.list_objects("Task", "alice", "scheduled", oid(4), 3)) == [oid(3), oid(2), oid(1)]
    assert any_store.list_objects("Task", "alice", "scheduled", oid(1), 3) == Page([], None)
    assert ids(any_store.list_objects("Task", "alice", "running", None, 3)) == [oid(6)]
    assert ids(any_store.list_objects("Task", "bob", "scheduled", None, 3)) == [oid(7)]
    assert any_store.list_objects("TaskSet", "alice", "scheduled", None, 3) == Page([], None)


def test_list_objects_of_an_owner_in_every_state_merges_newest_first(any_store: Store) -> None:
    phases = [Phase.SCHEDULED, Phase.RUNNING, Phase.COMPLETED, Phase.SCHEDULED, Phase.FAILED, Phase.CANCELLED]
    create(any_store, *[record(i, phase=p) for i, p in enumerate(phases, 1)], record(7, owner="bob"))
    assert ids(any_store.list_objects("Task", "alice", None, None, 4)) == [oid(6), oid(5), oid(4), oid(3)]
    assert ids(any_store.list_objects("Task", "alice", None, oid(3), 4)) == [oid(2), oid(1)]
    assert ids(any_store.list_objects("Task", "alice", None, None, 100)) == [oid(i) for i in range(6, 0, -1)]


def test_list_objects_of_everybody_pages_newest_first(any_store: Store) -> None:
    owners = ["alice", "bob", "carol", "bob", "alice"]
    create(any_store, *[record(i, owner=o, phase=Phase.RUNNING if i % 2 else Phase.SCHEDULED) for i, o in enumerate(owners, 1)])  # fmt: skip
    create(any_store, record(6, kind=TASKSET))
    page = any_store.list_objects("Task", None, None, None, 2)
    assert (
        ids(page) == [oid(5), oid(4)]
        and page.docs[0] == record(5, owner="alice", phase=Phase.RUNNING).for_storage()
    )
    assert ids(any_store.list_objects("Task", None, None, oid(4), 2)) == [oid(3), oid(2)]
    assert ids(any_store.list_objects("Task", None, None, oid(2), 2)) == [oid(1)]
    assert ids(any_store.list_objects("TaskSet", None, None, None, 10)) == [oid(6)]


def test_paging_with_next_until_none_gives_every_object_once_newest_first(any_store: Store) -> None:
    create(any_store, *[record(i, phase=Phase.COMPLETED if i % 3 else Phase.SCHEDULED) for i in range(1, 12)])
    for state in (None, "completed"):
        seen, cursor = [], None
        while True:
            page = any_store.list_objects("Task", "alice", state, cursor, 4)
            seen += ids(page)
            if page.next is None:
                break
            cursor = page.next
        expected = [oid(i) for i in range(11, 0, -1) if state is None or i % 3]
        assert seen == expected, state


def test_a_label_selector_lists_only_the_objects_it_matches(any_store: Store) -> None:
    team = {
        1: {"team": "billing", "env": "prod"},
        2: {"team": "billing", "env": "dev"},
        3: {"team": "web"},
        4: {},
    }
    create(any_store, *[record(i, labels=lab) for i, lab in team.items()], record(5, owner="bob", labels={"team": "billing"}))  # fmt: skip

    def listed(text: str, state: str | None = None) -> list[str]:
        return ids(any_store.list_objects("Task", "alice", state, None, 10, labels.parse(text)))

    assert listed("team=billing") == [oid(2), oid(1)]
    assert listed("team=billing,env!=dev") == [oid(1)]
    assert listed("team in (web,billing)") == [oid(3), oid(2), oid(1)]
    assert listed("!team") == [oid(4)] and listed("env") == [oid(2), oid(1)]
    assert listed("team notin (billing)") == [oid(4), oid(3)]
    assert listed("team=billing", "scheduled") == [oid(2), oid(1)] and listed("team=billing", "failed") == []
    assert ids(any_store.list_objects("Task", None, None, None, 10, labels.parse("team=billing"))) == [oid(5), oid(2), oid(1)]  # fmt: skip


def test_a_selector_follows_labels_changed_after_creation(any_store: Store) -> None:
    rec = record(1, labels={"team": "web"})
    create(any_store, rec)
    assert any_store.commit([change(rec, Change(updated=at(1), labels={"team": "billing"}))], "p1", "p1", at(1)) == [OK]  # fmt: skip
    assert ids(any_store.list_objects("Task", "alice", None, None, 10, labels.parse("team=billing"))) == [
        rec.id
    ]
    assert ids(any_store.list_objects("Task", "alice", None, None, 10, labels.parse("team=web"))) == []


def test_a_name_search_pages_by_name(any_store: Store) -> None:
    names = {1: "billing-b", 2: "billing-a", 3: "web-a", 4: "billing-c", 5: "bill"}
    create(
        any_store, *[record(i, name=n) for i, n in names.items()], record(6, owner="bob", name="billing-z")
    )
    page = any_store.list_objects("Task", "alice", None, None, 2, prefix="billing-")
    assert ids(page) == [oid(2), oid(1)] and page.next == "billing-b"
    assert any_store.list_objects("Task", "alice", None, "billing-b", 2, prefix="billing-") == Page(
        [any_store.get(oid(4))], None
    )  # type: ignore[list-item]
    assert ids(any_store.list_objects("Task", "alice", "failed", None, 2, prefix="billing-")) == []
    assert ids(any_store.list_objects("Task", "alice", None, None, 9, labels.parse("team=a"), prefix="b")) == [oid(5), oid(2), oid(1), oid(4)]  # fmt: skip


def test_upcoming_lists_an_owners_objects_due_within_a_time_earliest_first(any_store: Store) -> None:
    create(any_store, record(1, due=at(30), display="Report"), record(2, due=at(10)), record(3, due=at(5000)), record(4, owner="bob", due=at(20)))  # fmt: skip
    found, complete = any_store.upcoming("alice", at(0), at(3600), 10)
    assert [e.id for e in found] == [oid(2), oid(1)] and complete
    assert found[0].due == at(10) and found[0].name == "n2" and found[0].kind == "Task"
    assert [e.display for e in found] == [None, "Report"]
    assert any_store.upcoming("alice", at(10), at(3600), 10)[0][0].id == oid(1)
    assert [e.recurring for e in found] == [False, False]


def test_upcoming_in_narrow_windows_finds_what_a_quiet_stretch_leaves_far_ahead(any_store: Store) -> None:
    every = {"schedule": {"every": "1m"}, "invoke": {"url": "http://127.0.0.1:9/ok"}}
    create(any_store, record(1, due=at(3000)), replace(record(2, due=at(3001)), spec=every), *[record(10 + i, due=at(3002 + i)) for i in range(5)])  # fmt: skip
    found, complete = any_store.upcoming("alice", at(0), at(3600), 3, widest=dt.timedelta(seconds=60))
    assert [e.id for e in found] == [oid(1), oid(2), oid(10)] and not complete
    assert [e.recurring for e in found] == [False, True, False]
    found, complete = any_store.upcoming("alice", at(0), at(3600), 10, widest=dt.timedelta(seconds=60))
    assert len(found) == 7 and complete


def test_upcoming_latest_first_reads_back_from_the_end(any_store: Store) -> None:
    create(any_store, *[record(i, due=at(100 + i)) for i in range(1, 8)], record(9, due=at(10)), record(10, owner="bob", due=at(150)))  # fmt: skip
    found, complete = any_store.upcoming("alice", at(0), at(3600), 3, latest_first=True)
    assert [e.id for e in found] == [oid(7), oid(6), oid(5)] and not complete
    found, complete = any_store.upcoming("alice", at(0), at(3600), 10, latest_first=True)
    assert [e.id for e in found] == [oid(i) for i in (7, 6, 5, 4, 3, 2, 1, 9)] and complete


def test_everybodys_list_takes_no_state_filter(any_store: Store) -> None:
    with pytest.raises(ValueError):
        any_store.list_objects("Task", None, "scheduled", None, 10)


# ----- rule 5: counters


def test_counts_follow_the_commits_per_owner_and_for_everybody(any_store: Store) -> None:
    a1, a2 = record(1), record(2)
    create(any_store, a1, a2, record(3, owner="bob"), record(4, kind=TASKSET))
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 2}
    assert nonzero(any_store.counts(None, "Task")) == {"scheduled": 3}
    assert nonzero(any_store.counts(None, "TaskSet")) == {"scheduled": 1}
    assert any_store.commit([change(a1, running())], "p1", "p1", at(1)) == [OK]
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 1, "running": 1}
    assert nonzero(any_store.counts("bob", "Task")) == {"scheduled": 1}
    assert nonzero(any_store.counts(None, "Task")) == {"scheduled": 2, "running": 1}
    assert any_store.commit([change(a2, Change(updated=at(2)))], "p1", "p1", at(2)) == [OK]  # no move
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 1, "running": 1}
    assert nonzero(any_store.counts("carol", "Task")) == {}


def test_counts_come_from_the_ops_moves_and_never_go_below_zero(any_store: Store) -> None:
    rec = record(1)
    create(any_store, rec)
    # the op says running -> failed (the object itself stays scheduled): the counters trust the op
    op = Op(rec.id, "alice", "Task", "running", "failed", fence=0, change=None)
    assert any_store.commit([op], "p1", "p1", at(1)) == [OK]
    counts = any_store.counts("alice", "Task")
    assert nonzero(counts) == {"scheduled": 1, "failed": 1}
    assert counts.get("running", 0) == 0
    assert any_store.get(rec.id)["state"] == "scheduled"  # type: ignore[index]


def test_counts_add_up_every_writers_slot_and_survive_folding(any_store: Store) -> None:
    create(any_store, record(1), record(2), slot="p1")
    create(any_store, record(3), slot="p2")
    rec = record(1)
    assert any_store.commit([change(rec, running())], "p2", "p2", at(1)) == [OK]  # moved by another slot
    expected = {"scheduled": 2, "running": 1}
    assert nonzero(any_store.counts("alice", "Task")) == expected
    any_store.heartbeat("p1", at(10), {"pid": 1, "host": "h"})
    any_store.heartbeat("p2", at(500), {"pid": 2, "host": "h"})
    assert any_store.fold_slots(at(100), keep="p3") == 0  # p1 stopped less than two minutes ago
    assert any_store.fold_slots(at(131), keep="p3") == 1  # p1 is gone: its slot is folded
    assert nonzero(any_store.counts("alice", "Task")) == expected
    assert nonzero(any_store.counts(None, "Task")) == expected
    assert any_store.fold_slots(at(131), keep="p3") == 0
    create(any_store, record(4), slot="p1")  # a slot written again after its fold
    assert any_store.fold_slots(T0, keep="p2", everyone_else=True) == 1  # p1's slot, no process left
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 3, "running": 1}
    assert any_store.fold_slots(T0, keep="p1", everyone_else=True) == 1  # p2 (a process, with a slot)
    assert nonzero(any_store.counts("alice", "Task")) == {"scheduled": 3, "running": 1}
    assert any_store.fold_slots(T0, keep="p1", everyone_else=True) == 0


# ----- history


def test_history_answers_the_newest_calls_oldest_first(any_store: Store) -> None:
    rec = record(1)
    assert any_store.commit([insert(rec, attempts=[call(1).for_storage()])], "p1", "p1", T0) == [OK]
    op = change(rec, running(), attempts=[call(2).for_storage(), call(3, ok=True).for_storage()])
    assert any_store.commit([op], "p1", "p1", at(3)) == [OK]
    create(any_store, record(2))
    history = any_store.history(rec.id)
    assert all("o" not in h and "_id" in h for h in history)
    assert [{k: v for k, v in h.items() if k != "_id"} for h in history] == [call(n, ok=n == 3).for_storage() for n in (1, 2, 3)]  # fmt: skip
    assert [CallRecord.from_storage(h).attempt for h in any_store.history(rec.id, 2)] == [2, 3]
    assert any_store.history(oid(2)) == []
    assert any_store.history(oid(99)) == []


def test_prune_history_keeps_the_newest_calls_of_each_object(any_store: Store) -> None:
    a, b = record(1), record(2)
    create(any_store, a, b)
    calls = [call(n).for_storage() for n in range(1, 6)]
    assert any_store.commit([change(a, None, attempts=calls), change(b, None, attempts=calls[:2])], "p1", "p1", T0) == [OK, OK]  # fmt: skip
    assert any_store.prune_history([a.id, b.id, oid(9)], keep=3) == 2
    assert [h["attempt"] for h in any_store.history(a.id)] == [3, 4, 5]
    assert [h["attempt"] for h in any_store.history(b.id)] == [1, 2]
    assert any_store.prune_history([a.id, b.id], keep=3) == 0
    assert any_store.prune_history([b.id], keep=0) == 2
    assert any_store.history(b.id) == []


# ----- users, tokens, web sessions


def test_users_by_name(any_store: Store) -> None:
    assert any_store.any_user() is False
    any_store.insert_user({"_id": "bob", "admin": False, "password": "hash-b", "tokens": [], "created": T0})
    any_store.insert_user({"_id": "alice", "admin": True, "password": "hash-a", "tokens": [], "created": T0})
    with pytest.raises(Conflict):
        any_store.insert_user({"_id": "bob", "admin": True, "tokens": []})
    assert any_store.get_user("bob") == {"_id": "bob", "admin": False, "password": "hash-b", "tokens": [], "created": T0}  # fmt: skip
    assert any_store.get_user("carol") is None
    assert any_store.list_users() == [
        {"_id": "alice", "admin": True, "tokens": [], "created": T0},
        {"_id": "bob", "admin": False, "tokens": [], "created": T0},
    ]
    assert [u["_id"] for u in any_store.list_users(limit=1)] == ["alice"]
    assert any_store.any_user() is True
    assert any_store.set_user("bob", {"admin": True, "password": "new"}) is True
    assert any_store.get_user("bob")["password"] == "new"  # type: ignore[index]
    assert any_store.get_user("bob")["admin"] is True  # type: ignore[index]
    assert any_store.set_user("carol", {"admin": True}) is False
    assert any_store.get_user("carol") is None
    assert any_store.delete_user("bob") is True
    assert any_store.delete_user("bob") is False
    assert [u["_id"] for u in any_store.list_users()] == ["alice"]


def test_api_tokens_of_a_user(any_store: Store) -> None:
    any_store.insert_user({"_id": "alice", "admin": False, "tokens": []})
    assert any_store.add_token("alice", {"hash": "h1", "name": "ci", "created": T0}) is True
    assert any_store.add_token("alice", {"hash": "h2", "name": "laptop", "created": T0}) is True
    assert any_store.add_token("nobody", {"hash": "h3"}) is False
    any_store.touch_token("alice", "h2", at(5))
    any_store.touch_token("alice", "unknown", at(6))
    any_store.touch_token("nobody", "h2", at(6))
    tokens = any_store.get_user("alice")["tokens"]  # type: ignore[index]
    assert tokens == [
        {"hash": "h1", "name": "ci", "created": T0},
        {"hash": "h2", "name": "laptop", "created": T0, "last_used": at(5)},
    ]
    any_store.remove_tokens("alice", ["h1", "h9"])
    assert [t["hash"] for t in any_store.get_user("alice")["tokens"]] == ["h2"]  # type: ignore[index]
    any_store.remove_tokens("nobody", ["h2"])
    assert any_store.get_user("nobody") is None


def test_web_sessions(any_store: Store) -> None:
    sessions = [("d1", "alice"), ("d2", "alice"), ("d3", "bob")]
    for digest, user in sessions:
        any_store.insert_session({"_id": digest, "user": user, "created": T0, "expires": FAR})
    assert any_store.find_session("d1") == {"_id": "d1", "user": "alice", "created": T0, "expires": FAR}
    assert any_store.find_session("d9") is None
    any_store.delete_session("d1")
    any_store.delete_session("d9")
    assert any_store.find_session("d1") is None and any_store.find_session("d2") is not None
    any_store.delete_sessions_of("alice")
    assert any_store.find_session("d2") is None
    assert any_store.find_session("d3") is not None


# ----- processes and the store itself


def test_a_process_without_transactions_open_never_lapses(any_store: Store) -> None:
    any_store.heartbeat("p1", at(10), {"pid": 1})
    any_store.heartbeat("p1", at(20), {"pid": 1, "host": "h"})  # a heartbeat again moves it on
    assert any_store.lapsed(at(30)) == []  # stopped, but it has no transaction sessions
    assert any_store.end_sessions_of("p1", at(30)) is False
    assert any_store.end_sessions_of("nobody", at(30)) is False
    assert any_store.fold_slots(at(135), keep="p2") == 0  # it stopped at T0+20s, not yet two minutes
    assert any_store.fold_slots(at(141), keep="p2") == 1


def test_the_store_answers_and_names_its_process(any_store: Store) -> None:
    assert any_store.ping() is True
    assert isinstance(any_store.embedded, bool)
    any_store.identify("p1")
    create(any_store, record(1))
    assert any_store.get(oid(1)) is not None


def test_two_changes_of_one_object_in_a_batch_never_fail_another_op(any_store: Store) -> None:
    other, held = record(1), record(2)
    create(any_store, other, held)
    any_store.claim("p1", at(30), [held.id])
    cancel = Change(updated=at(1), progress=Progress(phase=Phase.CANCELLED, step="task", reason="by hand"))
    ops = [
        change(other, running()),  # valid on its own, and touches nothing else of the batch
        change(held, running(), leased=True, release=True),  # the loop's write: its lease ends
        change(held, cancel, guard=True),  # a change from outside, against the same fence
    ]
    outcomes = any_store.commit(ops, "p1", "p1", at(1))
    assert outcomes[0] == OK
    assert any_store.get(other.id)["state"] == "running"  # type: ignore[index]


def test_a_stale_change_never_fails_the_change_of_an_object_the_batch_creates(any_store: Store) -> None:
    stale, new = record(1), record(2)
    create(any_store, stale)
    ops = [insert(new), change(new, running()), change(stale, running(), fence=5)]
    outcomes = any_store.commit(ops, "p1", "p1", at(1))
    assert outcomes == [OK, OK, STALE]


def test_a_setting_is_kept_by_name_until_removed(any_store: Store) -> None:
    from lambdaop.store.contract import PAUSE_ALL

    at = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    assert any_store.get_setting(PAUSE_ALL) is None
    any_store.put_setting(PAUSE_ALL, {"reason": "incident 42", "by": "admin", "at": at})
    assert any_store.get_setting(PAUSE_ALL) == {"reason": "incident 42", "by": "admin", "at": at}
    any_store.put_setting(PAUSE_ALL, {"reason": "still", "by": "admin", "at": at})
    assert any_store.get_setting(PAUSE_ALL)["reason"] == "still"  # type: ignore[index]
    any_store.put_setting(PAUSE_ALL, None)
    assert any_store.get_setting(PAUSE_ALL) is None


def test_ended_runs_are_listed_newest_first_by_result_time_labels_and_kind(any_store: Store) -> None:
    from lambdaop.engine.runs import RunRecord

    recs = [record(1), record(2, labels={"team": "b"}), record(3, kind=Kind.TASKSET)]
    create(any_store, *recs)
    ended = [(0, "failed", 10), (1, "completed", 20), (2, "failed", 30), (0, "failed", 40), (1, "failed", 50)]
    for n, (i, result, when) in enumerate(ended):
        rec = recs[i]
        run = RunRecord(rec.id, rec.kind.value, rec.name, rec.owner, result, at(when), labels=rec.labels, run=n + 1, reason="status 500" if result == "failed" else None)  # fmt: skip
        ch = Change(updated=at(when))
        assert any_store.commit([change(rec, ch, fence=sum(1 for j, _, _ in ended[:n] if j == i), run=run.for_storage())], "p1", "p1", at(when)) == [OK]  # fmt: skip
    failed = any_store.list_runs("alice", "failed", None, None, 10)
    assert [(d["name"], d["finished"]) for d in failed.docs] == [("n2", at(50)), ("n1", at(40)), ("n3", at(30)), ("n1", at(10))]  # fmt: skip
    assert failed.next is None and RunRecord.from_storage(failed.docs[0]).reason == "status 500"
    assert [d["finished"] for d in any_store.list_runs("alice", None, None, None, 10).docs] == [at(t) for t in (50, 40, 30, 20, 10)]  # fmt: skip
    assert [d["finished"] for d in any_store.list_runs("alice", "failed", at(30), None, 10).docs] == [at(50), at(40), at(30)]  # fmt: skip
    team_a = labels.parse("team=a")
    assert [d["name"] for d in any_store.list_runs("alice", "failed", None, None, 10, team_a).docs] == [
        "n1",
        "n3",
        "n1",
    ]
    assert [d["name"] for d in any_store.list_runs("alice", None, None, None, 10, None, "TaskSet").docs] == [
        "n3"
    ]
    seen, cursor = [], None
    for _ in range(10):
        page = any_store.list_runs("alice", "failed", None, cursor, 1)
        seen += [d["finished"] for d in page.docs]
        cursor = page.next
        if cursor is None:
            break
    assert seen == [at(t) for t in (50, 40, 30, 10)]
    assert any_store.list_runs("bob", None, None, None, 10).docs == []


def test_ended_runs_are_listed_by_the_start_of_their_objects_name_newest_first(any_store: Store) -> None:
    from lambdaop.engine.runs import RunRecord

    recs = [record(1, name="web-a"), record(2, name="web-b"), record(3, name="db-a", kind=Kind.TASKSET)]
    create(any_store, *recs)
    ended = [(0, "failed", 10), (2, "failed", 20), (1, "completed", 30), (2, "completed", 40), (0, "completed", 50)]  # fmt: skip
    for n, (i, result, when) in enumerate(ended):
        rec = recs[i]
        run = RunRecord(rec.id, rec.kind.value, rec.name, rec.owner, result, at(when), labels=rec.labels, run=n + 1)  # fmt: skip
        fence = sum(1 for j, _, _ in ended[:n] if j == i)
        assert any_store.commit([change(rec, Change(updated=at(when)), fence=fence, run=run.for_storage())], "p1", "p1", at(when)) == [OK]  # fmt: skip
    web = any_store.list_runs("alice", None, None, None, 10, prefix="web-")
    assert [(d["name"], d["finished"]) for d in web.docs] == [("web-a", at(50)), ("web-b", at(30)), ("web-a", at(10))]  # fmt: skip
    assert web.next is None
    assert [d["name"] for d in any_store.list_runs("alice", "completed", None, None, 10, prefix="web-").docs] == ["web-a", "web-b"]  # fmt: skip
    assert [d["name"] for d in any_store.list_runs("alice", None, None, None, 10, prefix="db").docs] == ["db-a", "db-a"]  # fmt: skip
    assert any_store.list_runs("alice", None, None, None, 10, prefix="web-c").docs == []
    assert any_store.list_runs("alice", None, None, None, 10, prefix="WEB-").docs == [], "a prefix is case-sensitive, as names are"  # fmt: skip
    assert [d["name"] for d in any_store.list_runs("alice", None, None, None, 10, labels.parse("team=a"), "Task", "web-b").docs] == ["web-b"]  # fmt: skip
    assert [d["name"] for d in any_store.list_runs("alice", None, None, None, 10, prefix="").docs] == ["web-a", "db-a", "web-b", "db-a", "web-a"]  # fmt: skip
    # paging by `next` goes on newest first, the prefix asked again with each page
    seen, cursor = [], None
    for _ in range(10):
        page = any_store.list_runs("alice", None, None, cursor, 1, prefix="web-")
        seen += [(d["name"], d["finished"]) for d in page.docs]
        cursor = page.next
        if cursor is None:
            break
    assert seen == [("web-a", at(50)), ("web-b", at(30)), ("web-a", at(10))]
    assert any_store.list_runs("bob", None, None, None, 10, prefix="web-").docs == []


def test_suspended_objects_are_listed_for_their_owner_most_recently_paused_first(any_store: Store) -> None:
    recs = [record(1), record(2), record(3), record(4, owner="bob")]
    create(any_store, *recs)
    fences = {r.id: r.fence for r in recs}
    for i, when in ((0, 10), (1, 20), (3, 30)):
        rec = recs[i]
        paused = Change(updated=at(when), progress=replace(rec.progress, suspended=True, due=None, pause_reason=f"why {i}"))  # fmt: skip
        assert any_store.commit([change(rec, paused, fence=fences[rec.id])], "p1", "p1", at(when)) == [OK]
        fences[rec.id] += 1
    found, more = any_store.paused("alice", at(60), 10)
    assert [(d["_id"], d["progress"]["pause_reason"]) for d in found] == [(recs[1].id, "why 1"), (recs[0].id, "why 0")]  # fmt: skip
    assert not more and {d["name"] for d in found} == {"n1", "n2"}
    first, more = any_store.paused("alice", at(60), 1)
    assert [d["_id"] for d in first] == [recs[1].id] and more
    # resumed, it leaves the list; a write while paused keeps it there
    resumed = Change(updated=at(40), progress=replace(recs[1].progress, suspended=False))
    assert any_store.commit([change(recs[1], resumed, fence=fences[recs[1].id])], "p1", "p1", at(40)) == [OK]
    relabelled = Change(updated=at(41), labels={"team": "a"})
    assert any_store.commit([change(recs[0], relabelled, fence=fences[recs[0].id])], "p1", "p1", at(41)) == [
        OK
    ]
    assert [d["_id"] for d in any_store.paused("alice", at(60), 10)[0]] == [recs[0].id]
    assert [d["_id"] for d in any_store.paused("bob", at(60), 10)[0]] == [recs[3].id]
    # one inserted already suspended is listed too
    born = record(5)
    create(any_store, replace(born, progress=replace(born.progress, suspended=True, due=None), due=None))
    assert {d["_id"] for d in any_store.paused("alice", at(60), 10)[0]} == {recs[0].id, born.id}


def test_a_process_has_stopped_once_its_heartbeat_ended_or_when_it_never_had_one(any_store: Store) -> None:
    any_store.heartbeat("p1", at(10), {"owner": "p1"})
    any_store.heartbeat("p2", at(20), {"owner": "p2"})
    assert any_store.stopped(["p1", "p2", "p3"], at(5)) == {"p3"}
    assert any_store.stopped(["p1", "p2"], at(15)) == {"p1"}
    any_store.heartbeat("p1", at(30), {"owner": "p1"})  # it beats again: alive
    assert any_store.stopped(["p1", "p2"], at(25)) == {"p2"}
    assert any_store.stopped([], at(25)) == set()
