"""Limits per key: the store work a limited call costs, beside an unlimited call in the same run.

N Tasks fall due at the same instant against a local endpoint, four times on the same embedded
store, one after another:

  - `none`: no limit (the base);
  - `concurrency-wide`: `concurrency: {key, limit: N}`, a limit the burst never reaches (each call
    takes a place in the store and releases it);
  - `concurrency-L`: `concurrency: {key, limit: L}` (calls wait; a freed place goes to the next
    call of the process);
  - `rate-wide`: `rate: {key, limit: N, per: 1m}` (each call takes a rate place).

For each it prints the MongoDB commands sent per call, all of them and those on the `limits`
collection (pymongo's command monitoring, from the due time until every result is stored), the
store time those commands took per call (their summed durations), when the last result was
durable, and the lateness at the endpoint (arrival minus due) p50 / p99.

Usage: python benchmarks/limits.py [--tasks 500] [--limit 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import requests
from pymongo import monitoring

from common import Commands, calls, embedded_store, endpoint, pct, runtime
from lambdaop.app.applying import Placed
from lambdaop.core.errors import Problem
from lambdaop.spec import Document, Task


def create(rt: Any, url: str, n: int, due: dt.datetime, prefix: str, limits: dict[str, Any]) -> None:
    items = []
    for i in range(n):
        spec = {"invoke": f"{url}?i={prefix}{i}", "at": due.isoformat(), **limits}
        task = Task.model_validate({"metadata": {"name": f"{prefix}{i}"}, "spec": spec})
        items.append(Placed(Document(i, 1, task, list[Problem]()), "bench"))
    rt.applier.apply_placed(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated ways to run (default: all four)")
    args = parser.parse_args()
    n = args.tasks
    commands = Commands()
    monitoring.register(commands)
    ways = [
        ("none", {}),
        ("concurrency-wide", {"concurrency": {"key": "wide", "limit": min(1000, n)}}),
        (f"concurrency-{args.limit}", {"concurrency": {"key": "narrow", "limit": args.limit}}),
        ("rate-wide", {"rate": {"key": "rate", "limit": min(1000, n), "per": "1m"}}),
    ]
    if args.only:
        ways = [w for w in ways if w[0] in args.only.split(",")]
    rows = []
    with endpoint() as base, embedded_store() as (server, tmp):
        rt = runtime(server, tmp)
        try:
            done = 0
            for name, limits in ways:
                requests.delete(base + "/_calls", timeout=5)
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4 + n / 400)
                create(rt, base + "/ok", n, due, name, limits)
                while dt.datetime.now(dt.UTC) < due - dt.timedelta(milliseconds=200):
                    time.sleep(0.05)
                commands.reset()
                commands.on = True
                done += n
                deadline = time.monotonic() + 300
                while sum(rt.store.counts("bench", "Task").get(s, 0) for s in ("completed", "failed")) < done:
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"{name}: only {rt.store.counts('bench', 'Task')} of {done} after 300 s"
                        )
                    time.sleep(0.1)
                durable = time.time() - due.timestamp()
                commands.on = False
                got = calls(base)
                late = [(float(c["at"]) - due.timestamp()) * 1000 for c in got]  # type: ignore[arg-type]
                total, limit_ops = sum(commands.count.values()), commands.count["limits"]
                micros = sum(commands.micros.values())
                top = ", ".join(f"{k} {v}" for k, v in commands.count.most_common(6))
                print(f"{name}: commands by collection: {top}")
                rows.append((name, len(got), total / n, limit_ops / n, micros / n / 1000, durable, pct(late, 50), pct(late, 99)))  # fmt: skip
        finally:
            rt.stop()
    print(f"{n} Tasks due at once, one process, embedded store")
    print(f"{'limit':<18} {'calls':>6} {'cmds/call':>10} {'limits/call':>12} {'store ms/call':>14} {'durable s':>10} {'late p50':>9} {'p99 ms':>7}")  # fmt: skip
    base_cmds = rows[0][2]
    for name, got, per, lim, ms, durable, p50, p99 in rows:
        print(f"{name:<18} {got:>6} {per:>10.2f} {lim:>12.2f} {ms:>14.2f} {durable:>10.2f} {p50:>9.0f} {p99:>7.0f}   (+{per - base_cmds:.2f} commands per call beside none)")  # fmt: skip


if __name__ == "__main__":
    main()
