"""REST API figures on the embedded store.

  1. POST /scheduler/schedule throughput and latency (p50/p99) from C client
     threads, each with a keep-alive session (the Tasks are due in an hour, so
     the loop stays idle);
  2. the time to apply one 10,000-document YAML file: through `lambdaop apply -f`
     (the client splits it into bodies under 1 MiB) and through the specs
     folder at start (the same loading code, no HTTP).

Usage: python benchmarks/api.py [--requests 3000] [--clients 8] [--documents 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from lambdaop.cli.main import main as cli
from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import start_embedded


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def spec_file(path: Path, n: int, prefix: str) -> None:
    path.write_text(
        "---\n".join(
            f"apiVersion: lambdaop/v1\nkind: Task\nmetadata: {{name: {prefix}{i}}}\nspec:\n"
            f"  invoke: http://127.0.0.1:9/ok?i={i}\n  after: 1h\n  retries: 2\n"
            for i in range(n)
        )
    )


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"url": "http://127.0.0.1:9/ok", "delay": 3600000}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("wrk, %d connections: %d POST /scheduler/schedule in %.1fs = %.0f req/s; latency p50 %.1f ms, p99 %.1f ms; %d errors or non-2xx\\n",
    CONNS, summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
"""


def wrk_load(url: str, token: str, connections: int, seconds: int) -> str:
    """The same load from wrk (a C load generator), when it is installed: less client CPU on the same cores."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_SCRIPT.replace("TOKEN", token).replace("CONNS", str(connections)))
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url + "/scheduler/schedule"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def load(url: str, token: str, total: int, clients: int) -> tuple[list[float], float]:
    """C keep-alive clients posting Tasks due in an hour; answers latencies and the elapsed time."""
    latencies: list[float] = []
    lock = threading.Lock()
    per = total // clients

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mine = []
        for _ in range(per):
            t0 = time.perf_counter()
            r = session.post(
                url + "/scheduler/schedule", json={"url": "http://127.0.0.1:9/ok", "delay": 3_600_000}
            )
            mine.append(time.perf_counter() - t0)
            assert r.status_code == 201, r.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--documents", type=int, default=10000)
    parser.add_argument("--seconds", type=int, default=10, help="length of the wrk run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-bench-"))
    server = EmbeddedServer(tmp / "store")
    start_embedded(server)
    uri = server.uri + "&retryWrites=false"
    try:
        loopback = Policy.parse("127.0.0.1")  # the Tasks call a local address
        runtime = Runtime(
            Config(state_dir=tmp / "state", specs_dir=None, mongodb_uri=uri, port=0, allow_hosts=loopback)
        )
        runtime.start()
        try:
            url = runtime.url
            token = runtime.admin_token
            if shutil.which("wrk"):
                print(wrk_load(url, token or "", args.clients, args.seconds))
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:  # the load comes from another process, as real clients do
                latencies, elapsed = pool.apply(load, (url, token, args.requests, args.clients))
            print(f"python requests, {args.clients} clients: {len(latencies)} POST /scheduler/schedule in {elapsed:.2f}s "
                  f"= {len(latencies) / elapsed:.0f} req/s; latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
                  f"p99 {pct(latencies, 99) * 1000:.1f} ms")  # fmt: skip

            big = tmp / "big.yaml"
            spec_file(big, args.documents, "api")
            t0 = time.perf_counter()
            assert (
                cli(
                    [
                        "--log-level",
                        "WARNING",
                        "apply",
                        "-f",
                        str(big),
                        "--server",
                        url,
                        "--token",
                        token or "",
                    ]
                )
                == 0
            )
            print(f"lambdaop apply -f of a {args.documents}-document file: {time.perf_counter() - t0:.2f}s")
        finally:
            runtime.stop()

        folder = tmp / "specs"
        folder.mkdir()
        per = args.documents // 10  # a spec file may hold at most 1 MiB
        for k in range(10):
            spec_file(folder / f"part{k}.yaml", per, f"folder{k}-")
        t0 = time.perf_counter()
        runtime = Runtime(
            Config(
                state_dir=tmp / "state2",
                specs_dir=folder,
                mongodb_uri=uri,
                serve_api=False,
                allow_hosts=loopback,
            )
        )
        runtime.start()
        applied = sum(runtime.store.counts("admin", "Task").values())
        print(f"start with {per * 10} documents in 10 files in the specs folder: applied in "
              f"{time.perf_counter() - t0:.2f}s (admin's Tasks: {applied}, with those made above)")  # fmt: skip
        runtime.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
