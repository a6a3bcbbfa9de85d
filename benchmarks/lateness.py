"""Lateness under steady load: Tasks due at a constant rate, measured where they arrive.

Creates rate x secs Tasks due evenly spaced (one every 1/rate seconds) starting
a little after they are all stored, then prints the lateness at the endpoint
(arrival minus due time) p50 / p99 / max, per 10-second slice and overall,
beside the raw http.client rate against the same endpoint. Goal: p50 <=
5 ms, p99 <= 25 ms at 200 calls/s. With --stored M, M far-future Tasks are
stored first (goal: >= 90 % of the empty-store figures).

Usage: python benchmarks/lateness.py [--rate 200] [--secs 60] [--stored 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import threading
import time
from pathlib import Path

import requests

from common import (
    CpuMeter,
    calls,
    create,
    embedded_store,
    endpoint,
    pct,
    raw_rate,
    rss_mb,
    runtime,
    wait_durable,
)
from lambdaop.runtime.runtime import Runtime


def trace(rt: Runtime) -> None:
    t0 = time.monotonic()
    while True:
        time.sleep(2)
        r = rt.reconciler
        print(
            f"  [{time.monotonic() - t0:5.1f}s] upcoming {len(r.upcoming)}, held {len(r.held)}, out {r.held.in_flight}, "
            f"writer backlog {rt.writer.backlog}, batches {rt.writer.batches}, last commit {rt.writer.last_batch_seconds * 1000:.0f} ms, "
            f"store jobs {r.io._jobs.qsize()}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--secs", type=float, default=60)
    parser.add_argument("--stored", type=int, default=0, help="far-future Tasks stored beforehand")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    n = int(args.rate * args.secs)

    with endpoint() as base, embedded_store() as (server, tmp):
        raw = raw_rate(base + "/ok", 1000, args.workers)
        rt = runtime(server, tmp, workers=args.workers)
        try:
            if args.stored:
                t0 = time.monotonic()
                far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
                create(rt, base + "/ok", [far] * args.stored, owner="stored", prefix="s")
                print(f"stored {args.stored} far-future Tasks in {time.monotonic() - t0:.0f}s")
            requests.delete(base + "/_calls", timeout=5)
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5 + n / 1500)
            start = start.replace(
                microsecond=start.microsecond // 1000 * 1000
            )  # due times are kept to the ms
            dues = [start + dt.timedelta(milliseconds=round(i * 1000 / args.rate)) for i in range(n)]
            create(rt, base + "/ok", dues)
            if dt.datetime.now(dt.UTC) > start:
                print("warning: creating took longer than planned; the first Tasks were overdue")
            meter = CpuMeter(server.process.pid if server.process else None)
            time.sleep(max(0.0, (start - dt.datetime.now(dt.UTC)).total_seconds()))
            meter.start()
            if os.environ.get("BENCH_TRACE"):  # the loop's queues every 2 s, to see where work waits
                threading.Thread(target=trace, args=(rt,), daemon=True).start()
            wait_durable(rt, n)
            cpu = meter.stop()
            service_rss = rss_mb()
            store_rss = rss_mb(server.process.pid if server.process else None)
        finally:
            rt.stop()
        got = calls(base)

    by_index = {int(str(c["query"]).split("=")[1]): float(c["at"]) for c in got}  # type: ignore[arg-type]
    late = [(by_index[i] - dues[i].timestamp()) * 1000 for i in sorted(by_index)]
    if os.environ.get("BENCH_DUMP"):  # one line per call: its index and lateness in ms
        Path(os.environ["BENCH_DUMP"]).write_text("".join(f"{i} {x:.1f}\n" for i, x in enumerate(late)))
    print(f"steady load: {args.rate:g} calls/s for {args.secs:g}s = {n} Tasks (stored {args.stored})")
    print(f"calls received: {len(got)} ({len(by_index)} distinct)")
    print(f"raw http.client, {args.workers} threads: {raw:.0f} calls/s")
    step = int(args.rate * 10)
    for s in range(0, len(late), step):
        part = late[s : s + step]
        print(
            f"  {s / args.rate:4.0f}-{(s + len(part)) / args.rate:3.0f}s: p50 {statistics.median(part):6.1f} ms, p99 {pct(part, 99):6.1f} ms"
        )
    print(
        f"lateness p50 {statistics.median(late):.1f} ms, p99 {pct(late, 99):.1f} ms, max {max(late):.1f} ms, early {sum(1 for x in late if x < 0)}"
    )
    arrivals = sorted(by_index.values())
    if len(arrivals) > 1:
        print(
            f"delivered: {len(arrivals) / (arrivals[-1] - dues[0].timestamp()):.0f} calls/s from the first due time to the last arrival"
        )
    print(f"CPU from the first due time until every result was durable: {cpu}")
    print(f"RSS: service {service_rss:.0f} MB, store {store_rss:.0f} MB")


if __name__ == "__main__":
    main()
