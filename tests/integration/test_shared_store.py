"""Several processes sharing one MongoDB: no call is made twice, and a dead process's work is recovered."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from helpers import final, wait_until, with_history
from lambdaop.spec import load_one
from lambdaop.store.mongo import MongoStore
from lambdaop.tools.demo import DemoLambda


def test_two_processes_never_fire_the_same_task_twice(make_runtime, demo: DemoLambda) -> None:
    first = make_runtime()
    second = make_runtime()  # same database, its own loop, owner and lease
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    text = "---\n".join(
        f"kind: Task\nmetadata: {{name: t{i}}}\nspec: {{invoke: '{demo.url}/ok?i={i}', at: '{at}'}}\n"
        for i in range(200)
    )
    # half of them created through each process, so both loops hold them in memory
    ids = [
        (first if i % 2 else second).applier.apply(obj, "admin").id or ""
        for i, obj in enumerate(load_one(text))
    ]
    demo.wait_for(200, "/ok", timeout=30)
    for oid in ids:
        assert final(first, oid)["state"] == "completed"
    queries = [c.query for c in demo.calls("/ok")]
    assert sorted(queries) == sorted(f"i={i}" for i in range(200)), "every Task called exactly once"
    assert first.reconciler.stats.dispatched + second.reconciler.stats.dispatched == 200


def test_a_dead_process_leaves_its_call_to_another_after_the_lease(
    make_runtime, demo: DemoLambda, store_uri: str, database: str, tmp_path: Path
) -> None:
    specs, log = tmp_path / "specs", tmp_path / "a.log"
    specs.mkdir()
    (specs / "slow.yaml").write_text(
        f"kind: Task\nmetadata: {{name: slow}}\nspec: {{invoke: '{demo.url}/sleep?ms=3000'}}\n"
    )
    env = {**os.environ, "LAMBDAOP_MONGODB_URI": store_uri}
    cmd = [sys.executable, "-m", "lambdaop.cli", "serve", "--state-dir", str(tmp_path / "a"), "--specs", str(specs),
           "--lease", "2s", "--port", "0", "--allow-hosts", "127.0.0.1"]  # fmt: skip
    env["LAMBDAOP_DATABASE"] = database
    a = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    try:
        (first_call,) = demo.wait_for(1, "/sleep", timeout=30)
        killed = time.time()
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        if a.poll() is None:
            a.kill()
    b = make_runtime(
        lease=dt.timedelta(seconds=2)
    )  # shares the database; it must not re-run the call before the lease expires
    calls = demo.wait_for(2, "/sleep", timeout=30)
    assert calls[1].idempotency_key == first_call.idempotency_key
    assert calls[1].at - killed >= 1.0, "recovered only once the 2 s lease (renewed at 1/3) had expired"
    doc = wait_until(
        lambda: (
            b.store.find_by_name("admin", "Task", "slow")["state"] == "completed"
            and b.store.find_by_name("admin", "Task", "slow")
        ),
        timeout=20,
    )
    (call,) = with_history(b.store, doc)["attempts"]  # the killed process never reported its call
    assert call["ok"] and call["key"] == first_call.idempotency_key
    assert "lease of" in call["recovered"] and "expired" in call["recovered"]


def test_a_process_killed_mid_run_leaves_no_task_lost_and_exact_counts(
    make_runtime, demo: DemoLambda, store_uri: str, database: str, tmp_path: Path
) -> None:
    """300 Tasks due together on two processes sharing one store; one is killed with -9 just after the due time."""
    specs, log = tmp_path / "specs", tmp_path / "a.log"
    specs.mkdir()
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)
    (specs / "load.yaml").write_text(
        "---\n".join(
            f"kind: Task\nmetadata: {{name: t{i}}}\nspec: {{invoke: '{demo.url}/ok?i={i}', at: '{due.isoformat()}'}}\n"
            for i in range(300)
        )
    )
    env = {**os.environ, "LAMBDAOP_MONGODB_URI": store_uri, "LAMBDAOP_DATABASE": database}
    cmd = [sys.executable, "-m", "lambdaop.cli", "serve", "--state-dir", str(tmp_path / "a"), "--specs", str(specs),
           "--lease", "3s", "--port", "0", "--allow-hosts", "127.0.0.1"]  # fmt: skip
    a = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    try:
        b = make_runtime(lease=dt.timedelta(seconds=3))
        wait_until(lambda: b.store.counts("admin", "Task").get("scheduled") == 300, timeout=30)
        wait_until(lambda: time.time() > due.timestamp() + 0.3, timeout=30)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
    finally:
        if a.poll() is None:
            a.kill()
    wait_until(
        lambda: b.store.counts("admin", "Task").get("completed") == 300, timeout=60, what="all completed"
    )
    calls = demo.calls("/ok")
    by_task: dict[str, list[str]] = {}
    for c in calls:
        by_task.setdefault(c.query, []).append(c.idempotency_key or "")
    assert len(by_task) == 300, "no Task lost"
    assert all(len(keys) <= 2 and len(set(keys)) == 1 for keys in by_task.values()), (
        "at most one repeat, same key"
    )
    real: dict[str, int] = {}
    for doc in b.store.objects.find({"_id": {"$gt": ""}}, {"state": 1}):
        real[doc["state"]] = real.get(doc["state"], 0) + 1
    assert real == {"completed": 300}
    assert {k: v for k, v in b.store.counts("admin", "Task").items() if v} == real, (
        "the counters match a recount"
    )


def test_lease_renewal_does_not_wait_for_a_transaction_writing_one_of_the_leases(store: MongoStore) -> None:
    """Outside a transaction, the embedded server retries a conflicting many-document write
    without end while holding the collection, and the whole store stops; renewal runs in
    transactions of its own and leaves the one lease in conflict for the next renewal."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ids = [f"o{i}" for i in range(10)]
    assert store.claim("me", now + dt.timedelta(seconds=5), ids) == set(ids)
    until = now + dt.timedelta(seconds=60)
    answer: list[set[str]] = []
    other = store.client.start_session()
    try:
        with other.start_transaction():
            store.leases.update_one({"_id": "o3", "owner": "me"}, {"$set": {"until": now}}, session=other)
            renewal = threading.Thread(
                target=lambda: answer.append(store.renew("me", ids, until)), daemon=True
            )
            renewal.start()
            renewal.join(30)
            assert not renewal.is_alive(), "the renewal waited for the open transaction"
            other.abort_transaction()
    finally:
        other.end_session()
    assert answer == [set()], "a lease in conflict is not reported lost"
    renewed = {d["_id"] for d in store.leases.find({"_id": {"$in": ids}, "until": until})}
    assert renewed == set(ids) - {"o3"}


def test_a_stopped_process_s_open_transaction_is_ended_though_it_held_no_lease(
    store_uri: str, database: str, clock: Any
) -> None:
    """A process that died inside a transaction pins what it wrote (and, on the embedded
    server, slows every other writer) until its transaction is ended. The loop driven pass by
    pass with the test clock, on the embedded store (transactions are the store's)."""
    from unit.loop.test_reconciler import Rig

    clock.start = clock.now()
    shared = MongoStore(store_uri, database, embedded=True)
    shared.ensure_indexes()
    try:
        alive = Rig(shared, clock, "p2", lease=dt.timedelta(seconds=6))
        dead = MongoStore(store_uri, database, embedded=True)
        dead.identify("p1")
        dead.heartbeat("p1", alive.at(2), {"owner": "p1"})
        session = dead._session()
        session.start_transaction()
        dead.counters.update_one({"_id": "pinned"}, {"$set": {"n": 1}}, upsert=True, session=session)
        for second in range(0, 10):
            alive.run(second)
        with shared.client.start_session() as mine, mine.start_transaction():
            shared.counters.update_one({"_id": "pinned"}, {"$set": {"n": 2}}, upsert=True, session=mine)
        assert shared.counters.find_one({"_id": "pinned"}) == {"_id": "pinned", "n": 2}
        dead.close()
    finally:
        shared.client.drop_database(database)
        shared.close()
