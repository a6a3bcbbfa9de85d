"""The typed record: read and written back unchanged, and a change merged back exactly as the store applies it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from lambdaop.engine import machine
from lambdaop.engine.outcomes import Outcome
from lambdaop.engine.record import RUNS_KEPT, CallRecord, Change, RunSummary, Source, StoredObject
from lambdaop.spec import Kind, TaskSpec

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def record(**over: Any) -> StoredObject:
    spec = TaskSpec.model_validate({"invoke": "https://example.com/a", "retries": 2})
    progress = machine.start(spec, T0 + dt.timedelta(seconds=5), salt=7)
    base = StoredObject(
        id="0" * 23 + "1",
        kind=Kind.TASK,
        owner="alice",
        name="hello",
        spec=spec.model_dump(mode="json", exclude_none=True),
        progress=progress,
        due=progress.due,
        spec_hash="abc",
        created=T0,
        updated=T0,
        labels={"team": "billing"},
        source=Source(file="a.yaml", line=3, document=0, folder="/specs"),
        manager="folder:/specs",
    )
    return replace(base, **over)


def store_applies(doc: dict[str, Any], change: Change) -> dict[str, Any]:
    """What the store does with a change (MongoDB's $set, $unset, $push with $slice, $inc fence)."""
    out = {**doc, **change.sets(), "fence": doc["fence"] + 1}
    for name in change.unsets():
        out.pop(name, None)
    for name, (items, keep) in change.pushes().items():
        out[name] = (out.get(name, []) + items)[-keep:]
    return out


def test_a_record_reads_back_what_it_wrote() -> None:
    r = record(
        last=CallRecord("task", 1, T0, True, key="k", status=200, next_delay_ms=5.0, delay_reason="why")
    )
    again = StoredObject.from_storage(r.for_storage())
    assert again == r
    assert again.plan == r.plan and again.label == "Task alice/hello" and again.managed_by == "folder:/specs"


def test_a_change_merged_back_is_what_the_store_holds_after_it() -> None:
    r = record()
    called = machine.dispatch(r.progress, T0 + dt.timedelta(seconds=5))
    ended = machine.finish(r.plan, called, Outcome(False, "status 500"), T0 + dt.timedelta(seconds=6))
    call = CallRecord("task", 1, T0 + dt.timedelta(seconds=5), False, status=500, error="status 500")
    for change in (
        Change(updated=T0, progress=replace(ended, in_flight=False), last=call),
        Change(updated=T0, progress=called, keep_due=True),  # a call that has started: `due` stays
        Change(updated=T0, progress=replace(called, due=None)),  # nothing due: `due` goes
        Change(updated=T0, pruned=True, manager="api:alice", source=Source(file="b.yaml")),
        Change(updated=T0, spec={**r.spec, "retries": 5}, spec_hash="def", generation=2),
    ):
        stored = StoredObject.from_storage(store_applies(r.for_storage(), change))
        assert change.applied_to(r) == stored, change
    assert Change(updated=T0, progress=replace(called, due=None)).unsets() == ("due", "paused")
    paused = Change(updated=T0, progress=replace(called, due=None, suspended=True))
    assert paused.unsets() == ("due",) and paused.sets()["paused"] == T0


def test_runs_are_kept_to_the_newest_hundred_in_the_store_and_the_record() -> None:
    r = record(runs=tuple(RunSummary(i, result="completed") for i in range(RUNS_KEPT)))
    change = Change(updated=T0, run=RunSummary(RUNS_KEPT, result="failed", reason="status 500"))
    merged = change.applied_to(r)
    assert merged == StoredObject.from_storage(store_applies(r.for_storage(), change))
    assert (
        len(merged.runs) == RUNS_KEPT and merged.runs[-1].run == RUNS_KEPT and merged.last_run == change.run
    )


def test_a_new_spec_is_read_again() -> None:
    r = record()
    assert r.plan.retries == 2
    changed = Change(updated=T0, spec={**r.spec, "retries": 5}).applied_to(r)
    assert changed.plan.retries == 5 and r.plan.retries == 2
