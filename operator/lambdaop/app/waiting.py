"""What an object's due call waits for, told from the store: a place of one of its limit keys.

The process that holds an object knows at once (`Limiter.waiting_for`); any other process
sharing the store reads it here, for one object's answer: an object whose call is due and not
out, whose step has limits, waits when another process says in the store that it has calls of
that key waiting (each process writes such a word about once a second while it has some). It is
told from the store, so a call that has just left reads as waiting until its result is written (or
it has been out a second and shows running). One bounded read per key (`key_state`); nothing is
written. Called by the service.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from lambdaop.engine.limits import key_of, limits_of, shown
from lambdaop.engine.record import StoredObject
from lambdaop.engine.templates import TemplateError
from lambdaop.loop.results import step_context
from lambdaop.store.contract import LimitType, PlaceStore


def waiting_in_store(store: PlaceStore, record: StoredObject, now: dt.datetime) -> dict[str, Any] | None:
    """{kind, key, limit, per, since, calls} when the store says calls of its key wait (`calls`: how
    many, in every process), else None."""
    p = record.progress
    if p.final or p.in_flight or record.due is None or record.due > now or p.suspended:
        return None
    try:
        limits = limits_of(record.plan, p.step)
    except ValueError:
        return None
    if limits is None:
        return None
    ctx = step_context(record, p, p.step)
    for kind, limit in ((LimitType.CONCURRENCY, limits.concurrency), (LimitType.RATE, limits.rate)):
        if limit is None:
            continue
        try:
            key = key_of(record.owner, limit.key, ctx, limits.where)
        except TemplateError:
            return None
        calls = sum(w.calls for w in store.key_state(key).waiters if w.kind is kind and w.until > now)
        if calls:
            per = getattr(limit, "per", None)
            name = "concurrency" if kind is LimitType.CONCURRENCY else "rate"
            return {"kind": name, "key": shown(key), "limit": limit.limit, "since": record.due, **({"per": per} if per else {}), "calls": calls}  # fmt: skip
    return None
