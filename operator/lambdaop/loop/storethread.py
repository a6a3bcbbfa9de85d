"""The loop's store reader: runs its reads and claims one after another, off the loop's thread.

Each job answers one event (or raises, which becomes a `StoreFailed`), and
the answer goes back to the loop's queue. With `threaded=False` jobs wait
for `step()`, so unit tests drive the loop with no threads and no sleeps.
Called by reconciler.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lambdaop.loop")

Job = Callable[[], Any]
Done = Callable[[Any], None]


class StoreThread:
    def __init__(self, threaded: bool = True, name: str = "store-reader") -> None:
        self.threaded = threaded
        self._jobs: queue.SimpleQueue[tuple[Job, Done] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def submit(self, job: Job, done: Done) -> None:
        """Run `job`; `done` gets its answer, or the exception it raised."""
        self._jobs.put((job, done))

    def step(self) -> None:
        if self.threaded:
            return
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._one(*item)

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            self._one(*item)

    @staticmethod
    def _one(job: Job, done: Done) -> None:
        try:
            value: Any = job()
        except Exception as exc:  # answered to the loop, which decides
            value = exc
        try:
            done(value)
        except Exception:
            log.exception("a store job's answer could not be delivered")
