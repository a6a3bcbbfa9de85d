"""The process's heartbeat: it says in the store that this process is alive, from its start to its stop.

It runs on its own thread with its own store requests, so it never waits
behind the loop's claims and reads or the writer's commits: other processes
sharing the store take this one's work over only when its heartbeat has
ended (see the lease keeper's sweep), which a live process's heartbeat does
not while the store answers. It renews four times a lease, each time until
a lease from then; a failed renewal is logged once and tried again at the
next beat. It beats only while `well()` says the process does its work (its
loop thread runs and makes progress): a process that is alive but stuck
lets the others take its work over. Called by runtime.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from lambdaop.core.clock import Clock

log = logging.getLogger("lambdaop.runtime")


class HeartbeatStore(Protocol):
    def heartbeat(self, slot: str, until: dt.datetime, info: dict[str, object]) -> None: ...


class Heartbeat:
    def __init__(self, store: HeartbeatStore, owner: str, lease: dt.timedelta, clock: Clock) -> None:
        self.store, self.owner, self.lease, self.clock = store, owner, lease, clock
        self.every = lease.total_seconds() / 4
        self._stop = threading.Event()
        self._failing = False
        self._stuck = False
        self._thread: threading.Thread | None = None
        self.well: Callable[[], bool] = lambda: True

    def beat(self) -> None:
        """Say once that this process is alive until a lease from now."""
        now = self.clock.now()
        self.store.heartbeat(self.owner, now + self.lease, {"owner": self.owner, "at": now})

    def start(self) -> None:
        self.beat()  # before anything else: a process that is starting is alive
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def tick(self) -> bool:
        """One beat, unless the process is stuck; answers whether it reached the store."""
        if not self.well():
            if not self._stuck:
                log.error("this process has stopped doing its work: its heartbeat stops, so that other processes sharing the store take its work over")  # fmt: skip
            self._stuck = True
            return False
        self._stuck = False
        try:
            self.beat()
        except Exception as exc:  # noqa: BLE001 - a store fault must not end the heartbeat
            if not self._failing:
                log.warning("the heartbeat could not reach the store (tried again every %.1fs): %s", self.every, exc)  # fmt: skip
            self._failing = True
            return False
        if self._failing:
            log.info("the heartbeat reaches the store again")
        self._failing = False
        return True
