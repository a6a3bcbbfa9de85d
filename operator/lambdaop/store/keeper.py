"""The embedded store's supervisor: notices at once when the server dies, and starts it again.

The server is this process's child; a thread waits on it. When it exits
without being asked to (killed, crashed), the keeper reaps it, logs it, counts
it and starts it again on its own data and the same port, so the client
reconnects by itself and this process's leases, which are in the data, are
still its own. A start that fails is tried again; more than `limit` deaths
or failed starts within `window` seconds mean something is wrong that a
restart of the server does not mend: `on_fatal` is called with one line, and
the runtime exits non-zero so the outer supervisor starts everything again.
While the state folder's disk is full, failed starts are retried without
counting (the data is intact; it recovers once space is freed). Called by
runtime.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from lambdaop.core.clock import Clock
from lambdaop.core.errors import StoreUnavailable
from lambdaop.store.embedded import EmbeddedServer

log = logging.getLogger("lambdaop.store")


class Keeper:
    def __init__(
        self,
        server: EmbeddedServer,
        clock: Clock,
        on_fatal: Callable[[str], None],
        on_restart: Callable[[], None] | None = None,
        disk_full: Callable[[], bool] | None = None,
        limit: int = 3,
        window: float = 60.0,
    ) -> None:
        self.server = server
        self.clock = clock
        self.on_fatal = on_fatal
        self.on_restart = on_restart
        self.disk_full = disk_full or (lambda: False)
        self.limit = limit
        self.window = window
        self.restarts = 0
        self.down = threading.Event()  # set while the server is not running
        self._deaths: collections.deque[float] = collections.deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the server is stopped on purpose)."""
        self._stopping.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            process = self.server.process
            if process is None:
                return
            code = process.wait()  # reaps it
            if self._stopping.is_set():
                return
            self.down.set()
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            log.error("the embedded store stopped (%s); starting it again on its data", why)
            if not self._restart():
                return
            self.down.clear()

    def _restart(self) -> bool:
        """Start the server again until it runs; False once it is hopeless (on_fatal was called)."""
        port = self.server.port
        while not self._stopping.is_set():
            now = self.clock.monotonic()
            full = self.disk_full()
            if not full:
                self._deaths.append(now)
                while self._deaths and self._deaths[0] < now - self.window:
                    self._deaths.popleft()
                if len(self._deaths) > self.limit:
                    self.on_fatal(
                        f"the embedded store stopped {len(self._deaths)} times within {self.window:.0f}s "
                        f"and is not started again; see {self.server.state_dir / 'secantusd.log'}"
                    )
                    return False
            try:
                self.server.start(auth=self.server.auth, port=port)
            except (StoreUnavailable, OSError) as exc:
                wait = 5.0 if full else 1.0
                log.error("the embedded store did not start (%s); trying again in %gs%s", str(exc).splitlines()[0], wait,
                          " (the state folder's disk is full: free space)" if full else "")  # fmt: skip
                self._stopping.wait(wait)
                continue
            self.restarts += 1
            log.warning("the embedded store runs again (restart %d)", self.restarts)
            if self.on_restart is not None:
                self.on_restart()
            return True
        return False
