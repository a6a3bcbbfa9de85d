"""Acting on many objects at once: pausing and resuming by label selector, owner and kind; the
pause of everything (an admin's kill switch); re-running the failed runs of a time range.

A selection is read as bounded pages of the lists (`Store.list_objects`: an
owner's scheduled and running objects of each kind, through the label index
when a selector is given), at most `MAX_BULK` objects a request; the answer's
`next` carries on from where it stopped. Each object is then changed on its
own through `Operations` (so one the loop holds never races its call). The
pause of everything is one setting in the store that every loop reads (its
own at once, the others' within a second): no call starts while it is on, and
nothing of the objects is written, so it is as fast with a million objects as
with one. Called by the API.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from lambdaop.app.operate import Operations
from lambdaop.app.service import is_object_id
from lambdaop.core.clock import iso
from lambdaop.core.errors import Conflict, NotFound, Problem, SpecInvalid
from lambdaop.core.labels import Selector
from lambdaop.engine.record import StoredObject
from lambdaop.engine.runs import RunRecord
from lambdaop.spec import Kind
from lambdaop.store.contract import PAUSE_ALL

log = logging.getLogger("lambdaop.service")

MAX_BULK = 500  # objects one request changes at most (its `next` goes on)
STATES = ("scheduled", "running")  # the states a pause or a resume is about


@dataclass(frozen=True)
class Selection:
    """Which objects a bulk request is about: an owner's, of these kinds, whose labels match."""

    owner: str
    kinds: tuple[Kind, ...] = (Kind.TASK, Kind.TASKSET)
    selector: Selector | None = None


@dataclass
class BulkAnswer:
    """What a bulk request did (or, dry, would do), object by object, and where the next one goes on."""

    done: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    next: str | None = None

    def as_dict(self, verb: str, dry_run: bool) -> dict[str, Any]:
        return {verb: self.done, "refused": self.refused, "next": self.next, "dryRun": dry_run}


def _row(record: StoredObject, message: str) -> dict[str, Any]:
    return {"id": record.id, "kind": record.kind.value, "name": record.name, "owner": record.owner, "message": message}  # fmt: skip


def _run_row(run: RunRecord, message: str) -> dict[str, Any]:
    return {"id": run.object_id, "kind": run.kind, "name": run.name, "owner": run.owner, "run": run.run, "finished": iso(run.finished), "message": message}  # fmt: skip


def _which(run: RunRecord) -> str:
    return f"run {run.run}" if run.run is not None else f"generation {run.generation}"


class Bulk:
    def __init__(self, operations: Operations) -> None:
        self.operations = operations
        self.service = operations.service

    # ----- the pause of everything

    def paused_all(self) -> dict[str, Any] | None:
        """The pause of everything, when it is on: {reason, by, at}."""
        with self.service.read():
            setting = self.service.store.get_setting(PAUSE_ALL)
        return {**setting, "at": iso(setting.get("at"))} if setting else None

    def pause_all(self, by: str, reason: str) -> dict[str, Any]:
        """No call of anybody starts until `resume_all` (calls out finish; due ones wait)."""
        if not reason.strip():
            raise SpecInvalid("invalid request", [Problem("say why everything is paused (it is shown on every object)", field="reason")])  # fmt: skip
        now = self.service.now()
        setting: dict[str, Any] = {"reason": reason.strip(), "by": by, "at": now}
        with self.service.read():
            self.service.store.put_setting(PAUSE_ALL, setting)
        self.service.loop.pause_all(setting)
        log.warning("everything paused by %s: %s", by, setting["reason"])
        return {**setting, "at": iso(now)}

    def resume_all(self, by: str) -> None:
        with self.service.read():
            self.service.store.put_setting(PAUSE_ALL, None)
        self.service.loop.pause_all(None)
        log.warning("the pause of everything ended by %s", by)

    # ----- by selector

    def pause(self, which: Selection, reason: str | None, dry_run: bool, cursor: str | None) -> BulkAnswer:
        def act(record: StoredObject) -> str:
            return self.operations.pause(record.id, which.owner, reason).message

        return self._each(which, cursor, lambda r: not r.progress.suspended, act, dry_run, "would be paused")

    def resume(self, which: Selection, skip: bool, dry_run: bool, cursor: str | None) -> BulkAnswer:
        def act(record: StoredObject) -> str:
            return self.operations.unpause(record.id, which.owner, skip).message

        return self._each(which, cursor, lambda r: r.progress.suspended, act, dry_run, "would be resumed")

    def rerun(
        self,
        which: Selection,
        since: dt.datetime,
        until: dt.datetime | None,
        from_failed: bool,
        dry_run: bool,
        cursor: str | None,
    ) -> BulkAnswer:
        """Re-run the failed runs that ended in [since, until) of the objects selected, a row per
        run: every such run of a recurring object, one after another, oldest first
        (`Operations.rerun_runs`); a one-time object's failed run when it has not run again since."""
        if cursor is not None and not is_object_id(cursor):
            raise SpecInvalid("invalid request", [Problem("expected the `next` of a previous answer to the same request", field="cursor")])  # fmt: skip
        out = BulkAnswer()
        kind = which.kinds[0].value if len(which.kinds) == 1 else None
        found: dict[str, list[RunRecord]] = {}  # by object, newest first
        count, before = 0, cursor
        while count < MAX_BULK:
            runs, before = self.operations.runs(
                which.owner, "failed", since, before, 100, which.selector, kind
            )
            for run in runs:
                if until is None or run.finished < until:
                    found.setdefault(run.object_id, []).append(run)
                    count += 1
            if before is None:
                break
        out.next = before
        for oid, newest_first in found.items():
            runs = newest_first[::-1]
            if runs[0].run is None:  # a one-time object: only its latest failed run can run again
                out.refused += [_run_row(run, "a later run of it failed too: only its latest run can run again") for run in runs[:-1]]  # fmt: skip
                if dry_run:
                    out.done.append(_run_row(runs[-1], f"would re-run {_which(runs[-1])} (failed {iso(runs[-1].finished)}: {runs[-1].reason})"))  # fmt: skip
                else:
                    self._rerun_one_time(oid, which.owner, runs[-1], from_failed, out)
                continue
            try:
                _, done, refused = self.operations.rerun_runs(oid, which.owner, from_failed, [r.run or 0 for r in runs], runs[0].kind, dry_run)  # fmt: skip
            except (Conflict, NotFound) as exc:
                out.refused += [_run_row(run, exc.message) for run in runs]
                continue
            for run in runs:
                if run.run in done:
                    out.done.append(_run_row(run, done[run.run]))
                else:
                    out.refused.append(_run_row(run, refused.get(run.run or 0, "not re-run")))
        return out

    def _rerun_one_time(self, object_id: str, owner: str, run: RunRecord, from_failed: bool, out: BulkAnswer) -> None:  # fmt: skip
        try:
            current = self.service.get(object_id, owner)
            if current.generation != run.generation or current.progress.rerun != (run.rerun or 0):
                raise Conflict("it has run again since that run failed")
            out.done.append(_run_row(run, self.operations.rerun(object_id, owner, from_failed).message))
        except (Conflict, NotFound) as exc:
            out.refused.append(_run_row(run, exc.message))

    def _each(self, which: Selection, cursor: str | None, wanted: Any, act: Any, dry_run: bool, dry: str) -> BulkAnswer:  # fmt: skip
        out = BulkAnswer()
        records, out.next = self.select(which, cursor)
        for record in records:
            if not wanted(record):
                continue
            if dry_run:
                out.done.append(_row(record, dry))
                continue
            try:
                out.done.append(_row(record, act(record)))
            except (Conflict, NotFound) as exc:
                out.refused.append(_row(record, exc.message))
        return out

    def select(self, which: Selection, cursor: str | None) -> tuple[list[StoredObject], str | None]:
        """Up to MAX_BULK of the selected objects, and the cursor of the rest (None: no more)."""
        kind_at, state_at, before = _cursor(cursor, len(which.kinds))
        found: list[StoredObject] = []
        for k in range(kind_at, len(which.kinds)):
            for s in range(state_at if k == kind_at else 0, len(STATES)):
                start = before if (k, s) == (kind_at, state_at) else None
                while True:
                    left = MAX_BULK - len(found)
                    page, following = self.service.page(which.kinds[k], which.owner, STATES[s], start, min(left, 500), which.selector)  # fmt: skip
                    found += page
                    if following is None:
                        break
                    if len(found) >= MAX_BULK:
                        return found, f"{k}.{s}.{following}"
                    start = following
        return found, None


def _cursor(text: str | None, kinds: int) -> tuple[int, int, str | None]:
    if not text:
        return 0, 0, None
    try:
        k, s, rest = text.split(".", 2)
        kind_at, state_at = int(k), int(s)
        if not (0 <= kind_at < kinds and 0 <= state_at < len(STATES)) or (rest and not is_object_id(rest)):
            raise ValueError
    except ValueError:
        raise SpecInvalid("invalid request", [Problem("expected the `next` of a previous answer to the same request", field="cursor")]) from None  # fmt: skip
    return kind_at, state_at, rest or None
