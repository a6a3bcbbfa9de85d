"""Wires the store, the reconcile loop and the service together; starts and stops them.

Called by the CLI (`lambdaop serve`) and by integration tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import secrets
import socket
import threading
from typing import Any

from lambdaop.app.applying import Applier
from lambdaop.app.batch import Checker
from lambdaop.app.callbacks import Callbacks
from lambdaop.app.folder import FolderSync
from lambdaop.app.service import Service
from lambdaop.app.status import StatusWriter
from lambdaop.app.users import Users
from lambdaop.app.watcher import FolderWatcher
from lambdaop.core.clock import Clock, SystemClock
from lambdaop.core.errors import LambdaopError, StartupFailed
from lambdaop.core.metrics import Metrics
from lambdaop.engine.record import StoredObject
from lambdaop.loop.callbacks import CallbackUrls
from lambdaop.loop.outbound import Refused
from lambdaop.loop.reconciler import Reconciler
from lambdaop.loop.settings import LoopSettings
from lambdaop.runtime.config import Config
from lambdaop.runtime.heartbeat import Heartbeat
from lambdaop.runtime.http import ApiServer
from lambdaop.runtime.probes import Probes
from lambdaop.spec import Notify
from lambdaop.store.embedded import EmbeddedServer, StateDir
from lambdaop.store.health import StoreHealth
from lambdaop.store.keeper import Keeper
from lambdaop.store.mongo import MongoStore, connect, start_embedded
from lambdaop.store.writer import Writer

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.state = StateDir(config.state_dir)
        self.server: EmbeddedServer | None = None
        self.store: MongoStore
        self.writer: Writer | None = None
        self.heartbeat: Heartbeat | None = None
        self.reconciler: Reconciler
        self.service: Service
        self._thread: threading.Thread | None = None
        self.users: Users
        self.http: ApiServer | None = None
        self.admin_token: str | None = None
        self.folder: FolderSync | None = None
        self.watcher: FolderWatcher | None = None
        self.status: StatusWriter | None = None
        self._watch_thread: threading.Thread | None = None
        self._started_loop = False
        self.keeper: Keeper | None = None
        self.health: StoreHealth | None = None
        self.probes = Probes(self.clock, config.liveness)
        self.failed = threading.Event()  # set when the process cannot go on (see `_fatal`)

    def start(self) -> None:
        log.info("lambdaop starting", extra={"settings": self.config.describe()})

        self.state.acquire()
        self.metrics = Metrics(self.clock)
        try:
            if self.config.mongodb_uri:
                self.store = connect(self.config.mongodb_uri, self.config.database)
            else:
                self.server = EmbeddedServer(self.config.state_dir)
                uri = start_embedded(self.server)
                self.store = connect(uri, self.config.database, embedded=True)
                self.keeper = Keeper(self.server, self.clock, self._fatal, self.metrics.store_restarts.inc, self._disk_full)  # fmt: skip
                self.keeper.start()
            broken = self._restart_store if self.server is not None else None
            self.health = StoreHealth(self.store.probe, self.clock, self.state.path if self.server else None, on_broken=broken)  # fmt: skip
            self.health.start()
        except Exception:
            if self.server is not None:
                self.server.stop()
            self.state.release()
            raise
        try:
            self._start_parts()
        except BaseException:
            self.stop()
            raise

    def _start_parts(self) -> None:
        embedded = self.server is not None
        window = self.config.claim_window or dt.timedelta(seconds=15 if embedded else 2)
        settings = LoopSettings(
            lease=self.config.lease,
            claim_window=window,
            sole_owner=embedded,
            workers=self.config.workers,
            max_in_flight=self.config.workers * 64,
            recover_all_at_start=self.server is not None,
            notify=self._default_notify(),
            callbacks=CallbackUrls(self._callback_secret(), self.config.public_url or ""),
        )
        self.store.identify(self.owner)
        self.heartbeat = Heartbeat(self.store, self.owner, self.config.lease, self.clock)
        self.heartbeat.start()
        self.writer = Writer(self.store, self.owner, self.owner, self.clock)
        self.reconciler = Reconciler(
            self.store,
            self.writer,
            self.clock,
            self.owner,
            self.config.env,
            settings,
            self._changed,
            on_flush=self._flush_status,
            policy=self.config.allow_hosts,
            metrics=self.metrics,
        )
        self.reconciler.leases.heartbeat = False  # the process's own heartbeat says it is alive
        self.writer.on_commit = self.metrics.commit_seconds.observe
        self.metrics.watch(
            lambda: self.reconciler.held.in_flight, lambda: len(self.reconciler.held), self.store.counts
        )
        self.metrics.watch_limits(self.reconciler.limiter)
        self.service = Service(
            self.store,
            self.writer,
            self.reconciler,
            self.clock,
            settings.claim_window,
            settings.lease,
            self.health,
        )
        self.checker = Checker(self.config.allow_hosts)
        self.applier = Applier(self.service, self.checker)
        self.users = Users(self.store, self.clock, token_file=self.state.path / "admin.token")
        if self.health is not None:
            health = self.health
            self.users.store_down = lambda: not health.answering
        self.admin_token = self.users.ensure_admin()
        if self.admin_token:
            log.info(
                "created the first user, admin; its API token is in %s (mode 0600; it is never logged)",
                self.state.path / "admin.token",
            )
        if self.config.serve_api:
            self._serve_api()
        if self.config.specs_dir is not None:
            self.status = StatusWriter(self.config.status_interval, clock=self.clock)
            status = self.status
            self.metrics.watch_status(lambda: status.failures)
            self.folder = FolderSync(
                self.config.specs_dir, self.applier, self.store, self.config.specs_owner, self.status
            )
            self.folder.metrics = self.metrics
            if self.config.watch:  # the start-up sync runs once the watch is on: nothing is missed
                self.watcher = FolderWatcher(self.folder, self.clock, self.config.resync.total_seconds())
                self._watch_thread = threading.Thread(
                    target=self.watcher.run, args=(self.folder.sync_all,), name="watcher", daemon=True
                )
                self._watch_thread.start()
                if not self.watcher.ready.wait(timeout=600):
                    log.warning("the specs folder is still being applied; going on")
            else:
                self.folder.sync_all()
        gc.freeze()  # long-lived start-up objects need no more collection passes
        self._thread = threading.Thread(target=self.reconciler.run, name="reconciler", daemon=True)
        self._thread.start()
        self._started_loop = True
        self.probes.loop = self.reconciler
        self.probes.started = self.clock.monotonic()
        threads = {"reconcile loop": self._thread, "specs folder watcher": self._watch_thread}
        self.probes.threads = {what: t.is_alive for what, t in threads.items() if t is not None}
        self.probes.threads["heartbeat"] = lambda: self.heartbeat is not None and self.heartbeat.alive
        loop_thread = self._thread
        self.heartbeat.well = lambda: loop_thread.is_alive() and not self.probes.liveness()
        if self.status is not None:
            self.probes.threads["status file writer"] = lambda: self.status is not None and self.status.alive
        if self.health is not None:
            monitor = self.health
            self.probes.threads["store health"] = lambda: monitor.alive
            self.probes.health = monitor
        self.probes.keeper = self.keeper

    def _callback_secret(self) -> bytes:
        """The secret that signs callback URLs: given (LAMBDAOP_CALLBACK_SECRET; the same for every
        process of a shared store), else a random key kept in the state folder (mode 0600)."""
        if self.config.callback_secret:
            return self.config.callback_secret.encode()
        path = self.state.path / "callback.key"
        if self.config.mongodb_uri:
            log.warning("callback URLs are signed with a key of this state folder (%s): set LAMBDAOP_CALLBACK_SECRET, the same for every process of this store, or a callback answered by another process is refused", path)  # fmt: skip
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()

    def _default_notify(self) -> Notify | None:
        url = self.config.on_failure
        if not url:
            return None
        try:
            self.config.allow_hosts.check_url(url)
            return Notify.model_validate({"invoke": url})
        except (Refused, ValueError) as exc:
            raise StartupFailed(f"--on-failure {url}: {exc}") from None

    def _changed(self, record: StoredObject) -> None:
        if self.folder is not None:
            self.folder.object_changed(record)

    def _flush_status(self) -> None:
        if self.status is not None:
            self.status.kick()

    def problems(self) -> list[str]:
        """Why the process is not ready (empty when it is): store, loop and every background thread."""
        return self.probes.readiness()

    def _fatal(self, message: str) -> None:
        """Something a restart of this process may mend: say it once, and stop (the CLI exits 1)."""
        log.critical("%s; lambdaop stops so that its supervisor starts it again", message)
        self.probes.fatal = message
        self.failed.set()

    def _restart_store(self, why: str) -> None:
        """The embedded store runs but cannot do its job (its storage failed, or it hangs): end it;
        its keeper starts it again on its data."""
        if self.server is not None and self.server.alive and self.server.process is not None:
            log.error(
                "the embedded store runs but does not work (%s); ending it so that it starts again", why
            )
            self.server.process.kill()

    def _disk_full(self) -> bool:
        return self.health is not None and self.health.disk_full

    def _serve_api(self) -> None:
        """Serve the API; callback URLs point at it unless --public-url says where they go."""
        urls = self.reconciler.settings.callbacks
        callbacks = Callbacks(self.service, urls, self.clock, self.reconciler.settings.notify)
        self.http = ApiServer(self.config)
        self.http.start(self.applier, self.users, self.clock, self.probes, self.metrics, callbacks)
        log.info("API listening on %s", self.url)
        if urls is not None and not urls.base:
            urls.base = self.url

    @property
    def url(self) -> str:
        return self.http.url if self.http is not None else ""

    @property
    def app(self) -> Any:
        """The API's falcon app (None when the process does not serve the API)."""
        return self.http.app if self.http is not None else None

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            if self._watch_thread is not None:
                self._watch_thread.join(timeout=10)
        if self.http is not None:  # the API's requests in flight finish before anything they use stops
            self.http.stop()
        if self._thread is not None:
            self.reconciler.stop()
            self._thread.join(timeout=30)
            self._thread = None
        gone = self.probes.fatal is not None  # the embedded store is gone for good: nothing to tell it
        if self.writer is not None:
            self.writer.stop(timeout=1.0 if gone else 15.0)
        with contextlib.suppress(AttributeError):
            self.reconciler.io.stop(timeout=1.0 if gone else 15.0)
            self.reconciler.limiter.close(timeout=1.0 if gone else 15.0)
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._started_loop and not gone:
            self._leave_cleanly()
        if self.status is not None:
            self.status.stop()
        if self.health is not None:
            self.health.stop()
        if self.keeper is not None:
            self.keeper.stop()
        try:
            self.store.close()
            if self.server is not None:
                self.server.stop()
        except (AttributeError, LambdaopError, OSError) as exc:
            log.warning("while stopping: %s", exc)
        self.state.release()
        if self.probes.fatal is not None:  # the last line says why, where the eye lands
            log.critical("lambdaop stopped: %s", self.probes.fatal)
        else:
            log.info("lambdaop stopped")

    def _leave_cleanly(self) -> None:
        """A clean stop lets go of what it claimed ahead and did not call (the next start, or another
        process, claims it again without taking it for a call cut short), and leaves no transaction
        open (nobody need end any). A call cut short keeps its lease: the next start says so."""
        idle = [h.id for h in self.reconciler.held.values() if not h.fired]
        with contextlib.suppress(Exception), self.store.deadline(5.0):
            for start in range(0, len(idle), 500):
                self.store.release(self.owner, idle[start : start + 500])
        with contextlib.suppress(Exception), self.store.deadline(2.0):
            self.reconciler.limiter.stop(self.clock.now())  # places of limit keys no call of its uses
        with contextlib.suppress(Exception), self.store.deadline(2.0):
            self.store.heartbeat(self.owner, self.clock.now(), {"owner": self.owner, "sessions": []})

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
