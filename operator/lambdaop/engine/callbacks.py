"""Waits for a callback: the signed single-use tokens of their URLs, and what a POST to one does.

A `waitForCallback` step calls its target with `${{ callback.url }}`; once the
call has succeeded the step waits (`Progress.waiting_until`, also the object's
due time, so no lease is held meanwhile) until the URL is POSTed to, or the
wait times out. A token is `OBJECT.WAIT.SIGNATURE`: the object's id, the wait
it is for (`nonce`: generation, run (and re-run), attempt and step, so every
attempt of every run has its own) and an HMAC-SHA256 of both with the service's callback
secret. It is single-use because it is good only while its object waits for
exactly that wait: once answered (or timed out, or retried with a new
attempt) the object no longer does, and the same token is refused. What a
POST means is `judge`'s answer: the progress after it (the step succeeded,
failed, or waits longer after a heartbeat), or why it is refused. A callback
that comes while the call that handed its URL out is still out (a quick
target) is kept in the progress (`answered`), and the call's answer applies it. Pure: no
I/O, no clock. Called by the loop (URLs, timeouts) and the app (POSTs).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass, replace
from enum import StrEnum

from lambdaop.engine import machine
from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.engine.progress import PlanSpec, Progress
from lambdaop.spec import Notify, TaskSetSpec, WaitForCallback, format_duration

EXPIRED_KEPT = 5  # waits that timed out, remembered so a late callback is recorded rather than refused


def nonce(generation: int, progress: Progress) -> str:
    """Which wait a token is for: the step's current attempt of this run of this generation (a
    re-run of a one-time object's run says which re-run, as its Idempotency-Key does)."""
    run = f"{progress.run}-rerun{progress.rerun}" if progress.trigger == "rerun" and progress.rerun else str(progress.run)  # fmt: skip
    return f"{generation}.{run}.{progress.attempt}.{progress.step.partition(':')[2]}"


def _mac(secret: bytes, object_id: str, wait: str) -> str:
    digest = hmac.new(secret, f"{object_id}.{wait}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: bytes, object_id: str, wait: str) -> str:
    """The token of a wait's callback URL."""
    return f"{object_id}.{wait}.{_mac(secret, object_id, wait)}"


def read(secret: bytes, token: str) -> tuple[str, str] | None:
    """(object id, wait) of a token signed with `secret`, else None (a wrong or forged token)."""
    object_id, _, rest = token.partition(".")
    wait, _, mac = rest.rpartition(".")
    if (
        not object_id
        or not wait
        or not hmac.compare_digest(mac.encode(), _mac(secret, object_id, wait).encode())
    ):
        return None
    return object_id, wait


def wait_of(spec: PlanSpec, step: str) -> WaitForCallback | None:
    """The waitForCallback of a step (None for any other step)."""
    if not isinstance(spec, TaskSetSpec) or spec.steps is None or not step.startswith("step:") or "/" in step:
        return None
    return spec.step_named(step.partition(":")[2]).waitForCallback


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the wait ended: success or failure, as the callback said
    EXTENDED = "extended"  # a heartbeat: it waits longer
    LATE = "late"  # for a wait that timed out: recorded, and ignored
    REFUSED = "refused"  # a token for a wait that is not going on (used already, or never was)


@dataclass(frozen=True)
class Judged:
    verdict: Verdict
    progress: Progress | None = None  # after it (accepted, extended)
    why: str = ""


def judge(
    spec: PlanSpec,
    progress: Progress,
    generation: int,
    wait: str,
    status: str,
    error: str | None,
    now: dt.datetime,
    notify: Notify | None = None,
) -> Judged:
    """What a POST of `status` (success, failure, heartbeat) to the URL of `wait` does now."""
    waiting = wait_of(spec, progress.step)
    if wait in progress.expired:
        return Judged(
            Verdict.LATE, why="the wait timed out before this callback came; it is recorded and ignored"
        )
    if waiting is None or nonce(generation, progress) != wait or progress.final:
        return Judged(Verdict.REFUSED, why="this callback URL is not (or no longer) awaited")
    if progress.waiting_until is None:  # its call is out (or is made again): the call's answer applies it
        if status == "heartbeat":
            return Judged(Verdict.EXTENDED, progress)
        if progress.answered is not None:
            return Judged(Verdict.REFUSED, why="this callback URL has been answered already")
        said = "success" if status == "success" else f"failure:{error or ''}"
        return Judged(Verdict.ACCEPTED, replace(progress, answered=said))
    if status == "heartbeat":
        until = max(progress.waiting_until, now + (waiting.heartbeat or waiting.timeout))
        return Judged(Verdict.EXTENDED, replace(progress, waiting_until=until, due=until))
    ok = status == "success"
    outcome = Outcome(
        ok, None if ok else (error or "the callback said failure"), None if ok else Failure.BODY
    )
    after = machine.finish(spec, progress, outcome, now, notify)
    return Judged(Verdict.ACCEPTED, replace(after, waiting_until=None))


def time_out(
    spec: PlanSpec, progress: Progress, generation: int, now: dt.datetime, notify: Notify | None = None
) -> tuple[Progress, str]:
    """The wait passed its end with no callback: a `timeout` failure of the step (retried, then the
    fallback). Answers the progress and the error the history shows."""
    waiting = wait_of(spec, progress.step)
    what = format_duration(waiting.timeout) if waiting is not None else "its timeout"
    error = f"no callback within {what}"
    after = machine.finish(spec, progress, Outcome(False, error, Failure.TIMEOUT), now, notify)
    expired = (*progress.expired, nonce(generation, progress))[-EXPIRED_KEPT:]
    return replace(after, waiting_until=None, expired=expired), error
