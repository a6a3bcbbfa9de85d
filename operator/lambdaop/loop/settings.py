"""How the loop runs: lease and claim times, batch sizes, bounds on calls, limits per key. Built by runtime."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lambdaop.loop.callbacks import CallbackUrls
from lambdaop.loop.placejobs import LimitSettings
from lambdaop.spec import Notify


@dataclass(frozen=True)
class LoopSettings:
    lease: dt.timedelta = dt.timedelta(seconds=30)
    claim_window: dt.timedelta = dt.timedelta(seconds=2)
    claim_gather: dt.timedelta = dt.timedelta(
        milliseconds=250
    )  # a claim also takes what comes due this much later
    horizon: dt.timedelta = dt.timedelta(seconds=30)
    refill_every: float = 1.0
    refill_limit: int = 5000
    claim_batch: int = 500  # a claim of more holds the loop long enough to delay calls
    workers: int = 16
    max_in_flight: int = 1024
    long_call: dt.timedelta = dt.timedelta(seconds=1)  # a call out longer than this shows `running`
    orphan_grace: dt.timedelta = dt.timedelta(seconds=5)
    recover_all_at_start: bool = False  # the embedded store has one owner: every other lease is stale
    sole_owner: bool = False  # the only process of its store: a call may leave whatever its lease says
    max_unwritten: int = 50_000  # results kept in memory while the store is away; beyond, no call leaves
    stop_grace: float = 10.0
    notify: Notify | None = None  # the service-wide failure notification (--on-failure)
    pause_check_every: float = 1.0  # seconds between reads of the pause of everything (other processes')
    callbacks: CallbackUrls | None = (
        None  # signs the URLs of waitForCallback steps (none: they fail as `config`)
    )
    limits: LimitSettings = LimitSettings()  # how calls wait for places of limit keys (its lease is this one)
