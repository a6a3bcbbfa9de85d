"""The control plane at scale, on the embedded store: storing, creating and reading with N objects stored.

One run prints, each beside its base measured in the same run:
  1. the embedded server's own rates: `insert_many` and bulk `update_one` by _id (documents/s);
  2. `POST /specs` of N Tasks in bodies of 2,000 (documents/s and the time for N);
  3. `POST /scheduler/schedule` and `GET /healthz` from wrk (a C load generator, one thread, so the
     client hardly takes the server's CPU), with the ratio of the two; then the creations again
     while --firing calls/s (200) fall due, beside the idle rate, and those calls' lateness;
  4. with N stored: p50/p99 of the first page of a list, a state filter (matching every object and
     matching none), a label filter, a name-prefix search, the next pages, the original list route,
     and the dashboard, each beside `GET /healthz` from the same client;
  5. the time from start to `/readyz` answering 200 with N stored, and the RSS of the service and
     of the store;
  6. with --idle SECONDS: the store's RSS each minute while the service idles with N stored, its
     growth over the whole time, and the store's disk beside the size of the documents it holds.

Usage: python benchmarks/scale.py [--stored 100000] [--reads 100] [--seconds 10] [--idle 600]
       (--stored 1000000 for the million; --reuse FOLDER measures an earlier run's store again)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pymongo
import requests

from common import (
    TEAMS,
    arrivals,
    calls,
    create,
    embedded_store,
    endpoint,
    lateness_ms,
    pct,
    rss_mb,
    store_rates,
    wait_durable,
)
from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime

BODY = 2000  # documents per POST /specs

WRK_POST = """
wrk.method = "POST"
wrk.body = '{"url": "http://127.0.0.1:9/ok", "delay": 36000000}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
"""
WRK_DONE = """
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("%.0f %.2f %.2f %d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
"""


def wrk(url: str, script: str, connections: int, seconds: int) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms, errors of one wrk run."""
    path = Path(tempfile.mkdtemp()) / "load.lua"
    path.write_text(script + WRK_DONE)
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(path), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate, p50, p99, bad = out.stdout.strip().splitlines()[-1].split()
    return float(rate), float(p50), float(p99), int(bad)


def body(start: int, n: int, now: dt.datetime) -> str:
    """YAML of Tasks start..start+n: 1 in 200 due within the hour (drawn by the dashboard), the rest
    later today or tomorrow, so nothing fires while the figures are taken."""
    out = []
    for i in range(start, start + n):
        due = now + (
            dt.timedelta(minutes=50, seconds=i % 600) if i % 200 == 0 else dt.timedelta(hours=3, seconds=i)
        )
        out.append(
            f"apiVersion: lambdaop/v1\nkind: Task\nmetadata: {{name: s{i}, labels: {{team: t{i % TEAMS}, "
            f"env: {'prod' if i % 2 else 'dev'}}}}}\nspec:\n  invoke: http://127.0.0.1:9/ok?i={i}\n"
            f"  at: '{due.isoformat()}'\n"
        )
    return "---\n".join(out)


def timed(session: requests.Session, url: str, reads: int) -> tuple[float, float]:
    """p50 and p99 (ms) of `reads` GETs of one URL, one after another."""
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        r = session.get(url, timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"GET {url}: {r.status_code} {r.text[:300]}")
    return pct(times, 50), pct(times, 99)


def walk(session: requests.Session, url: str, pages: int) -> tuple[float, float, int]:
    """p50 and p99 (ms) of following `next` through `pages` pages, and how many rows they held."""
    times, rows, cursor = [], 0, None
    for _ in range(pages):
        t0 = time.perf_counter()
        r = session.get(url + (f"&cursor={requests.utils.quote(cursor)}" if cursor else ""), timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
        body = r.json()
        rows += len(body["tasks"])
        cursor = body.get("next")
        if not cursor:
            break
    return pct(times, 50), pct(times, 99), rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=100, help="GETs per read figure")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--idle", type=int, default=0, help="seconds to watch the store's RSS and disk while idle"
    )
    parser.add_argument(
        "--firing", type=float, default=200, help="calls/s due while creations are measured again (0: not)"
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="the folder of an earlier run (printed at its start): measure it again, store nothing",
    )
    parser.add_argument(
        "--skip-reads", action="store_true", help="store N, then only the start and --idle figures"
    )
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # its queue-depth notes are not figures
    have_wrk = shutil.which("wrk") is not None
    with embedded_store(args.reuse) as (server, tmp):
        print(f"store folder: {tmp}" + (" (reused: nothing is stored again)" if args.reuse else ""))
        uri = server.uri + "&retryWrites=false"
        inserted, updated = store_rates(uri)
        print(f"store's own rates: insert_many {inserted:,.0f} documents/s, bulk update by _id {updated:,.0f} documents/s")  # fmt: skip

        config = Config(
            state_dir=tmp / "state", specs_dir=None, mongodb_uri=uri, port=0,
            allow_hosts=Policy.parse("127.0.0.1"),
        )  # fmt: skip
        rt = Runtime(config)
        rt.start()
        saved = tmp / "state" / "admin.token"  # written at the first start; a reused store has it
        url, token = rt.url, rt.admin_token or (saved.read_text().strip() if saved.exists() else "")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        now = dt.datetime.now(dt.UTC)

        t0 = time.perf_counter()
        for start in range(0, 0 if args.reuse else args.stored, BODY):
            text = body(start, min(BODY, args.stored - start), now)
            r = session.post(url + "/specs", data=text.encode(), headers={"Content-Type": "application/yaml"}, timeout=600)  # fmt: skip
            if r.status_code != 200:
                raise SystemExit(f"POST /specs: {r.status_code} {r.text[:500]}")
        secs = time.perf_counter() - t0
        if not args.reuse:
            print(f"POST /specs of {args.stored:,} Tasks in bodies of {BODY}: {secs:.1f}s = {args.stored / secs:,.0f} documents/s "
                  f"= {args.stored / secs / inserted:.0%} of the store's insert_many")  # fmt: skip

        if have_wrk and not args.skip_reads:
            health = wrk(url + "/healthz", "", args.connections, args.seconds)
            post = wrk(url + "/scheduler/schedule", WRK_POST.replace("TOKEN", token), args.connections, args.seconds)  # fmt: skip
            print(f"wrk, {args.connections} connections, {args.seconds}s each:\n"
                  f"  GET /healthz:               {health[0]:7,.0f} req/s, p50 {health[1]:5.1f} ms, p99 {health[2]:6.1f} ms, {health[3]} errors\n"
                  f"  POST /scheduler/schedule:   {post[0]:7,.0f} req/s, p50 {post[1]:5.1f} ms, p99 {post[2]:6.1f} ms, {post[3]} errors"
                  f" = {post[0] / health[0]:.0%} of /healthz")  # fmt: skip
            if args.firing:
                while_firing(rt, url, token, args, post[0])
        elif not have_wrk:
            print("wrk is not installed (apt install wrk): the creation figures are left out")

        n = args.reads
        print(f"reads with {args.stored:,} Tasks stored, {n} GETs each, one client (p50 / p99 ms):")
        base = timed(session, url + "/healthz", n)
        figures: list[tuple[str, Callable[[], tuple[float, ...]]]] = [
            ("GET /healthz (the base)", lambda: base),
            ("first page GET /tasks?limit=50", lambda: timed(session, url + "/tasks?limit=50", n)),
            ("state filter, all match: state=scheduled", lambda: timed(session, url + "/tasks?state=scheduled&limit=50", n)),
            ("state filter, none match: state=failed", lambda: timed(session, url + "/tasks?state=failed&limit=50", n)),
            ("state=all", lambda: timed(session, url + "/tasks?state=all&limit=50", n)),
            ("label filter labelSelector=team=t7", lambda: timed(session, url + "/tasks?labelSelector=team%3Dt7&limit=50", n)),
            ("two labels team=t7,env=prod", lambda: timed(session, url + "/tasks?labelSelector=team%3Dt7,env%3Dprod&limit=50", n)),
            ("name prefix prefix=s1234", lambda: timed(session, url + "/tasks?prefix=s1234&limit=50", n)),
            ("next pages (following `next`)", lambda: walk(session, url + "/tasks?limit=50", n)[:2]),
            ("next pages of a label filter", lambda: walk(session, url + "/tasks?labelSelector=team%3Dt7&limit=50", n)[:2]),
            ("original /scheduler/retrieve-tasks?taskState=scheduled", lambda: timed(session, url + "/scheduler/retrieve-tasks?taskState=scheduled", n)),
            ("GET /dashboard", lambda: timed(session, url + "/dashboard", n)),
        ]  # fmt: skip
        for label, run in figures if not args.skip_reads else []:
            p50, p99 = run()[:2]
            print(
                f"  {label:58s} p50 {p50:6.1f}  p99 {p99:6.1f}  (p99 {p99 / max(base[1], 0.01):.0f}x /healthz)"
            )

        store_pid = server.process.pid if server.process else None
        service_rss, store_rss = rss_mb(), rss_mb(store_pid)
        rt.stop()
        t0 = time.perf_counter()
        rt = Runtime(config)
        rt.start()
        ready = None
        while time.perf_counter() - t0 < 300:
            try:
                if requests.get(rt.url + "/readyz", timeout=5).status_code == 200:
                    ready = time.perf_counter() - t0
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        print(f"start with {args.stored:,} stored: /readyz answered 200 after {ready:.1f}s" if ready else "not ready after 300 s")  # fmt: skip
        print(f"RSS after the reads: service {service_rss:.0f} MB, store {store_rss:.0f} MB; after a restart: "
              f"service {rss_mb():.0f} MB, store {rss_mb(store_pid):.0f} MB")  # fmt: skip
        if args.idle:
            idle(uri, server.state_dir, store_pid, args.idle)
        rt.stop()


def while_firing(rt: Runtime, url: str, token: str, args: argparse.Namespace, idle_rate: float) -> None:
    """The creation figure again while `--firing` calls/s fall due (Tasks due evenly spaced at an
    endpoint in its own process), and the lateness of those calls at the endpoint."""
    rate, secs = args.firing, args.seconds
    n = int(rate * (secs + 10))  # due from 5 s before wrk starts until 5 s after it ends
    with endpoint() as base:
        start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10 + n / 250)  # created before they fall due
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)  # due times are kept to the ms
        dues = [start + dt.timedelta(milliseconds=round(i * 1000 / rate)) for i in range(n)]
        create(rt, base + "/ok", dues)
        overdue = dt.datetime.now(dt.UTC) > start
        time.sleep(max(0.0, (start - dt.datetime.now(dt.UTC)).total_seconds()) + 5)
        post = wrk(url + "/scheduler/schedule", WRK_POST.replace("TOKEN", token), args.connections, secs)
        wait_durable(rt, n)
        got = calls(base)
    by_index = arrivals(got)
    late = lateness_ms(by_index, dues)
    print(f"  POST /scheduler/schedule while {rate:g} calls/s fire: {post[0]:7,.0f} req/s, p50 {post[1]:5.1f} ms, "
          f"p99 {post[2]:6.1f} ms, {post[3]} errors = {post[0] / idle_rate:.0%} of the idle rate; the calls' lateness "
          f"p50 {pct(late, 50):.1f} ms, p99 {pct(late, 99):.1f} ms, {len(by_index)} of {n} distinct"
          + (" (created late: the first were overdue)" if overdue else ""))  # fmt: skip


def idle(uri: str, state: Path, pid: int | None, seconds: int) -> None:
    """The store's RSS each minute while nothing is asked of the service, and its disk beside
    the size of what it holds."""
    first = rss_mb(pid)
    print(f"idle for {seconds}s: store RSS {first:.0f} MB at the start", flush=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(min(60, seconds - (time.monotonic() - t0)))
        print(f"  after {time.monotonic() - t0:4.0f}s: store RSS {rss_mb(pid):.0f} MB", flush=True)
    last = rss_mb(pid)
    client = pymongo.MongoClient(uri)
    data = sum(int(client[d].command("collStats", c).get("size", 0)) for d in client.list_database_names()
               if d not in ("admin", "local", "config") for c in client[d].list_collection_names())  # fmt: skip
    client.close()
    disk = sum(f.stat().st_size for f in state.rglob("*") if f.is_file())
    print(f"store RSS {first:.0f} -> {last:.0f} MB over {seconds}s idle ({(last - first) / max(first, 1):+.1%}); "
          f"disk {disk / 1e6:.0f} MB for {data / 1e6:.0f} MB of documents ({disk / max(data, 1):.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
