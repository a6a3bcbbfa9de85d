"""Faults: kill -9 during a run, and a process dying while others share its store.

Two experiments, each printing what a user would check:

  --mode kills (default): `lambdaop serve` on its embedded store with N Tasks due
  over a span of seconds, killed with -9 at random moments K times and started
  again each time. Prints: Tasks lost (never called), called more than twice,
  repeats with a different Idempotency-Key, the counters against a recount.

  --mode shared: P `lambdaop serve` processes sharing one store (the embedded
  server, reached by URI), N Tasks due together, one process killed with -9 mid-run (none with
  --no-kill: then no call may repeat and no live process may lose a lease),
  R times. Prints per run: repeated calls, whether every repeat kept its key, how
  long the survivors' store writes took at most (a stall shows here), when the
  last Task finished after the kill (the lease plus a little), the counters
  against a recount.

  --mode store-kill | store-stall [--stall 10] | disk-full: the store's own faults under
  steady load (see store_faults.py): calls due, made, lost, repeated, lateness before,
  during and after, and what /readyz and a creation answered meanwhile.

Usage: python benchmarks/faults.py [--mode kills] [--tasks 2000] [--kills 10]
       python benchmarks/faults.py --mode shared [--processes 4] [--runs 5] [--tasks 2000] [--lease 5s] [--no-kill | --victim N]
       python benchmarks/faults.py --mode store-stall --stall 10 [--tasks 2000] [--rate 100]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from common import calls, embedded_store, endpoint
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import MongoStore, start_embedded


def specs_text(base: str, n: int, start: dt.datetime, span: float) -> str:
    docs = []
    for i in range(n):
        at = (start + dt.timedelta(seconds=span * i / n)).isoformat()
        docs.append(
            f"kind: Task\nmetadata: {{name: t{i}}}\nspec: {{invoke: '{base}/ok?i={i}', at: '{at}'}}\n"
        )
    return "---\n".join(docs)


def serve(
    state: Path, specs: Path, log: Path, env: dict[str, str] | None = None, *extra: str
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "lambdaop.cli", "serve", "--state-dir", str(state), "--specs", str(specs),
           "--allow-hosts", "127.0.0.1", "--port", "0", *extra]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )


def recount(store: MongoStore, owner: str = "admin") -> tuple[dict[str, int], dict[str, int]]:
    real: collections.Counter[str] = collections.Counter()
    for doc in store.objects.find({"_id": {"$gt": ""}}, {"state": 1, "kind": 1, "owner": 1}):
        if doc["owner"] == owner and doc["kind"] == "Task":
            real[doc["state"]] += 1
    counted = {k: v for k, v in store.counts(owner, "Task").items() if v}
    return dict(real), counted


def judge(got: list[dict[str, Any]], n: int) -> tuple[int, int, int, int]:
    by_task: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for c in got:
        by_task[str(c["query"])].append(c)
    lost = n - len(by_task)
    twice = sum(1 for v in by_task.values() if len(v) == 2)
    more = sum(1 for v in by_task.values() if len(v) > 2)
    other_key = sum(1 for v in by_task.values() if len({c["idempotency_key"] for c in v}) > 1)
    return lost, twice, more, other_key


def kills(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-faults-"))
    state, specs, log = tmp / "state", tmp / "specs", tmp / "serve.log"
    specs.mkdir()
    with endpoint() as base:
        start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)
        (specs / "load.yaml").write_text(specs_text(base, args.tasks, start, args.span))
        proc = serve(state, specs, log)
        rng = random.Random(args.seed)
        moments = sorted(start.timestamp() + rng.uniform(0.5, args.span - 0.5) for _ in range(args.kills))
        started = 1
        for moment in moments:  # kill while calls are due, each time once the last start is serving
            while log.read_text().count("reconcile loop started") < started or time.time() < moment:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = serve(state, specs, log)
            started += 1
        deadline = time.time() + 300
        while time.time() < deadline:
            got = calls(base)
            if (
                len({c["query"] for c in got}) >= args.tasks
                and time.time() > start.timestamp() + args.span + 5
            ):
                break
            time.sleep(1)
        time.sleep(5)  # late duplicates would show now
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        got = calls(base)
    server = EmbeddedServer(state)
    start_embedded(server)
    try:
        store = MongoStore(server.uri, embedded=True)
        real, counted = recount(store)
        store.close()
    finally:
        server.stop()
    lost, twice, more, other_key = judge(got, args.tasks)
    print(
        f"{args.tasks} Tasks over {args.span:g}s, {args.kills} kill -9 of serve (embedded store), restarted each time"
    )
    print(f"calls: {len(got)}; lost: {lost}; called twice: {twice}; more than twice: {more}; repeats with another key: {other_key}")  # fmt: skip
    print(f"states recounted: {real}; counters: {counted}; {'equal' if real == counted else 'DIFFERENT'}")


def shared(args: argparse.Namespace) -> None:
    lease = args.lease
    with endpoint() as base, embedded_store() as (server, tmp):
        uri = server.uri + "&retryWrites=false"
        for run in range(args.first_run, args.runs):
            database = f"run{run}"
            env = {"LAMBDAOP_MONGODB_URI": uri, "LAMBDAOP_DATABASE": database}
            requests.delete(base + "/_calls", timeout=10)
            specs = tmp / f"specs{run}"
            specs.mkdir()
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
            (specs / "load.yaml").write_text(specs_text(base, args.tasks, start, 0.0))
            logs = [tmp / f"run{run}-p{p}.log" for p in range(args.processes)]
            # one process applies the folder; the others share the store and the work
            procs = [serve(tmp / f"state{run}-{p}", specs if p == 0 else tmp / f"empty{run}-{p}", logs[p], env, "--lease", lease)
                     for p in range(args.processes)]  # fmt: skip
            victim = (
                (args.victim - 1 if args.victim else random.Random(args.seed + run).randrange(args.processes))
                if not args.no_kill
                else -1
            )
            time.sleep(max(0.0, start.timestamp() - time.time()) + random.Random(run).uniform(0.05, 0.6))
            if victim >= 0:
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(10)
            killed = time.time()
            store = MongoStore(uri, database, embedded=True)
            deadline = time.time() + 180
            while time.time() < deadline:
                counts = store.counts("admin", "Task")
                if counts.get("completed", 0) >= args.tasks:
                    break
                time.sleep(0.5)
            done = time.time()
            stalled = counts.get("completed", 0) < args.tasks
            time.sleep(3)
            for p, proc in enumerate(procs):
                if p != victim:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        stalled = True
                        proc.kill()
                        proc.wait(10)
            got = calls(base)
            real, counted = recount(store)
            store.close()
            lost, twice, more, other_key = judge(got, args.tasks)
            slowest = 0.0
            for p, path in enumerate(logs):
                if p == victim:
                    continue
                for m in re.finditer(r"a store commit took ([0-9.]+)s", path.read_text()):
                    slowest = max(slowest, float(m.group(1)))
            what = (
                f"process {victim + 1} killed {killed - start.timestamp():+.2f}s from the due time"
                if victim >= 0
                else "none killed"
            )
            lapsed = sum(len(re.findall(r"objects of a stopped process are due again|ended the open transactions of stopped process", path.read_text())) for path in logs)  # fmt: skip
            print(
                f"run {run + 1}: {args.processes} processes, {what}; "
                f"lost {lost}, repeated {twice + more} (more than twice {more}, another key {other_key}); "
                f"survivors' slowest commit {slowest:.2f}s; all final {done - killed:.1f}s after the {'kill' if victim >= 0 else 'due time'}; "
                f"leases taken over from a process thought stopped: {lapsed} log line(s); "
                f"counters {'equal the recount' if real == counted else f'DIFFER: {counted} vs {real}'}"
                + (
                    f"; STALLED: {counts.get('completed', 0)} completed after 180 s, or a survivor did not stop"
                    if stalled
                    else ""
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--mode", choices=["kills", "shared", "store-kill", "store-stall", "disk-full"], default="kills"
    )
    parser.add_argument("--stall", type=float, default=10.0, help="store-stall: seconds the store is stopped")
    parser.add_argument("--rate", type=float, default=100.0, help="store modes: calls due per second")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument(
        "--span", type=float, default=20.0, help="seconds over which the Tasks fall due (kills)"
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--first-run", type=int, default=0, help="start at this run (to repeat one)")
    parser.add_argument("--lease", default="5s")
    parser.add_argument(
        "--no-kill", action="store_true", help="shared: kill no process (a live process must lose no lease)"
    )
    parser.add_argument(
        "--victim",
        type=int,
        default=0,
        help="shared: kill this process (1: the one that applies the folder, which makes most calls; default: one at random)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.mode.startswith(("store", "disk")):
        import store_faults

        store_faults.run(args)
    else:
        kills(args) if args.mode == "kills" else shared(args)


if __name__ == "__main__":
    main()
