"""Call deadlines: one thread shuts the socket of every call whose total deadline passed.

`Reaper.watch` a socket with its deadline before a call sends; `unwatch` it
when the answer is in (it tells whether the deadline shut it meanwhile). Owned
by the invoker.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading

from lambdaop.core.clock import Clock


class Reaper:
    """Shuts sockets whose deadline passed (one thread for every call)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._fired: set[int] = set()
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="call-deadlines", daemon=True)
        self._thread.start()

    def watch(self, sock: socket.socket, deadline: float) -> int:
        token = next(self._seq)
        with self._cond:
            self._live.add(token)
            heapq.heappush(self._heap, (deadline, token, sock))
            self._cond.notify()
        return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; answers whether the deadline had already shut the socket."""
        with self._cond:
            self._live.discard(token)
            fired = token in self._fired
            self._fired.discard(token)
            return fired

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, sock = self._heap[0]
                wait = deadline - self._clock.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                self._fired.add(token)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
