"""Bounded waits on events (never fixed sleeps as synchronisation)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Call probe until it answers something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def final(runtime: Any, object_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until an object of a running Runtime reaches a final state; answers it with its `attempts`."""

    def done() -> dict[str, Any] | None:
        doc = runtime.store.get(object_id)
        return doc if doc and doc["state"] in ("completed", "failed", "cancelled") else None

    doc = wait_until(done, timeout, what=f"{object_id} to end")
    return with_history(runtime.store, doc)


def with_history(store: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its call history (kept beside it in the store) as `attempts`."""
    return {**doc, "attempts": store.history(doc["_id"])}


def serve(state: Path, specs: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`lambdaop serve` as a child process on the embedded store, its output appended to log."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambdaop.cli",
            "serve",
            "--state-dir",
            str(state),
            "--specs",
            str(specs),
            "--allow-hosts",
            "127.0.0.1",
            *([] if "--port" in extra else ["--port", "0"]),  # never a fixed port another process may hold
            *extra,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stored_objects(state: Path) -> list[dict[str, Any]]:
    """Every object in a stopped service's embedded store."""
    from lambdaop.store.embedded import EmbeddedServer
    from lambdaop.store.mongo import MongoStore, start_embedded

    server = EmbeddedServer(state)
    start_embedded(server)
    try:
        store = MongoStore(server.uri, embedded=True)
        docs = [with_history(store, d) for d in store.objects.find({"_id": {"$gt": ""}})]
        store.close()
        return docs
    finally:
        server.stop()
