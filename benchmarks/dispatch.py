"""Dispatch throughput: N Tasks due at the same instant against a local no-op endpoint.

Prints, from one run on this machine:
  - the raw rate of plain keep-alive http.client connections against the same endpoint (1 and 16 threads);
  - the engine's call rate: N Tasks due at once, from their due time to the last
    arrival at the endpoint, as a share of the raw 16-thread rate (goal >= 80 %);
  - when every result is durable (all N final in the store);
  - lateness (arrival minus due) p50 / p99 / max;
  - with --stored M: M far-future Tasks already in the store (goal: >= 90 % of the empty figure);
  - the service's and the store's RSS.

Usage: python benchmarks/dispatch.py [--tasks 1000] [--workers 16] [--stored 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import requests

from common import calls, create, embedded_store, endpoint, pct, raw_rate, rss_mb, runtime, wait_durable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--stored", type=int, default=0, help="far-future Tasks stored beforehand")
    args = parser.parse_args()

    with endpoint() as base, embedded_store() as (server, tmp):
        raw1 = raw_rate(base + "/ok", args.tasks, 1)
        rawn = raw_rate(base + "/ok", args.tasks, args.workers)
        rt = runtime(server, tmp, workers=args.workers)
        try:
            if args.stored:
                t0 = time.monotonic()
                far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
                create(rt, base + "/ok", [far] * args.stored, owner="stored", prefix="s")
                print(f"stored {args.stored} far-future Tasks in {time.monotonic() - t0:.0f}s")
            requests.delete(base + "/_calls", timeout=5)
            lead = 5 + args.tasks / 400
            due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
            create(rt, base + "/ok", [due] * args.tasks)
            if dt.datetime.now(dt.UTC) > due - dt.timedelta(seconds=3):
                print("warning: creating took longer than planned; the due time was close")
            done = wait_durable(rt, args.tasks)
            service_rss = rss_mb()
            store_rss = rss_mb(server.process.pid if server.process else None)
        finally:
            rt.stop()
        got = calls(base)

    due_ts = due.timestamp()
    arrivals = sorted(float(c["at"]) for c in got)  # type: ignore[arg-type]
    lateness = [(a - due_ts) * 1000 for a in arrivals]
    engine = len(arrivals) / (arrivals[-1] - due_ts)
    print(f"tasks due at once:               {args.tasks} (workers {args.workers}, stored {args.stored})")
    print(f"calls received:                  {len(got)} ({len({c['query'] for c in got})} distinct)")
    print(f"raw http.client, 1 thread:  {raw1:6.0f} calls/s")
    print(f"raw http.client, {args.workers} threads: {rawn:6.0f} calls/s")
    print(
        f"engine, due -> last arrival:     {engine:6.0f} calls/s = {engine / rawn:.0%} of raw {args.workers}-thread"
    )
    print(f"every result durable after:      {done - due_ts:.2f}s")
    print(
        f"lateness p50 {statistics.median(lateness):.0f} ms, p99 {pct(lateness, 99):.0f} ms, max {max(lateness):.0f} ms"
    )
    print(f"RSS: service {service_rss:.0f} MB, store {store_rss:.0f} MB")


if __name__ == "__main__":
    main()
