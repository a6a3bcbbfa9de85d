"""POSTs to the callback URLs of waitForCallback steps: check the token, then change the object.

`Callbacks.post` reads the token (a wrong or forged one is `Forbidden`, and
so is one for a wait that is not going on: used already, or superseded by a
retry), then changes the object through the service, as any change is made:
through the loop when it holds the object, else through the store, fenced.
What the POST means is `engine.callbacks.judge`'s: `success` or `failure`
ends the wait (the callback's `output` becomes `steps.NAME.output`), a
`heartbeat` moves its end later, and one for a wait that timed out is
recorded in the history and ignored (`Gone`). A callback that ends the run
(the wait was its last step, or it failed with no fallback) writes the run's
summary and its record in the runs list with it. Called by the API.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Any

from lambdaop.core.clock import Clock, iso
from lambdaop.core.errors import Conflict, Forbidden, Gone, NotFound, PayloadTooLarge
from lambdaop.core.logs import about
from lambdaop.engine import callbacks, outputs, recurring, runs
from lambdaop.engine.callbacks import Verdict
from lambdaop.engine.outputs import MAX_OUTPUT, StepOutput
from lambdaop.engine.record import CallRecord, Change, RunSummary, StoredObject
from lambdaop.loop.callbacks import CallbackUrls
from lambdaop.loop.events import Action
from lambdaop.spec import Notify

log = logging.getLogger("lambdaop.app")

STATUSES = ("success", "failure", "heartbeat")
REFUSED = "this callback URL is not valid, or is no longer awaited"
BUSY = "the object is being written; send the callback again shortly"
BUSY_TRIES = 60  # 3 s


@dataclass(frozen=True)
class Callback:
    """What a POST to a callback URL says."""

    status: str  # success, failure or heartbeat
    output: Any = None
    error: str | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    verdict: str  # accepted, extended
    state: str
    waiting_until: str | None = None


class _Refused(Exception):
    def __init__(self, verdict: Verdict, why: str) -> None:
        super().__init__(why)
        self.verdict = verdict


class Callbacks:
    def __init__(
        self, service: Any, urls: CallbackUrls | None, clock: Clock, notify: Notify | None = None
    ) -> None:
        self.service, self.urls, self.clock, self.notify = service, urls, clock, notify
        self._pause = threading.Event()  # never set: waits between tries

    def post(self, token: str, callback: Callback) -> CallbackAnswer:
        found = self.urls.read(token) if self.urls is not None else None
        if found is None:
            raise Forbidden(REFUSED)
        object_id, wait = found
        if outputs.size_of(callback.output) > MAX_OUTPUT:
            raise PayloadTooLarge(f"output: at most {MAX_OUTPUT} bytes (as JSON) are kept")
        judged: list[Verdict] = []

        def decide(record: StoredObject, now: dt.datetime) -> Change:
            verdict = callbacks.judge(record.plan, record.progress, record.generation, wait, callback.status, callback.error, now, self.notify)  # fmt: skip
            judged.append(verdict.verdict)
            if verdict.verdict is Verdict.LATE:
                step, attempt = _step_of(wait)
                late = CallRecord(step=f"callback:{step}", attempt=attempt, at=now, ok=callback.status == "success", generation=record.generation, error="arrived after the wait had timed out; ignored")  # fmt: skip
                return Change(updated=now, last=late)
            if verdict.progress is None:
                raise _Refused(verdict.verdict, verdict.why)
            if verdict.verdict is Verdict.EXTENDED:
                return Change(updated=now, progress=verdict.progress)
            return self._accepted(record, verdict.progress, callback, now)

        try:
            answer = self._change(object_id, decide)
        except NotFound:
            raise Forbidden(REFUSED) from None
        except _Refused:
            raise Forbidden(REFUSED) from None
        record = answer.record
        if judged and judged[-1] is Verdict.LATE:
            log.info("%s: a callback came after its wait timed out; recorded and ignored", record.label, extra=about(record))  # fmt: skip
            raise Gone("the wait for this callback timed out before it came; it is recorded and ignored")
        verdict = judged[-1].value if judged else "accepted"
        log.info("%s: callback %s (%s)", record.label, callback.status, verdict, extra=about(record))
        return CallbackAnswer(verdict, record.state, iso(record.progress.waiting_until))

    def _change(self, object_id: str, decide: Any) -> Any:
        """The change, tried again for a moment while the loop is writing the object (its call's
        answer, say: a quick target calls back while that is being written)."""
        for _ in range(BUSY_TRIES - 1):
            try:
                return self.service.change(object_id, None, None, Action.CALLBACK, decide, decide)
            except Conflict as exc:
                if str(exc) != BUSY:
                    raise
                self._pause.wait(0.05)
        return self.service.change(object_id, None, None, Action.CALLBACK, decide, decide)

    def _accepted(self, record: StoredObject, progress: Any, callback: Callback, now: dt.datetime) -> Change:
        """The wait ended as the callback said: its output is the step's, and the history has it."""
        before = record.progress
        step = before.step.partition(":")[2]
        ok = callback.status == "success"
        error = None if ok else (callback.error or "the callback said failure")
        called = outputs.current(record.outputs, before.run, record.generation).get(step)
        new = StepOutput(callback.output, called.status if called else None, before.attempt, ok, before.run, record.generation, outputs.size_of(callback.output))  # fmt: skip
        kept, too_much = outputs.with_output(record.outputs, step, new)
        run = before.run if record.recurring else None
        call = CallRecord(step=f"callback:{step}", attempt=before.attempt, at=now, ok=ok, generation=record.generation, error=error or too_much, run=run)  # fmt: skip
        early = progress.answered is not None  # its call is still out: the stored due time stays
        summary = recurring.run_summary(before, progress) if record.recurring else None  # a run it ended
        ended = runs.ended_by(record, before, progress, now, call)
        return Change(updated=now, progress=progress, keep_due=early, last=call, outputs=kept if too_much is None else None,
                      run=RunSummary(**summary) if summary else None, ended=ended.for_storage() if ended else None)  # fmt: skip


def _step_of(wait: str) -> tuple[str, int]:
    """The step and attempt a wait's nonce names (`GENERATION.RUN.ATTEMPT.STEP`)."""
    parts = wait.split(".", 3)
    return (parts[3], int(parts[2])) if len(parts) == 4 and parts[2].isdigit() else (wait, 1)
