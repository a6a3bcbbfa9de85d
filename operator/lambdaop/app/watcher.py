"""Following the specs folder as it really changes, with watchfiles' public `watch`.

Changes arrive grouped (an editor's write-and-rename, or a `git checkout` of a
thousand files, is one batch applied together). A change under a hidden path
(Kubernetes' `..data` symlink swapped over a ConfigMap folder) reads the whole
folder again. The folder itself may be a symlink swapped atomically: when its
target changes, the watch moves to the new target and the folder is read
again. Every `resync` seconds (default 60, like Flux's `interval`) every file
is read again, so an edit that could not converge is applied without the file
being touched; an unchanged, converged folder costs no store write. Nothing
that goes wrong in one pass stops the thread. Called by runtime.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import watchfiles

from lambdaop.app.folder import FOLDER_CONFIG, FolderSync, is_spec_file
from lambdaop.core.clock import Clock

log = logging.getLogger("lambdaop.folder")


class FolderWatcher:
    def __init__(self, sync: FolderSync, clock: Clock, resync: float = 60.0, tick_ms: int = 500) -> None:
        self.sync = sync
        self.clock = clock
        self.resync_every = resync
        self.tick_ms = tick_ms  # how often the watch looks up from waiting (symlink swaps, resyncs, stop)
        self.ready = threading.Event()  # the watch is on (changes from now on are seen) and `first` ran
        self._stop = threading.Event()
        self.passes = 0

    @property
    def folder(self) -> Path:
        return self.sync.folder

    def stop(self) -> None:
        self._stop.set()

    def run(self, first: Callable[[], None] | None = None) -> None:
        """Watch until `stop()`; `first` (the start-up sync) runs once the watch is on."""
        log.info("watching %s for spec changes", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        next_resync = self.clock.monotonic() + self.resync_every
        while not self._stop.is_set():
            target = os.path.realpath(self.folder)
            try:
                for changes in watchfiles.watch(
                    target,
                    watch_filter=None,
                    debounce=3000,
                    step=200,
                    rust_timeout=self.tick_ms,
                    yield_on_timeout=True,
                    stop_event=self._stop,
                    raise_interrupt=False,
                ):
                    if not self.ready.is_set():
                        if first is not None:
                            self._safely(first)
                        self.ready.set()
                    if os.path.realpath(self.folder) != target:
                        log.info(
                            "%s now points to %s: reading it again",
                            self.folder,
                            os.path.realpath(self.folder),
                        )
                        self._safely(self.sync.resync)
                        break  # watch the new target
                    if changes:
                        self._safely(self._applier(changes, target))
                    self._safely(self.sync.drain)
                    if self.clock.monotonic() >= next_resync:
                        next_resync = self.clock.monotonic() + self.resync_every
                        self._safely(self.sync.resync)
                    elif self.sync.retry:
                        self._safely(lambda: self.sync.changed(sorted(self.sync.retry)))
            except Exception:  # the folder went away, a watch could not be set: try again shortly
                log.exception("watching %s failed; trying again", self.folder)
                self._stop.wait(1.0)
            if not self.ready.is_set() and self._stop.is_set():
                self.ready.set()

    def _applier(self, changes: set[tuple[Any, str]], target: str) -> Callable[[], None]:
        return lambda: self._apply(changes, target)

    def _apply(self, changes: set[tuple[Any, str]], target: str) -> None:
        self.passes += 1
        found = {self.folder / os.path.relpath(p, target) for _, p in changes}
        inside = {p for p in found if not os.path.relpath(p, self.folder).startswith("..")}
        hidden = any(part.startswith(".") for p in inside for part in p.relative_to(self.folder).parts)
        if hidden or any(p.name == FOLDER_CONFIG for p in inside):
            self.sync.resync()  # a ..data swap or an owner change: read everything again
            return
        paths = sorted({p for p in inside if is_spec_file(p, self.folder)} | self.sync.retry)
        if paths:
            self.sync.changed(paths)

    def _safely(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:
            log.exception("applying the specs folder failed; the next change or resync retries")
