"""Lateness under steady load: Tasks due at a constant rate, measured where they arrive.

Creates rate x secs Tasks due evenly spaced (one every 1/rate seconds) starting
a little after they are all stored, then prints the lateness at the endpoint
(arrival minus due time) p50 / p99 / max, per 10-second slice and overall,
beside the raw http.client rate against the same endpoint. Goal: p50 <=
5 ms, p99 <= 25 ms at 200 calls/s. With --stored M, M far-future Tasks are
stored first (goal: >= 90 % of the empty-store figures).

With --ceiling 200,400,...: each rate on a fresh store, lowest first, until one
misses p99 <= --bound ms (100); prints the highest rate held beside the store's
own bulk-update rate measured in the same run.

With --commands: the store's commands per call, by command and collection, and
the time this process waited for each (pymongo's command monitoring).

Usage: python benchmarks/lateness.py [--rate 200] [--secs 60] [--stored 0] [--commands]
       python benchmarks/lateness.py --ceiling 200,400,600,800,1000 --secs 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from pymongo import monitoring

from common import (
    Commands,
    CpuMeter,
    arrivals,
    calls,
    create,
    embedded_store,
    endpoint,
    lateness_ms,
    pct,
    raw_rate,
    rss_mb,
    runtime,
    store_rates,
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


@dataclass
class Figures:
    rate: float
    secs: float
    late: list[float]  # ms, one per call, in due order
    received: int
    distinct: int
    delivered: float  # calls/s from the first due time to the last arrival
    overdue: bool  # creating took longer than planned
    raw: float
    cpu: str
    service_rss: float
    store_rss: float

    @property
    def p99(self) -> float:
        return pct(self.late, 99)


COMMANDS: Commands | None = None  # with --commands: the store's commands per call while the calls run


def measure(rate: float, secs: float, stored: int = 0, workers: int = 16, lead: float = 700) -> Figures:
    """One steady run on a fresh embedded store: rate x secs Tasks, due evenly spaced from a
    little after they are all created (planned at `lead` creations per second)."""
    n = int(rate * secs)
    with endpoint() as base, embedded_store() as (server, tmp):
        raw = raw_rate(base + "/ok", 1000, workers)
        rt = runtime(server, tmp, workers=workers)
        try:
            if stored:
                t0 = time.monotonic()
                far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
                create(rt, base + "/ok", [far] * stored, owner="stored", prefix="s")
                print(f"stored {stored} far-future Tasks in {time.monotonic() - t0:.0f}s")
            requests.delete(base + "/_calls", timeout=5)
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5 + n / lead)
            start = start.replace(
                microsecond=start.microsecond // 1000 * 1000
            )  # due times are kept to the ms
            dues = [start + dt.timedelta(milliseconds=round(i * 1000 / rate)) for i in range(n)]
            create(rt, base + "/ok", dues)
            overdue = dt.datetime.now(dt.UTC) > start
            if overdue:
                print("warning: creating took longer than planned; the first Tasks were overdue")
            meter = CpuMeter(server.process.pid if server.process else None)
            time.sleep(max(0.0, (start - dt.datetime.now(dt.UTC)).total_seconds()))
            meter.start()
            if COMMANDS is not None:
                COMMANDS.reset()
                COMMANDS.on = True
            if os.environ.get("BENCH_TRACE"):  # the loop's queues every 2 s, to see where work waits
                threading.Thread(target=trace, args=(rt,), daemon=True).start()
            wait_durable(rt, n)
            cpu = meter.stop()
            if COMMANDS is not None:
                COMMANDS.on = False
            service_rss = rss_mb()
            store_rss = rss_mb(server.process.pid if server.process else None)
        finally:
            rt.stop()
        got = calls(base)
    by_index = arrivals(got)
    late = lateness_ms(by_index, dues)
    times = sorted(by_index.values())
    delivered = len(times) / (times[-1] - dues[0].timestamp()) if len(times) > 1 else 0.0
    return Figures(
        rate, secs, late, len(got), len(by_index), delivered, overdue, raw, cpu, service_rss, store_rss
    )


def report(f: Figures, stored: int) -> None:
    late = f.late
    if os.environ.get("BENCH_DUMP"):  # one line per call: its index and lateness in ms
        Path(os.environ["BENCH_DUMP"]).write_text("".join(f"{i} {x:.1f}\n" for i, x in enumerate(late)))
    print(f"steady load: {f.rate:g} calls/s for {f.secs:g}s = {int(f.rate * f.secs)} Tasks (stored {stored})")
    print(f"calls received: {f.received} ({f.distinct} distinct)")
    print(f"raw http.client: {f.raw:.0f} calls/s")
    step = int(f.rate * 10)
    for s in range(0, len(late), step):
        part = late[s : s + step]
        print(f"  {s / f.rate:4.0f}-{(s + len(part)) / f.rate:3.0f}s: p50 {statistics.median(part):6.1f} ms, p99 {pct(part, 99):6.1f} ms")  # fmt: skip
    print(f"lateness p50 {statistics.median(late):.1f} ms, p99 {f.p99:.1f} ms, max {max(late):.1f} ms, early {sum(1 for x in late if x < 0)}")  # fmt: skip
    print(f"delivered: {f.delivered:.0f} calls/s from the first due time to the last arrival")
    print(f"CPU from the first due time until every result was durable: {f.cpu}")
    print(f"RSS: service {f.service_rss:.0f} MB, store {f.store_rss:.0f} MB")
    if COMMANDS is not None:
        n = max(1, f.distinct)
        total = sum(COMMANDS.micros.values()) / 1000 / n
        print(
            f"store commands per call (pymongo's command times, the waits of this process): {total:.2f} ms in all"
        )
        for name, micros in COMMANDS.micros.most_common(10):
            print(
                f"  {name:28s} {COMMANDS.count[name] / n:6.3f} per call, {micros / 1000 / n:5.2f} ms per call"
            )


def ceiling(rates: list[float], secs: float, workers: int, bound: float) -> None:
    """Each rate on a fresh store, lowest first, until one misses p99 <= bound; the highest held,
    beside the store's own bulk-update rate measured in the same run."""
    with embedded_store() as (server, _):
        inserted, updated = store_rates(server.uri + "&retryWrites=false")
    print(f"store's own rates: insert_many {inserted:,.0f} documents/s, bulk update by _id {updated:,.0f} documents/s")  # fmt: skip
    held: Figures | None = None
    for rate in sorted(rates):
        f = measure(rate, secs, workers=workers)
        ok = (
            f.p99 <= bound and f.delivered >= 0.99 * rate and f.distinct == int(rate * secs) and not f.overdue
        )
        print(f"  {rate:6.0f} calls/s for {secs:g}s: delivered {f.delivered:6.0f}/s, lateness p50 {statistics.median(f.late):7.1f} ms, "
              f"p99 {f.p99:8.1f} ms, {f.distinct} distinct calls{'' if not f.overdue else ' (created late)'}: {'held' if ok else 'missed'}; CPU {f.cpu}", flush=True)  # fmt: skip
        if not ok:
            break
        held = f
    if held is None:
        print(f"no rate tried held p99 <= {bound:g} ms")
        return
    print(f"highest steady rate held with p99 <= {bound:g} ms: {held.rate:g} calls/s = {held.rate / updated:.0%} of the store's own bulk-update rate ({updated:,.0f}/s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--secs", type=float, default=60)
    parser.add_argument("--stored", type=int, default=0, help="far-future Tasks stored beforehand")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--ceiling",
        default="",
        help="rates to step through, e.g. 200,400,600,800,1000: the highest that holds",
    )
    parser.add_argument("--bound", type=float, default=100.0, help="the p99 lateness (ms) a rate must hold")
    parser.add_argument("--commands", action="store_true", help="the store's commands per call, by command")
    args = parser.parse_args()
    if args.commands:
        global COMMANDS
        COMMANDS = Commands(by_command=True)
        monitoring.register(COMMANDS)
    if args.ceiling:
        ceiling([float(r) for r in args.ceiling.split(",")], args.secs, args.workers, args.bound)
        return
    report(measure(args.rate, args.secs, args.stored, args.workers), args.stored)


if __name__ == "__main__":
    main()
