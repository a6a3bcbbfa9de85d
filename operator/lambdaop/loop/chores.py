"""The loop's housekeeping as jobs on a `schedule.Scheduler`, timed by the loop's own `now`.

`schedule` reads the wall clock itself; these subclasses take the time from
the loop instead (`run_pending_at(now)`), so unit tests drive the chores with
the test clock. Only whole periods in seconds are used. A chore that raises is
logged and keeps its period. Called by reconciler.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import schedule

log = logging.getLogger(__name__)


class _ClockJob(schedule.Job):
    scheduler: Chores

    @property
    def should_run(self) -> bool:
        assert self.next_run is not None
        return self.scheduler.now >= self.next_run

    def _schedule_next_run(self) -> None:
        self.next_run = self.scheduler.now + dt.timedelta(seconds=self.interval)


class Chores(schedule.Scheduler):
    """Periodic chores: `every(seconds, name, fn)`; the loop calls `run_pending_at(now)` each pass."""

    def __init__(self, now: dt.datetime) -> None:
        super().__init__()
        self.now = now

    def every(self, interval: float = 1) -> schedule.Job:
        return _ClockJob(interval, self)  # type: ignore[arg-type]  # fractions of a second work

    def add(self, seconds: float, name: str, chore: Callable[[dt.datetime], None]) -> None:
        def run() -> None:
            try:
                chore(self.now)
            except Exception:
                log.exception("chore %s failed; it runs again in %ss", name, seconds)

        job = self.every(seconds).seconds.do(run)
        job.tag(name)

    def run_pending_at(self, now: dt.datetime) -> None:
        self.now = now
        self.run_pending()

    def run_now(self, name: str, now: dt.datetime) -> None:
        """Run one chore at once (and count its period from now)."""
        self.now = now
        for job in self.get_jobs(name):
            self._run_job(job)

    def idle_at(self, now: dt.datetime) -> float:
        """Seconds until the next chore is due (0 when one is due now)."""
        if not self.jobs:
            return 3600.0
        nxt = min(job.next_run for job in self.jobs if job.next_run is not None)
        return max(0.0, (nxt - now).total_seconds())
