"""What the probes answer: readiness (`/readyz`) and liveness (`/healthz`), at once, whatever the store does.

Readiness is everything that must work for requests to be served: the store
answers (from the health monitor's last probe, never a probe of its own, so it
never hangs), the embedded store runs, and every background thread is alive.
Liveness fails only when restarting the process would help: the store could
not be started again, or the loop has made no progress (no call sent, no
result written) for `limit` while work was overdue. Called by runtime and the
API (through the callables runtime gives it).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdaop.core.clock import Clock
from lambdaop.loop.reconciler import Reconciler
from lambdaop.store.health import StoreHealth
from lambdaop.store.keeper import Keeper


@dataclass
class Probes:
    clock: Clock
    limit: dt.timedelta
    health: StoreHealth | None = None
    keeper: Keeper | None = None
    loop: Reconciler | None = None
    threads: dict[str, Callable[[], bool]] = field(default_factory=dict)  # what, is it alive
    fatal: str | None = None
    started: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def readiness(self) -> list[str]:
        """Why the process is not ready (empty when it is)."""
        out = list(self.health.problems()) if self.health is not None else []
        if self.keeper is not None:
            if self.keeper.down.is_set():
                out.append("the embedded store is being started again")
            if not self.keeper.alive and self.fatal is None:
                out.append("the embedded store's keeper thread has stopped")
        for what, alive in self.threads.items():
            if not alive():
                out.append(f"the {what} thread has stopped")
        if self.loop is not None:
            out += self.loop.problems()
        if self.fatal is not None:
            out.append(self.fatal)
        return out

    def liveness(self) -> list[str]:
        """Why the process should be restarted (empty while it can still do its job)."""
        if self.fatal is not None:
            return [self.fatal]
        loop = self.loop
        if loop is None or loop.earliest_due is None:
            return []
        overdue = (self.clock.now() - loop.earliest_due).total_seconds()
        quiet = self.clock.monotonic() - max(loop.stats.progress_at, self.started)
        if overdue > self.limit.total_seconds() and quiet > self.limit.total_seconds():
            return [
                f"the reconcile loop has made no progress for {quiet:.0f}s while work is {overdue:.0f}s overdue"
            ]
        return []
