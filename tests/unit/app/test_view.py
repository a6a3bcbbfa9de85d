"""One view of a stored object: what `present` shows is what `ObjectOut` documents, and the
status file's entry is a selection of it."""

from __future__ import annotations

import datetime as dt

from lambdaop.app.status import object_entry
from lambdaop.app.view import SUMMARY, Coming, ObjectOut, Paused, present
from lambdaop.engine import machine
from lambdaop.engine.record import CallRecord, RunSummary, StoredObject
from lambdaop.spec import Kind, TaskSpec
from lambdaop.store.contract import DueEntry

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def recurring() -> StoredObject:
    spec = TaskSpec.model_validate(
        {"invoke": {"url": "https://u:secret@example.com/a", "headers": {"Authorization": "Bearer x"}},
         "schedule": {"every": "1m"}}
    )  # fmt: skip
    progress = machine.start(spec, T0, salt=1, now=T0)
    return StoredObject(
        id="0" * 23 + "2", kind=Kind.TASK, owner="alice", name="pulse",
        spec=spec.model_dump(mode="json", exclude_none=True), progress=progress, due=progress.due,
        created=T0, updated=T0, last=CallRecord("task", 1, T0, True, status=200, run=1),
        last_run=RunSummary(1, T0, T0, T0, "completed"), runs=(RunSummary(1, T0, T0, T0, "completed"),),
    )  # fmt: skip


def test_every_field_shown_is_documented() -> None:
    record = recurring()
    view = present(record, history=[record.last] if record.last else [], live="running")
    assert set(view) <= set(ObjectOut.model_fields), set(view) - set(ObjectOut.model_fields)
    assert set(SUMMARY) <= set(ObjectOut.model_fields)
    ObjectOut.model_validate(view)


def test_secrets_are_masked_and_others_see_a_summary() -> None:
    view = present(recurring())
    assert view["spec"]["invoke"]["url"] == "https://u:***@example.com/a"
    assert view["spec"]["invoke"]["headers"]["Authorization"] == "***"
    other = present(recurring(), viewer="bob")
    assert other["redacted"] and "spec" not in other and "last" not in other


def test_the_status_entry_is_taken_from_the_view() -> None:
    record = recurring()
    view, entry = present(record), object_entry(record)
    assert entry["nextRun"] == view["due"] and entry["lastCall"]["at"] == view["last"]["at"]
    assert entry["lastRun"] == {"run": 1, "result": "completed", "finished": view["lastRun"]["finished"]}


def test_the_dashboards_rows_show_the_display_name_and_a_suspended_objects_reason() -> None:
    coming = Coming.of(DueEntry("0" * 23 + "1", "Task", "report", T0, display="Monthly report"))
    assert (coming.name, coming.recurring, coming.runs(T0, 5)) == ("Monthly report", False, [T0])
    doc = {"_id": "0" * 23 + "2", "owner": "alice", "kind": "TaskSet", "name": "pulse", "progress": {"pause_reason": "vendor outage"}}  # fmt: skip
    assert Paused.from_storage(doc).shown() == {"id": "0" * 23 + "2", "kind": "TaskSet", "name": "pulse", "reason": "vendor outage"}  # fmt: skip
    assert Paused.from_storage({**doc, "display": "Pulse", "progress": {}}).shown()["name"] == "Pulse"
    assert Paused.from_storage({**doc, "progress": {}}).reason is None
