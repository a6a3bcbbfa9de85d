"""How long to wait before a failed call is tried again, and why (pure: no clock, no randomness).

`delay(policy, attempt, outcome, salt, step)` answers None when the call is
not retried (its budget is used up, or `retryOn` leaves this kind of failure
out), else the wait and the reason recorded with the attempt:

- `retryDelay`, times `backoff.factor` per earlier retry, capped at `backoff.max`;
- `jitter: full` takes a repeatable fraction of that wait (per object, step and attempt);
- a `Retry-After` on a 429 or 503 sets the wait instead, capped at `backoff.max` or 15 minutes.

Called by machine.
"""

from __future__ import annotations

import datetime as dt

from lambdaop.engine.outcomes import Failure, Outcome
from lambdaop.engine.recurrence import fraction
from lambdaop.spec import RETRY_ON, RetryFields, format_duration

RETRY_AFTER_CAP = dt.timedelta(minutes=15)


def delay(
    policy: RetryFields, attempt: int, outcome: Outcome, salt: int, step: str
) -> tuple[dt.timedelta, str] | None:
    """The wait before attempt `attempt + 1` of this step, with its reason; None when not retried."""
    if attempt > policy.retries:
        return None
    kinds = policy.retryOn or list(RETRY_ON)
    if policy.retryOn is not None and (outcome.failure or "") not in kinds:
        return None
    cap = policy.backoff.max if policy.backoff and policy.backoff.max else None
    if outcome.retry_after is not None and outcome.failure in (Failure.THROTTLED, Failure.SERVER):
        wait = min(dt.timedelta(seconds=max(0.0, outcome.retry_after)), cap or RETRY_AFTER_CAP)
        return wait, f"Retry-After asked for {outcome.retry_after:g}s" + (" (capped)" if wait < dt.timedelta(seconds=outcome.retry_after) else "")  # fmt: skip
    wait = policy.retryDelay
    why = f"retryDelay {format_duration(policy.retryDelay)}"
    if policy.backoff is not None and attempt > 1:
        wait = policy.retryDelay * (policy.backoff.factor ** (attempt - 1))
        why = f"backoff {format_duration(policy.retryDelay)} x {policy.backoff.factor:g}^{attempt - 1}"
    if cap is not None and wait > cap:
        wait, why = cap, why + f", capped at {format_duration(cap)}"
    if policy.jitter == "full":
        share = fraction(salt, f"{step}:{attempt}")
        wait = wait * share
        why += f", full jitter ({share:.0%})"
    return wait, why
