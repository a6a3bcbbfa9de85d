"""Shared parts of the benchmarks: a local endpoint, an embedded store, the raw-rate baseline, figures.

Not a test: the benchmarks print figures measured on this machine.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pymongo
import requests
from pymongo import UpdateOne, monitoring

from lambdaop.app.applying import Placed
from lambdaop.core.errors import Problem
from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import Document, Task
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import start_embedded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ENDPOINT_PID = [0]  # the endpoint process, for its CPU time


class CpuMeter:
    """CPU used by this process, the store and the endpoint between `start` and `stop`, as a
    share of one core."""

    def __init__(self, store_pid: int | None) -> None:
        self.pids = {"service": os.getpid(), "store": store_pid or 0, "endpoint": ENDPOINT_PID[0]}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_seconds(p) for k, p in self.pids.items() if p}

    def stop(self) -> str:
        secs = time.monotonic() - self.t0
        used = {k: (cpu_seconds(self.pids[k]) - c) / secs for k, c in self.c0.items()}
        return ", ".join(f"{k} {v:.0%}" for k, v in used.items()) + " of one core"


@contextmanager
def endpoint(kind: str | None = None) -> Iterator[str]:
    """A local endpoint in its own process on 127.0.0.1 (so its CPU is not the engine's): the
    cheap asyncio sink (benchmarks/sink.py), or with kind "demo" (or BENCH_ENDPOINT=demo) the demo
    Lambda, a threaded http.server that tops out near 1,100 requests/s."""
    port = free_port()
    kind = kind or os.environ.get("BENCH_ENDPOINT", "sink")
    if kind == "demo":
        cmd = [sys.executable, "-m", "lambdaop.tools.demo", "--port", str(port)]
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("sink.py")), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    ENDPOINT_PID[0] = proc.pid
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(base + "/_calls", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def embedded_store(reuse: Path | None = None) -> Iterator[tuple[EmbeddedServer, Path]]:
    """An embedded server in a new folder (kept afterwards: `reuse` it to measure it again)."""
    tmp = reuse or Path(tempfile.mkdtemp(prefix="lambdaop-bench-"))
    server = EmbeddedServer(tmp / "store")
    start_embedded(server)
    try:
        yield server, tmp
    finally:
        server.stop()


def raw_rate(url: str, n: int, threads: int) -> float:
    """Calls per second of plain keep-alive `http.client` connections (what the invoker is built
    on), one per thread, against the same endpoint."""
    per = max(1, n // threads)
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        for _ in range(per):
            conn.request("GET", target)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"the endpoint answered {response.status}")
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def runtime(server: EmbeddedServer, tmp: Path, workers: int = 16, **kw: object) -> Runtime:
    config = Config(
        state_dir=tmp / "state",
        specs_dir=None,
        mongodb_uri=server.uri + "&retryWrites=false",
        workers=workers,
        serve_api=False,
        allow_hosts=Policy.parse("127.0.0.1"),
        **kw,  # type: ignore[arg-type]
    )
    rt = Runtime(config)
    rt.start()
    return rt


def create(rt: Runtime, url: str, dues: list[dt.datetime], owner: str = "bench", prefix: str = "b") -> None:
    """Tasks at these due times, created in batches (the fast path of `apply`)."""
    for start in range(0, len(dues), 2000):
        items = []
        for i in range(start, min(len(dues), start + 2000)):
            task = Task.model_validate(
                {
                    "metadata": {"name": f"{prefix}{i}"},
                    "spec": {"invoke": f"{url}?i={i}", "at": dues[i].isoformat()},
                }
            )
            items.append(Placed(Document(i, 1, task, list[Problem]()), owner))
        rt.applier.apply_placed(items)


def calls(base: str) -> list[dict[str, object]]:
    body: list[dict[str, object]] = requests.get(base + "/_calls", timeout=120).json()
    return body


def arrivals(got: list[dict[str, object]]) -> dict[int, float]:
    """When each call arrived at the endpoint, by the index `?i=N` in its URL (a repeat: its last)."""
    return {int(str(c["query"]).split("=")[1]): float(c["at"]) for c in got}  # type: ignore[arg-type]


def lateness_ms(by_index: dict[int, float], dues: list[dt.datetime]) -> list[float]:
    """Arrival minus due time of each call, in due order (ms)."""
    return [(by_index[i] - dues[i].timestamp()) * 1000 for i in sorted(by_index)]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | None = None) -> float:
    text = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", text)
    return int(match.group(1)) / 1024 if match else 0.0


def wait_durable(rt: Runtime, n: int, timeout: float = 600) -> float:
    """When `n` objects are final in the store (the counters, polled every 0.25 s, so the
    polling itself hardly loads the store)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        counts = rt.store.counts("bench", "Task")
        if counts.get("completed", 0) + counts.get("failed", 0) >= n:
            return time.time()
        time.sleep(0.25)
    raise SystemExit(f"only {rt.store.counts('bench', 'Task')} after {timeout}s")


TEAMS = 20  # label team=t0..t19: a label filter matches 1 in 20


def store_rates(uri: str, n: int = 20_000) -> tuple[float, float]:
    """The embedded server's own insert_many and bulk update-by-_id rates, documents/s, on
    documents the size of a stored Task, in a scratch collection with one secondary index."""
    client: pymongo.MongoClient = pymongo.MongoClient(uri)
    scratch = client["bench_base"]["docs"]
    scratch.drop()
    scratch.create_index("due")
    now = dt.datetime.now(dt.UTC)
    docs = [
        {"_id": f"{i:024x}", "owner": "bench", "kind": "Task", "name": f"n{i}", "state": "scheduled",
         "due": now + dt.timedelta(seconds=i), "spec": {"invoke": {"url": f"http://127.0.0.1:9/ok?i={i}"}},
         "generation": 1, "fence": 0, "labels": {"team": f"t{i % TEAMS}"}}
        for i in range(n)
    ]  # fmt: skip
    t0 = time.perf_counter()
    for k in range(0, n, 1000):
        scratch.insert_many(docs[k : k + 1000], ordered=False)
    inserted = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for k in range(0, n, 500):
        ops = [UpdateOne({"_id": d["_id"]}, {"$set": {"state": "completed"}, "$unset": {"due": ""}, "$inc": {"fence": 1}}) for d in docs[k : k + 500]]  # fmt: skip
        scratch.bulk_write(ops, ordered=False)
    updated = n / (time.perf_counter() - t0)
    scratch.drop()
    client.close()
    return inserted, updated


class Commands(monitoring.CommandListener):
    """Every command this process sends, by collection (or by command and collection), with its
    duration (while `on`)."""

    def __init__(self, by_command: bool = False) -> None:
        self.by_command = by_command
        self.lock = threading.Lock()
        self.on = False
        self.count: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self._names: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            what = event.command.get(event.command_name)
            with self.lock:
                name = what if isinstance(what, str) else event.command_name
                named = self.by_command and isinstance(what, str)
                self._names[event.request_id] = f"{event.command_name} {name}" if named else name

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._done(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._done(event.request_id, event.duration_micros)

    def _done(self, request: int, micros: int) -> None:
        with self.lock:
            name = self._names.pop(request, None)
            if name is not None:
                self.count[name] += 1
                self.micros[name] += micros

    def reset(self) -> None:
        with self.lock:
            self.count.clear()
            self.micros.clear()
            self._names.clear()
