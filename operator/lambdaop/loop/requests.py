"""Changes the service asks of objects the loop holds: cancel, modify, replace, suspend, resume, set, decide, callback.

An object held for its imminent call is changed only here, on the loop's
thread, so a change can never race the call: either the call is withdrawn
(the change is written first) or it has already left, and the change is
refused with the reason. `plan` answers what to write, or None when the
change waits for the run going on (a suspend), or raises `Refused`. Pure
apart from the held object's flag. Called by reconciler.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from lambdaop.core.errors import Conflict
from lambdaop.engine import changes
from lambdaop.engine.progress import Phase, Progress, Refused
from lambdaop.engine.record import Change
from lambdaop.loop.events import Action, Answer, Request, Write
from lambdaop.loop.held import Held, Holdings
from lambdaop.loop.writes import Writes

BUSY = "the object is being written; send the callback again shortly"


class NotHeld(Exception):
    """The loop does not hold that object (any more): change it through the store."""


@dataclass(frozen=True)
class Planned:
    """A write a request makes: why, the progress after it, the change, and whether the lease stays."""

    why: Write
    progress: Progress
    change: Change
    keep: bool = False


def plan(held: Held, action: Action, payload: Any, now: dt.datetime) -> Planned | None:
    """What `action` does to this held object (`payload` as `Service` sends it)."""
    if action is Action.SET:
        extra: Change = payload
        return Planned(Write.SET, held.progress, replace(extra, updated=now), keep=True)
    busy = held.fired or held.writes > 0
    if action is Action.DECIDE:
        return _decided(held, payload, busy, now)
    if action is Action.CALLBACK:  # the payload decides, from the object as the loop has it
        if held.writes > 0:
            raise Refused(BUSY)
        change = payload(replace(held.record, progress=held.progress), now)
        if held.fired:  # it came while the call is out: kept, and the call's answer applies it
            held.progress = change.progress or held.progress
            return Planned(Write.SET, held.progress, replace(change, keep_due=True), keep=True)
        return Planned(Write.CALLBACK, change.progress or held.progress, change, keep=change.progress is None)
    if action is Action.SUSPEND and busy:  # takes effect when this run ends
        held.suspend_after = True
        return None
    if action is Action.REPLACE and (busy or held.progress.phase is not Phase.SCHEDULED):
        _, _, waiting = payload  # a run is going on: the edit waits for it to end
        return Planned(Write.SET, held.progress, Change(updated=now, pending=waiting), keep=True)
    if busy:
        verb = "cancelled" if action is Action.CANCEL else "modified"
        stored = replace(held.progress, phase=Phase(held.record.state))
        raise Refused(changes.not_scheduled(stored, verb))
    if action is Action.CANCEL:
        new = changes.cancel(held.progress, now)
        base: Change = payload or Change(updated=now)
        return Planned(Write.CANCEL, new, replace(base, updated=now, progress=new))
    if action is Action.MODIFY:
        new = changes.reschedule(held.progress, payload)
        return Planned(Write.MODIFY, new, Change(updated=now, progress=new))
    if action is Action.REPLACE:
        fields, fresh, _ = payload
        return Planned(Write.REPLACE, fresh, replace(fields, updated=now, progress=fresh))
    if action is Action.SUSPEND:
        new = changes.suspend(held.plan, held.progress)
        return Planned(Write.SUSPEND, new, Change(updated=now, progress=new))
    if action is Action.RESUME:
        new = changes.resume(held.plan, held.progress, now)
        return Planned(Write.RESUME, new, Change(updated=now, progress=new))
    raise ValueError(f"unknown request {action}")


def _decided(held: Held, decide: Any, busy: bool, now: dt.datetime) -> Planned | None:
    """A person's ask, decided on the loop's own progress. While the call is out its answer only
    marks what follows the run (a run now queued, a backfill, a pause), kept until the result is
    written (the desk holds an ask back while a write of the object is under way)."""
    change: Change = decide(replace(held.record, progress=held.progress, due=held.progress.due), now)
    if busy:
        if change.progress is not None:
            held.progress = change.progress
        return None
    return Planned(Write.DECIDE, change.progress or held.progress, replace(change, updated=now))


class Desk:
    """Takes requests: plans and writes them for held objects, keeps those for objects being
    claimed until the claim is back, and answers NotHeld for the rest."""

    def __init__(self, held: Holdings, claiming: set[str], writes: Writes) -> None:
        self.held, self.claiming, self.writes = held, claiming, writes
        self._waiting: dict[str, list[Request]] = {}

    def take(self, req: Request, now: dt.datetime) -> None:
        held = self.held.get(req.id)
        if held is None:
            if req.id in self.claiming:
                self._waiting.setdefault(req.id, []).append(req)
            else:
                req.future.set_exception(NotHeld(req.id))
            return
        if held.writes and (req.action is Action.DECIDE or (req.action is Action.REPLACE and (held.results_out or not held.fired))):  # fmt: skip
            # decided on the progress once the write lands: an edit that comes while a run's end is
            # being written applies at once after it, instead of waiting for the next run to end
            held.asks.append(req)
            return
        try:
            planned = plan(held, req.action, req.payload, now)
        except Refused as exc:
            req.future.set_exception(Conflict(str(exc)))
            return
        except Exception as exc:  # a callback's decision refused it: the service answers why
            req.future.set_exception(exc)
            return
        if planned is None:
            req.future.set_result(Answer(held.record, later=True))
        elif planned.why is Write.SET and planned.change.pending is not None:
            self.writes.submit(held, planned.why, planned.progress, planned.change, now, planned.keep, req.future, later=True)  # fmt: skip
        else:
            calls = (planned.change.last,) if planned.change.last is not None else ()
            self.writes.submit(held, planned.why, planned.progress, planned.change, now, planned.keep, req.future, calls=calls)  # fmt: skip

    def landed(self, held: Held) -> list[Request]:
        """A write of this object was answered: the asks held back for it, to be taken again."""
        if held.writes:
            return []
        asks, held.asks = held.asks, []
        return asks

    def claimed(self, ids: list[str]) -> list[Request]:
        """The claims of these objects are back: their waiting requests, to be taken again."""
        return [req for oid in ids for req in self._waiting.pop(oid, [])]
