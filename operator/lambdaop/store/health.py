"""Whether the store answers, and whether the state folder's disk has room, known at every moment.

A thread reads one document of the store every `every` seconds with a
deadline (a read of its storage: a server whose storage failed still answers
`ping`), and measures the free space of the state folder's disk. Readiness
and the API read what it last found, so they answer at once whatever the
store does: a probe that hangs is itself the answer ("has not answered for
3s"). Time comes from the clock. Called by runtime (readiness, the service's
fast refusals).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from lambdaop.core.clock import Clock

log = logging.getLogger("lambdaop.store")


class StoreHealth:
    def __init__(
        self,
        probe: Callable[[float], str | None],
        clock: Clock,
        folder: Path | None = None,
        every: float = 0.5,
        deadline: float = 0.8,
        min_free_mb: float = 64.0,
        on_broken: Callable[[str], None] | None = None,
        broken_after: float = 5.0,
        hung_after: float = 30.0,
    ) -> None:
        self.probe = probe
        self.on_broken = on_broken  # the embedded store is restarted: it answers errors, or hangs too long
        self.broken_after = broken_after
        self.hung_after = hung_after
        self.last_error: str | None = None
        self.misses = 0  # probes in a row that failed
        self.clock = clock
        self.folder = folder
        self.every = every
        self.deadline = deadline
        self.min_free_mb = min_free_mb
        self.last_ok = clock.monotonic()
        self.failing_since: float | None = None
        self.free_mb: float | None = None
        self._probing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)

    def start(self) -> None:
        self.check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def check(self) -> None:
        """One probe of the store and the disk (the thread makes one every `every` seconds)."""
        self._probing_since = self.clock.monotonic()
        failed = self.probe(self.deadline)
        now = self.clock.monotonic()
        self._probing_since = None
        if failed is None:
            if self.failing_since is not None:
                log.warning("the store answers again (after %.1fs)", now - self.failing_since)
            self.last_ok, self.failing_since, self.last_error, self.misses = now, None, None, 0
        else:
            self.misses += 1
            if self.misses < 2 and failed == "timeout":
                return  # one slow read on a busy machine is not an outage: the next probe says
            if self.failing_since is None:
                self.failing_since = now
                why = (
                    f"a read of it did not come back within {self.deadline:g}s"
                    if failed == "timeout"
                    else failed
                )
                log.error("the store does not answer (%s)", why)
            self.last_error = failed
            down = now - self.failing_since
            if self.on_broken is not None and (
                (failed != "timeout" and down > self.broken_after) or down > self.hung_after
            ):
                self.failing_since = now  # give the restart its time before judging again
                self.on_broken(failed if failed != "timeout" else f"it has not answered for {down:.0f}s")
        if self.folder is not None:
            try:
                stat = os.statvfs(self.folder)
                self.free_mb = stat.f_bavail * stat.f_frsize / 1e6
            except OSError:
                self.free_mb = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except Exception:
                log.exception("the store health probe failed")

    @property
    def answering(self) -> bool:
        """The last probe came back, and none has hung since."""
        probing = self._probing_since
        hung = probing is not None and self.clock.monotonic() - probing > 2 * self.deadline + 0.5
        return self.failing_since is None and not hung

    @property
    def disk_full(self) -> bool:
        return self.free_mb is not None and self.free_mb < self.min_free_mb

    def problems(self) -> list[str]:
        out = []
        if not self.answering:
            since = self.failing_since if self.failing_since is not None else self._probing_since
            quiet = self.clock.monotonic() - (since if since is not None else self.last_ok)
            out.append(f"the store does not answer (for {quiet:.1f}s)")
        if self.disk_full:
            out.append(f"the state folder's disk ({self.folder}) has {self.free_mb:.0f} MB free, under {self.min_free_mb:.0f} MB")  # fmt: skip
        return out
