"""Wires the store, the reconcile loop and the service together; starts and stops them.

Called by the CLI (`lambdaop serve`) and by integration tests.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from .clock import Clock, SystemClock
from .config import Config
from .errors import LambdaopError
from .reconciler import LoopSettings, Reconciler
from .service import Applied, Service
from .spec import load_documents
from .store import EmbeddedServer, StateDir, Store, connect

log = logging.getLogger(__name__)


def spec_files(folder: Path) -> list[Path]:
    """YAML spec files under a folder, recursively, in a stable order (status files excluded)."""
    found = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in (".yaml", ".yml")
        and not p.name.endswith((".status.yaml", ".status.yml"))
    ]
    return sorted(found)


class Runtime:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.state = StateDir(config.state_dir)
        self.server: EmbeddedServer | None = None
        self.store: Store
        self.reconciler: Reconciler
        self.service: Service
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        log.info("lambdaop starting: %s", self.config.describe())
        self.state.acquire()
        try:
            self.store, self.server = connect(
                self.config.mongodb_uri, self.config.state_dir, self.config.database
            )
        except Exception:
            self.state.release()
            raise
        settings = LoopSettings(
            lease=self.config.lease,
            workers=self.config.workers,
            max_in_flight=self.config.workers * 16,
            recover_all_at_start=self.server is not None,
        )
        self.reconciler = Reconciler(self.store, self.clock, self.owner, self.config.env, settings)
        self.service = Service(self.store, self.clock, self.reconciler.notify)
        if self.config.specs_dir is not None:
            self.apply_folder(self.config.specs_dir)
        self._thread = threading.Thread(target=self.reconciler.run, name="reconciler", daemon=True)
        self._thread.start()

    def apply_folder(self, folder: Path) -> list[Applied]:
        """Apply every spec file of a folder once; bad files are reported and skipped."""
        if not folder.is_dir():
            log.info("specs folder %s does not exist; nothing to apply", folder)
            return []
        results = []
        for path in spec_files(folder):
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                log.error("%s: cannot be read: %s", path, exc)
                continue
            for applied in self.service.apply_documents(
                load_documents(text, str(path)), self.config.specs_owner, str(path)
            ):
                results.append(applied)
                for problem in applied.problems:
                    log.error("%s", problem)
                if applied.action == "refused":
                    log.warning("%s %s: %s", applied.kind, applied.name, applied.message)
        return results

    def stop(self) -> None:
        if self._thread is not None:
            self.reconciler.stop()
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.store.close()
            if self.server is not None:
                self.server.stop()
        except (AttributeError, LambdaopError, OSError) as exc:
            log.warning("while stopping: %s", exc)
        self.state.release()
        log.info("lambdaop stopped")

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
