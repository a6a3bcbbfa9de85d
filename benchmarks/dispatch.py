"""Dispatch throughput: N Tasks due at the same instant against a local no-op endpoint.

Prints, from one run on this machine:
  - the raw rate of a plain requests.Session against the same endpoint
    (one thread, and as many threads as the engine has workers);
  - the engine's rate: N Tasks due at once, from their due time until the last
    result is written to the embedded store (claim, call, result: two
    conditional writes per Task, batched);
  - lateness (endpoint arrival minus due time) p50 / p99 / max.

Usage: python benchmarks/dispatch.py [--tasks 1000] [--workers 16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from lambdaop.config import Config
from lambdaop.runtime import Runtime
from lambdaop.spec import Task
from lambdaop.store import EmbeddedServer


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_rate(url: str, n: int, threads: int) -> float:
    per = n // threads

    def worker() -> None:
        with requests.Session() as session:
            for _ in range(per):
                session.get(url, timeout=10).raise_for_status()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    port = free_port()
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "lambdaop.demo", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-bench-"))
    server = EmbeddedServer(tmp / "store")
    try:
        for _ in range(100):
            try:
                requests.get(base + "/_calls", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        server.start()
        raw1 = raw_rate(base + "/ok", args.tasks, 1)
        rawn = raw_rate(base + "/ok", args.tasks, args.workers)
        requests.delete(base + "/_calls", timeout=5)

        config = Config(
            state_dir=tmp / "state",
            specs_dir=None,
            mongodb_uri=server.uri + "&retryWrites=false",
            workers=args.workers,
        )
        runtime = Runtime(config)
        runtime.start()
        try:
            due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3 + args.tasks / 500)
            at = due.isoformat()
            for i in range(args.tasks):
                task = Task.model_validate(
                    {"metadata": {"name": f"b{i}"}, "spec": {"invoke": f"{base}/ok?i={i}", "at": at}}
                )
                runtime.service.apply(task, "bench")
            stats = runtime.reconciler.stats
            deadline = time.monotonic() + 300
            while stats.finished < args.tasks and time.monotonic() < deadline:
                time.sleep(0.01)
            done = time.time()
        finally:
            runtime.stop()
        calls = requests.get(base + "/_calls", timeout=30).json()
    finally:
        endpoint.terminate()
        server.stop()

    engine = args.tasks / (done - due.timestamp())
    lateness = [(c["at"] - due.timestamp()) * 1000 for c in calls]
    print(f"tasks due at once:             {args.tasks} (workers {args.workers})")
    print(f"calls received:                {len(calls)}")
    print(f"raw requests.Session, 1 thread:  {raw1:8.0f} calls/s")
    print(f"raw requests.Session, {args.workers} threads: {rawn:8.0f} calls/s")
    print(
        f"engine (due -> last result stored): {engine:6.0f} tasks/s = {engine / raw1:.0%} of raw 1-thread, "
        f"{engine / rawn:.0%} of raw {args.workers}-thread"
    )
    print(
        f"lateness p50 {statistics.median(lateness):.0f} ms, p99 {pct(lateness, 99):.0f} ms, max {max(lateness):.0f} ms"
    )


if __name__ == "__main__":
    main()
