"""The log line of a stored result: one per call, and one when a run ends.

`Task admin/hello completed after 1 attempt (200) in 4 ms [id …]`. A result
is logged once it is durable, so a line never tells of a call whose result
could still be lost. Called by reconciler.
"""

from __future__ import annotations

import logging

from lambdaop.core.logs import about
from lambdaop.engine.progress import Progress
from lambdaop.engine.record import StoredObject
from lambdaop.engine.steps import is_notice, notice_event

log = logging.getLogger("lambdaop.loop")


def log_result(record: StoredObject, progress: Progress) -> None:
    last = record.last
    if last is None:
        return
    fields = about(record, last.step, last.attempt)
    took = last.duration_ms
    spent = f" in {took:.0f} ms" if isinstance(took, int | float) else ""
    status = f" ({last.status})" if last.status else ""
    if is_notice(last.step):
        what = "failure" if last.step == "notify" else notice_event(last.step)
        done = "delivered" if last.ok else "failed" if progress.step != last.step else "pending"
        log.info("%s: %s notification %s%s%s", record.label, what, done, status, spent, extra=fields)
        return
    ended = (
        progress.final
        or progress.run > (last.run or progress.run)
        or (progress.notify and is_notice(progress.step))
    )
    if ended:
        result = progress.last_result or progress.phase.value
        attempts = last.attempt
        run = f" run {last.run}" if last.run else ""
        why = f": {progress.last_reason}" if result == "failed" and progress.last_reason else ""
        log.info("%s%s %s after %s attempt%s%s%s%s", record.label, run, result, attempts, "" if attempts == 1 else "s", status, spent, why, extra=fields)  # fmt: skip
    else:
        outcome = "ok" if last.ok else f"failed: {last.error}"
        retry = f"; next try in {last.next_delay_ms / 1000:g}s ({last.delay_reason})" if last.next_delay_ms is not None else ""  # fmt: skip
        log.info("%s: %s attempt %s %s%s", record.label, last.step, last.attempt, outcome, retry, extra=fields)  # fmt: skip
