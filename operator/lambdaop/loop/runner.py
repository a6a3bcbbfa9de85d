"""The loop's thread: passes until stopped, each followed by a sleep until the next wake time or event.

`Inbox` is the loop's queue: any thread puts an event and wakes the loop.
`Runner.run()` repeats `reconcile_once(now)`, sleeping in between (at most a
second, so a stop is seen soon); at stop, calls in flight get `stop_grace`
to report back and their results are taken. Called by reconciler.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from lambdaop.core.clock import Clock
from lambdaop.core.metrics import Metrics

log = logging.getLogger("lambdaop.loop")


class Inbox:
    def __init__(self) -> None:
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()

    def put(self, event: Any, wake: bool = True) -> None:
        self._events.put(event)
        if wake:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def drain(self) -> Iterator[Any]:
        """Every event queued so far (and any put while draining)."""
        while True:
            try:
                yield self._events.get_nowait()
            except queue.Empty:
                return

    def sleep(self, seconds: float) -> None:
        """Until woken, or `seconds` pass."""
        if seconds > 0:
            self._wake.wait(seconds)
        self._wake.clear()


class Passes(Protocol):
    """What the runner drives."""

    inbox: Inbox
    owner: str

    def reconcile_once(self, now: dt.datetime) -> dt.datetime: ...

    def take_events(self, now: dt.datetime) -> None: ...

    def shutdown_calls(self) -> None: ...

    def writes_pending(self) -> int: ...


class Runner:
    def __init__(self, loop: Passes, clock: Clock, metrics: Metrics | None, stop_grace: float) -> None:
        self.loop, self.clock, self.metrics, self.stop_grace = loop, clock, metrics, stop_grace
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.loop.inbox.wake()

    def run(self) -> None:
        log.info("reconcile loop started (owner %s)", self.loop.owner)
        while not self._stopping.is_set():
            now, t0 = self.clock.now(), self.clock.monotonic()
            try:
                wake_at = self.loop.reconcile_once(now)
            except Exception:
                log.exception("reconcile pass failed; retrying in 1s")
                wake_at = now + dt.timedelta(seconds=1)
            if self.metrics is not None:
                self.metrics.pass_seconds.observe(self.clock.monotonic() - t0)
            self.loop.inbox.sleep(min((wake_at - self.clock.now()).total_seconds(), 1.0))
        self._drain_at_stop()
        log.info("reconcile loop stopped")

    def _drain_at_stop(self) -> None:
        """Calls in flight get `stop_grace` to report back; their results are handed to the writer."""
        done = threading.Event()

        def shutdown() -> None:
            self.loop.shutdown_calls()
            done.set()

        threading.Thread(target=shutdown, daemon=True).start()
        deadline = self.clock.monotonic() + self.stop_grace
        while self.clock.monotonic() < deadline and not done.is_set():
            done.wait(0.05)
            with contextlib.suppress(Exception):
                self.loop.take_events(self.clock.now())
        with contextlib.suppress(Exception):
            self.loop.take_events(self.clock.now())
        while self.clock.monotonic() < deadline and self.loop.writes_pending():  # their results land: logged
            self.loop.inbox.sleep(0.05)
            with contextlib.suppress(Exception):
                self.loop.take_events(self.clock.now())
