"""The loop driven pass by pass: `reconcile_once(now)` with the test clock, a synchronous invoker,
the store thread and the writer run inline, on the in-memory store: no server, no threads, no sleeps.
Several rigs on one store are several processes sharing it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from helpers import HeldCalls
from lambdaop.app.applying import Applier, ApplyAction
from lambdaop.app.batch import Checker
from lambdaop.app.service import Service
from lambdaop.core.clock import to_utc
from lambdaop.core.errors import Conflict
from lambdaop.engine import ondemand
from lambdaop.engine.ondemand import RunNow
from lambdaop.engine.record import Change, StoredObject
from lambdaop.loop.events import Action
from lambdaop.loop.outbound import Policy
from lambdaop.loop.reconciler import Reconciler
from lambdaop.loop.settings import LoopSettings
from lambdaop.loop.storethread import StoreThread
from lambdaop.spec import Task, load_documents, load_one
from lambdaop.store.memory import MemoryStore
from lambdaop.store.writer import Writer


class CountingStore:
    """A store seen by one process, counting what its loop asks (to show what the timer path does not do)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.asked: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in (
            "claim",
            "fetch",
            "commit",
            "due_between",
            "release",
            "renew",
            "holders",
            "expired_leases",
            "key_state",
            "take_places",
            "release_places",
            "renew_places",
            "put_waiting",
        ):
            self.asked[name] += 1
        return getattr(self.store, name)


class Rig:
    def __init__(self, shared: MemoryStore, clock: Any, owner: str = "p1", **settings: Any) -> None:
        self.store: Any = CountingStore(shared)
        self.clock = clock
        self.writer = Writer(self.store, owner, owner, clock, threaded=False)
        self.calls = HeldCalls(clock)
        self.loop = Reconciler(
            self.store,
            self.writer,
            clock,
            owner,
            {},
            LoopSettings(**settings),
            invoker=self.calls,
            io=StoreThread(threaded=False),
        )
        self.calls.deliver = self.loop.deliver
        self.service = Service(
            self.store,
            self.writer,
            self.loop,
            clock,
            self.loop.settings.claim_window,
            self.loop.settings.lease,
        )
        self.applier = Applier(self.service, Checker(Policy.parse("127.0.0.1")))

    def task(self, name: str, **spec: Any) -> str:
        (obj,) = load_one(Task.model_validate({"metadata": {"name": name}, "spec": {"invoke": "http://127.0.0.1:9/ok", **spec}}).model_dump_json())  # fmt: skip
        return self.applier.apply(obj, "alice").id or ""

    def at(self, seconds: float) -> dt.datetime:
        return to_utc(self.clock.start + dt.timedelta(seconds=seconds))

    def run(self, seconds: float) -> dt.datetime:
        """Move the clock to `seconds` after the start and make one pass."""
        now = self.at(seconds)
        self.clock._now = now
        self.loop.reconcile_once(now)
        return now

    def state(self, oid: str) -> str:
        doc = self.store.get(oid)
        assert doc is not None
        return str(doc["state"])


@pytest.fixture
def rig(clock: Any) -> Any:
    clock.start = clock.now()
    shared = MemoryStore()

    def make(owner: str = "p1", **settings: Any) -> Rig:
        return Rig(shared, clock, owner, **settings)

    return make


def test_claims_ahead_then_fires_from_memory_at_the_due_time(rig: Any) -> None:
    r = rig()
    oid = r.task("report", at=r.at(10).isoformat())
    r.run(0)
    assert not r.store.holders([oid]), "not claimed while beyond the claim window"
    r.run(8.5)
    assert r.store.holders([oid])[oid].owner == "p1", "claimed 1.5 s ahead of its due time"
    assert not r.calls.jobs
    r.run(9.99)
    assert not r.calls.jobs, "never early"
    before = Counter(r.store.asked)
    r.run(10)
    assert [j.object_id for j in r.calls.jobs] == [oid]
    assert r.store.asked == before, "firing touched the store"
    assert r.state(oid) == "scheduled", "the stored state moves with the result, not at the call"
    r.calls.answer_all()
    r.run(10.01)
    assert r.state(oid) == "completed"
    assert not r.store.holders([oid]), "the result ends the lease"
    (call,) = r.store.history(oid)
    assert call["ok"] and call["key"] == f"{oid}-g1-task"


def test_work_created_inside_the_window_is_held_at_once_and_created_for_now_runs_now(rig: Any) -> None:
    r = rig()
    r.run(0)
    soon = r.task("soon", at=r.at(1).isoformat())
    now = r.task("now")
    assert set(r.store.holders([soon, now])) == {soon, now}, "inserted already claimed"
    r.run(0)
    assert [j.object_id for j in r.calls.jobs] == [now]
    r.run(1)
    assert sorted(j.object_id for j in r.calls.jobs) == sorted([now, soon])


def test_cancel_inside_the_window_withdraws_the_call_before_it_leaves(rig: Any) -> None:
    r = rig()
    oid = r.task("withdrawn", at=r.at(10).isoformat())
    r.run(0)
    r.run(9.5)
    assert r.loop.holds(oid)
    answer = r.loop.request(Action.CANCEL, oid)
    r.run(9.6)
    assert answer.result(0).record.state == "cancelled"
    r.run(10)
    r.run(11)
    assert not r.calls.jobs, "a withdrawn call never leaves"
    assert r.state(oid) == "cancelled" and not r.store.holders([oid])


def test_cancel_after_the_call_left_is_refused_and_the_call_completes(rig: Any) -> None:
    r = rig()
    oid = r.task("gone", at=r.at(10).isoformat())
    r.run(0)
    r.run(9.5)
    r.run(10)
    assert [j.object_id for j in r.calls.jobs] == [oid]
    answer = r.loop.request(Action.CANCEL, oid)
    r.run(10.01)
    with pytest.raises(Conflict, match="started"):
        answer.result(0)
    r.calls.answer_all()
    r.run(10.02)
    assert r.state(oid) == "completed"


def test_modify_inside_the_window_moves_the_call(rig: Any) -> None:
    r = rig()
    oid = r.task("moved", at=r.at(10).isoformat())
    r.run(0)
    r.run(9)
    answer = r.loop.request(Action.MODIFY, oid, r.at(60))
    r.run(9.1)
    assert answer.result(0).record.due == r.at(60)
    assert not r.store.holders([oid]), "moved beyond the window: released"
    r.run(10)
    assert not r.calls.jobs
    for second in (40, 58.5, 60):
        r.run(second)
    assert [j.object_id for j in r.calls.jobs] == [oid]


def test_a_dead_holder_is_recovered_after_its_lease_with_the_same_key(rig: Any) -> None:
    dead = rig("p1", lease=dt.timedelta(seconds=6))
    oid = dead.task("orphan", at=dead.at(10).isoformat())
    dead.run(0)
    dead.run(9)
    dead.run(10)
    (first,) = dead.calls.jobs  # p1 dies with its call out
    alive = rig("p2", lease=dt.timedelta(seconds=6))
    alive.run(10)
    alive.run(12)
    assert not alive.calls.jobs, "the lease still holds"
    for second in (16.5, 17, 20, 25, 26):
        alive.run(second)
    (again,) = alive.calls.jobs
    assert (again.idempotency_key, again.attempt) == (first.idempotency_key, first.attempt)
    alive.calls.answer_all()
    alive.run(26.1)
    assert alive.state(oid) == "completed"
    (call,) = alive.store.history(oid)
    assert "the lease of p1 expired" in call["recovered"]
    dead.calls.answer(first)  # the dead process's late result is not its own to write any more
    dead.run(26.2)
    assert not dead.loop.holds(oid) and alive.state(oid) == "completed"
    assert len(alive.store.history(oid)) == 1, "the stale result was not written"


def test_results_share_one_commit(rig: Any) -> None:
    r = rig()
    ids = [r.task(f"t{i}", at=r.at(10).isoformat()) for i in range(50)]
    r.run(0)
    r.run(9)
    r.run(10)
    assert len(r.calls.jobs) == 50
    r.calls.answer_all()
    batches = r.writer.batches
    r.run(10.01)
    assert r.writer.batches == batches + 1, "fifty results, one transaction"
    assert {r.state(i) for i in ids} == {"completed"}
    assert r.store.counts("alice", "Task") == {"completed": 50, "scheduled": 0}


def test_a_large_apply_is_written_a_commit_at_a_time_and_answers_every_document_in_order(rig: Any) -> None:
    r = rig()
    r.writer.max_batch = 3  # ten new documents: four commits, each handed in while the next is prepared
    existing = r.task("t4", at=r.at(10).isoformat())
    text = "\n---\n".join(
        Task.model_validate(
            {
                "metadata": {"name": f"t{i}"},
                "spec": {"invoke": "http://127.0.0.1:9/ok", "at": r.at(10).isoformat()},
            }
        ).model_dump_json()  # fmt: skip
        for i in range(11)
    )
    batches = r.writer.batches
    results = r.applier.apply_documents(load_documents(text), "alice")
    assert [a.name for a in results] == [f"t{i}" for i in range(11)]
    assert [a.action for a in results].count(ApplyAction.CREATED) == 10
    assert results[4].action is ApplyAction.UNCHANGED and results[4].id == existing
    assert r.writer.batches - batches == 4
    assert r.store.counts("alice", "Task") == {"scheduled": 11}


def test_a_result_that_cannot_be_decided_fails_alone(rig: Any) -> None:
    r = rig()
    r.clock._now = r.clock.start = dt.datetime(9995, 1, 1, tzinfo=dt.UTC)  # ten years to the calendar's end
    bad = r.task("overflow", retries=1, retryDelay="3650d")
    good = r.task("fine")
    r.run(0)
    assert len(r.calls.jobs) == 2
    for job in list(r.calls.jobs):
        r.calls.answer(job, ok=job.object_id == good, status=200 if job.object_id == good else 500)
    r.run(0.01)
    assert r.state(good) == "completed"
    doc = r.store.get(bad) or {}
    assert doc["state"] == "failed" and "internal error" in doc["progress"]["reason"]


def test_a_document_from_a_newer_version_is_skipped_and_the_rest_run(rig: Any, caplog: Any) -> None:
    r = rig()
    odd = r.task("odd", at=r.at(10).isoformat())
    fine = r.task("fine", at=r.at(10).isoformat())
    r.store.store._objects[odd]["progress"]["shiny"] = 1  # as a newer version would have written it
    r.run(0)
    r.run(9)
    r.run(10)
    assert [j.object_id for j in r.calls.jobs] == [fine]
    assert f"object {odd}: its stored document cannot be read" in caplog.text


def test_chores_follow_the_loop_clock(rig: Any) -> None:
    r = rig(refill_every=5.0)
    r.run(0)
    reads = r.store.asked["due_between"]
    r.run(4.9)
    assert r.store.asked["due_between"] == reads, "no refill before its period on the loop's clock"
    r.run(5.0)
    assert r.store.asked["due_between"] == reads + 1


def test_everything_a_dead_holder_leaves_is_claimed_at_once_after_its_lease(rig: Any) -> None:
    """The freed objects are overdue: the next refill reads them all, even one already out
    when they were freed, rather than the sweep bringing 200 at a time."""
    dead = rig("p1", lease=dt.timedelta(seconds=6))
    ids = {dead.task(f"t{i}", at=dead.at(10).isoformat()) for i in range(250)}
    for second in (0, 9, 10):
        dead.run(second)
    assert len(dead.calls.jobs) == 250  # p1 dies with every call out
    alive = rig("p2", lease=dt.timedelta(seconds=6))  # sweeps every 3 s, refills every 1 s
    fired: dict[float, int] = {}
    second = 10.0
    while len(alive.calls.jobs) < 250 and second < 40:
        before = len(alive.calls.jobs)
        alive.run(second)
        if len(alive.calls.jobs) > before:
            fired[second] = len(alive.calls.jobs) - before
        second = round(second + 0.7, 1)  # passes fall at every phase of the two chores
    assert {j.object_id for j in alive.calls.jobs} == ids
    assert max(fired) - min(fired) < 2, f"recovered in one go, not a sweep at a time: {fired}"


def test_the_pause_of_everything_holds_due_calls_until_it_ends(rig: Any) -> None:
    from lambdaop.store.contract import PAUSE_ALL

    r, other = rig(), rig("p2")
    oid = r.task("report", at=r.at(10).isoformat())
    r.run(0)
    other.store.put_setting(
        PAUSE_ALL, {"reason": "incident", "by": "admin", "at": r.at(1)}
    )  # another process
    r.run(2)  # its check of the store
    assert r.loop.firing.paused is not None
    r.run(9.5)
    r.run(10)
    r.run(12)
    assert not r.calls.jobs, "no call starts while everything is paused"
    r.loop.pause_all(None)  # this process's own service ended it: no wait for the next check
    r.run(12.01)
    assert [j.object_id for j in r.calls.jobs] == [oid]


def test_run_now_of_a_held_recurring_object_is_decided_on_the_loop(rig: Any) -> None:
    r = rig()
    oid = r.task("pulse", schedule={"every": "10s"})
    r.run(0)
    r.calls.answer_all()  # the first run: when it is applied
    r.run(0.01)
    r.run(9)  # the next run, at 10 s, is held
    assert r.loop.holds(oid)
    said: list[RunNow] = []

    def decide(record: StoredObject, now: dt.datetime) -> Change:  # as `Operations.run_now` asks it
        progress, what = ondemand.run_now(record.plan, record.progress, now)
        said.append(what)
        return Change(updated=now, progress=progress)

    answer = r.loop.request(Action.DECIDE, oid, decide)
    r.run(9.001)
    assert answer.result(0).record.progress.trigger == "now"
    assert said == [RunNow.EXTRA], "decided once, on the loop's own progress"
    r.run(9.1)
    assert [j.idempotency_key for j in r.calls.jobs] == [f"{oid}-g1-r2-task"]
    r.calls.answer_all()
    r.run(9.2)
    doc = r.store.get(oid)
    assert doc["progress"]["scheduled"] == r.at(10) and doc["progress"]["run"] == 3


def test_a_live_process_whose_renewals_are_late_keeps_its_work(rig: Any) -> None:
    """Its object leases ended (its renewals wait behind slow commits), but its heartbeat goes on:
    nobody takes its calls over, so none is made twice; once its heartbeat ends, they are."""
    slow = rig("p1", lease=dt.timedelta(seconds=6))
    slow.loop.leases.heartbeat = False  # its own heartbeat, as the runtime keeps it
    oid = slow.task("busy", at=slow.at(10).isoformat())
    for second in (0, 9, 10):
        slow.run(second)
    (first,) = slow.calls.jobs  # its call is out, and its loop makes no pass for a while
    alive = rig("p2", lease=dt.timedelta(seconds=6))
    second = 10.0
    while second < 40:
        slow.store.heartbeat("p1", slow.at(second) + dt.timedelta(seconds=6), {"owner": "p1"})
        alive.run(second)
        second += 0.5
    assert not alive.calls.jobs, "a live process's work is not taken over"
    assert slow.store.holders([oid])[oid].owner == "p1"
    for second in (40.5, 47, 50, 53, 56):  # its heartbeat has ended at 45.5
        alive.run(second)
    (again,) = alive.calls.jobs
    assert again.idempotency_key == first.idempotency_key


def test_a_sweep_that_waited_on_a_stalled_store_takes_nothing_over(rig: Any, clock: Any) -> None:
    dead = rig("p1", lease=dt.timedelta(seconds=6))
    dead.task("orphan", at=dead.at(10).isoformat())
    for second in (0, 9, 10):
        dead.run(second)
    alive = rig("p2", lease=dt.timedelta(seconds=6))
    expired = alive.store.store.expired_leases

    def stalled(now: dt.datetime, limit: int = 5000) -> Any:
        clock._mono += 2.0  # the read took 2 s: more than a fifth of the lease
        return expired(now, limit)

    alive.store.store.expired_leases = stalled
    for second in (16.5, 17, 20, 25, 26, 30):
        alive.run(second)
    assert not alive.calls.jobs, "nothing is taken over while the store is stalled"
    alive.store.store.expired_leases = expired
    for second in (31, 34, 37):
        alive.run(second)
    assert len(alive.calls.jobs) == 1


def test_a_suspend_while_a_parallel_step_is_out_takes_effect_when_its_run_ends(rig: Any) -> None:
    r = rig()
    text = """\
kind: TaskSet
metadata: {name: fan}
spec:
  schedule: {every: 10s}
  steps:
    - name: fan
      parallel:
        branches:
          - - {name: a, invoke: 'http://127.0.0.1:9/a'}
          - - {name: b, invoke: 'http://127.0.0.1:9/b'}
"""
    (obj,) = load_one(text)
    oid = r.applier.apply(obj, "alice").id or ""
    r.run(0)
    assert sorted(j.step for j in r.calls.jobs) == ["step:fan/0/a", "step:fan/1/b"]
    assert r.loop.holds(oid)
    answer = r.loop.request(Action.SUSPEND, oid)
    r.run(0.001)
    assert answer.result(0).later, "the suspend is taken while the branches' calls are out"
    r.calls.answer_all()
    r.run(0.1)
    doc = r.store.get(oid)
    assert doc["state"] == "scheduled" and doc["progress"]["run"] == 2
    assert doc["progress"]["suspended"] and "due" not in doc, "the next run does not start"


def test_an_edit_that_comes_while_a_runs_end_is_written_is_not_kept_for_the_next_runs_end(rig: Any) -> None:
    """An edit taken while the result that ends a run is being written waits for that write, then
    is decided on what it wrote: between runs it applies at once. Kept as pending, it waited for
    the end of the next run, and that run went out with the old spec."""
    from lambdaop.engine import machine
    from lambdaop.engine.record import PendingSpec
    from lambdaop.spec.models import spec_hash, spec_json

    r = rig()
    oid = r.task("pulse", schedule={"every": "1s"})
    r.run(0)
    held = r.loop.held.get(oid)
    assert held is not None and held.fired
    (edited,) = load_one(Task.model_validate({"metadata": {"name": "pulse"}, "spec": {"invoke": "http://127.0.0.1:9/v2", "schedule": {"every": "1s"}}}).model_dump_json())  # fmt: skip
    now = r.at(0.001)
    fields = Change(updated=now, spec=spec_json(edited), spec_hash=spec_hash(edited), generation=2, pruned=False, clear_pending=True)  # fmt: skip
    fresh = machine.start(edited.spec, r.at(1), held.progress.salt or 1, now)
    asked: list[Any] = []
    write = r.writer.run_pending

    def edit_then_write(block: bool = False) -> bool:  # the edit comes while the run's end is with the writer
        if not asked and r.writer.backlog:
            assert r.loop.held.get(oid) is not None and r.loop.held.get(oid).writes == 1
            asked.append(r.loop.request(Action.REPLACE, oid, (fields, fresh, PendingSpec(spec_json(edited), spec_hash(edited), 2, now))))  # fmt: skip
        return write(block)

    r.writer.run_pending = edit_then_write  # type: ignore[method-assign]
    r.calls.answer_all()  # the run ends
    for t in (0.001, 0.002, 0.003):
        r.run(t)
    assert asked, "the edit came while the result was being written"
    answer = asked[0]
    assert answer.done()
    record = answer.result(
        0
    ).record  # still held (its next run is within the claim window): applied on the loop
    assert record.generation == 2 and record.pending is None, (
        "applied at once, not kept for the next run's end"
    )
    doc = r.store.get(oid)
    assert doc["generation"] == 2 and not doc.get("pending")
    r.run(1.0)
    assert [j.invoke.url for j in r.calls.jobs] == ["http://127.0.0.1:9/v2"], "the next run calls the new URL"


def test_a_rerun_asked_while_a_run_is_out_is_queued_and_runs_once_that_run_has_ended(rig: Any) -> None:
    import concurrent.futures
    import contextlib

    from lambdaop.app.operate import Operations

    r = rig()
    oid = r.task("pulse", schedule={"every": "10s"}, retries=0)
    r.run(0)
    r.calls.answer_all(ok=False, status=500)  # run 1 fails
    r.run(0.01)
    r.run(9.5)
    r.run(10)  # run 2 is out
    assert [j.idempotency_key for j in r.calls.jobs] == [f"{oid}-g1-r2-task"]
    with concurrent.futures.ThreadPoolExecutor(
        1
    ) as pool:  # the API's thread; the loop's passes are the test's
        asked = pool.submit(Operations(r.service).rerun, oid, "alice", True, 1)
        for _ in range(2000):  # the loop takes the ask on one of its passes
            r.run(10.01)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                done = asked.result(timeout=0.005)
                break
    assert "re-runs run 1 from its failed step once the run going on has ended" in done.message, done.message
    r.calls.answer_all()  # run 2 ends: the re-run of run 1 is next, due now
    r.run(10.02)
    r.run(10.03)
    assert [j.idempotency_key for j in r.calls.jobs] == [f"{oid}-g1-r3-rerun1-task"]
    r.calls.answer_all()
    r.run(10.04)
    doc = r.store.get(oid)
    assert doc["progress"]["scheduled"] == r.at(20) and not doc["progress"].get("reruns"), (
        "the schedule goes on"
    )
    assert [(s["run"], s.get("rerunOf"), s["result"]) for s in doc["runs"]] == [(1, None, "failed"), (2, None, "completed"), (3, 1, "completed")]  # fmt: skip
