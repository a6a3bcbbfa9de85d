"""Recurring Tasks on the embedded store: every run exactly once, on time, through a kill -9.

  default: `lambdaop serve` (embedded store) with N Tasks `cron: "*/1 * * * *"` for M
  minutes. Prints runs expected against runs seen (distinct Idempotency-Keys, and
  repeats), and the lateness of the runs (arrival minus the minute) p50/p99 per minute.
  With --kill, serve is killed with -9 in the second minute and started again at once.

  --downtime S: three Tasks every minute, catchUp none / latest / all; serve is
  stopped for S seconds (default 180) and started again. Prints the runs each one
  made for the minutes it missed.

Usage: python benchmarks/recurring.py [--tasks 1000] [--minutes 5] [--kill]
       python benchmarks/recurring.py --downtime 180
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from common import calls, endpoint, pct


def serve(state: Path, specs: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "lambdaop.cli.main", "serve", "--state-dir", str(state), "--specs", str(specs),
           "--allow-hosts", "127.0.0.1", "--port", "0"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_minute_boundary(offset: float = 0.0) -> float:
    now = time.time()
    target = (int(now // 60) + 1) * 60 + offset
    time.sleep(max(0.0, target - now))
    return target


def spec(name: str, base: str, catch_up: str = "latest") -> str:
    return (
        f"kind: Task\nmetadata: {{name: {name}}}\nspec:\n  invoke: '{base}/ok?t={name}'\n"
        f"  schedule: {{cron: '*/1 * * * *', catchUp: {catch_up}}}\n"
    )


def runs(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-recurring-"))
    state, specs, log = tmp / "state", tmp / "specs", tmp / "serve.log"
    specs.mkdir()
    with endpoint() as base:
        (specs / "load.yaml").write_text("---\n".join(spec(f"r{i}", base) for i in range(args.tasks)))
        proc = serve(state, specs, log)
        first = wait_minute_boundary(-5)  # applied well before the first minute
        requests.delete(base + "/_calls", timeout=10)
        first = wait_minute_boundary()
        killed = None
        if args.kill:
            time.sleep(60 + random.Random(args.seed).uniform(5, 50))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed = time.time()
            proc = serve(state, specs, log)
        end = first + 60 * args.minutes
        time.sleep(max(0.0, end - time.time() - 1))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        got = [c for c in calls(base) if float(c["at"]) < end - 0.5]  # type: ignore[arg-type]
    keys = collections.Counter(str(c["idempotency_key"]) for c in got)
    per_minute: dict[int, list[float]] = collections.defaultdict(list)
    for c in got:
        at = float(c["at"])  # type: ignore[arg-type]
        minute = int(at // 60) * 60
        per_minute[int((minute - first) // 60)].append((at - minute) * 1000)
    expected = args.tasks * args.minutes
    print(f"{args.tasks} Tasks cron */1 for {args.minutes} minutes" + (f", serve killed -9 at {killed - first:.0f}s and restarted" if killed else ""))  # fmt: skip
    print(f"runs expected {expected}, seen {len(keys)} distinct keys, calls {len(got)}, repeated keys {sum(1 for n in keys.values() if n > 1)}")  # fmt: skip
    for minute in sorted(per_minute):
        late = per_minute[minute]
        print(f"  minute {minute + 1}: {len(late)} runs, lateness p50 {statistics.median(late):.0f} ms, p99 {pct(late, 99):.0f} ms")  # fmt: skip


def downtime(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-recurring-"))
    state, specs, log = tmp / "state", tmp / "specs", tmp / "serve.log"
    specs.mkdir()
    with endpoint() as base:
        (specs / "three.yaml").write_text(
            "---\n".join(spec(f"catch-{p}", base, p) for p in ("none", "latest", "all"))
        )
        proc = serve(state, specs, log)
        wait_minute_boundary(5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stopped = time.time()
        requests.delete(base + "/_calls", timeout=10)
        time.sleep(args.downtime)
        proc = serve(state, specs, log)
        restarted = time.time()
        time.sleep(20)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        got = calls(base)
    missed = int(restarted // 60) - int(stopped // 60)
    print(
        f"serve stopped for {restarted - stopped:.0f}s ({missed} minute(s) missed); runs in the 20 s after it came back:"
    )
    for policy in ("none", "latest", "all"):
        mine = sorted(float(c["at"]) - restarted for c in got if f"t=catch-{policy}" in str(c["query"]))  # type: ignore[arg-type]
        print(f"  catchUp {policy:6}: {len(mine)} run(s) at " + ", ".join(f"+{t:.1f}s" for t in mine))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--downtime", type=float, default=0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    downtime(args) if args.downtime else runs(args)


if __name__ == "__main__":
    main()
