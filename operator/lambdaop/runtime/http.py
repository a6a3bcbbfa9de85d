"""The API's HTTP server: the falcon app of `lambdaop.api`, served by waitress on a thread of its own.

Owns the app, the waitress server and its thread: `start` builds the app and
listens (the port is bound when it returns), `stop` lets the requests being
answered finish before it closes the channels, the wake-up pipe among them.
Called by `Runtime` (runtime.py), which starts it when the process serves the
API and stops it first, before the loop, the writer and the store it uses.
Waitress and the API are imported only when it starts.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from lambdaop.app.applying import Applier
from lambdaop.app.callbacks import Callbacks
from lambdaop.app.users import Users
from lambdaop.core.clock import Clock
from lambdaop.core.errors import StartupFailed
from lambdaop.core.metrics import Metrics
from lambdaop.runtime.config import Config
from lambdaop.runtime.probes import Probes

log = logging.getLogger("lambdaop.runtime.runtime")  # the name the runtime's lines carry


class ApiServer:
    """Serves the API on `config.host`:`config.port` with `config.api_threads` threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app: Any = None  # the falcon app, from `start` on
        self.server: Any = None  # waitress's server, from `start` until `stop`
        self._thread: threading.Thread | None = None

    def start(
        self,
        applier: Applier,
        users: Users,
        clock: Clock,
        probes: Probes,
        metrics: Metrics,
        callbacks: Callbacks,
    ) -> None:
        """Build the app and serve it; StartupFailed when the address cannot be listened on."""
        from waitress.server import create_server

        from lambdaop.api.app import create_app

        self.app = create_app(
            applier,
            users,
            clock,
            zone=self.config.timezone,
            ready=probes.readiness,
            live=probes.liveness,
            metrics=metrics,
            metrics_public=self.config.metrics_public,
            callbacks=callbacks,
        )
        try:
            self.server = create_server(
                self.app,
                host=self.config.host,
                port=self.config.port,
                threads=self.config.api_threads,
                max_request_body_size=2 * 1024 * 1024,
                ident="lambdaop",
                clear_untrusted_proxy_headers=True,
            )
        except OSError as exc:
            raise StartupFailed(
                f"the API cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}; "
                "pass --port (or --host) to use another address"
            ) from None
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the API answers (the port the server got, when 0 was asked for); empty when not serving."""
        return f"http://{self.config.host}:{self.server.effective_port}" if self.server else ""

    def stop(self) -> None:
        """Stop serving (nothing to do when not serving): requests in flight first, then every channel."""
        if self.server is None:
            return
        from waitress import wasyncore

        server = self.server
        # the requests being answered finish first: a worker that answers after the channels
        # (and the wake-up pipe among them) are closed would write to a closed descriptor
        server.task_dispatcher.shutdown(timeout=5)
        # then close every channel (keep-alive clients too) from the server's own loop thread
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError as exc:  # its wake-up pipe is gone: close the channels from here
            log.warning("while stopping the API: %s; its connections are closed directly", exc)
            wasyncore.close_all(server._map, ignore_all=True)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.server = None
