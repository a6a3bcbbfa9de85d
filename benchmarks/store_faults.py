"""The store's faults under steady load, for `faults.py --mode store-kill | store-stall S | disk-full`.

`lambdaop serve` on its embedded store, N Tasks due at a steady rate, and in
the middle of them the store is killed with -9, stopped (SIGSTOP) for S
seconds, or its disk filled (the state folder on a small tmpfs, filled to a
few MB, then freed). Meanwhile a prober asks `/readyz` and makes a creation
every 200 ms. Prints calls due, made, lost and repeated (with their keys),
lateness at the endpoint before, during and after the fault, and what the
probes and the API answered and how long they took at most. Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from common import calls, endpoint, pct

FAULT_AT = 5.0  # seconds into the stream


def _serve(state: Path, specs: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    from faults import serve

    proc = serve(state, specs, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"serving (http://[^\s;]+)", log.read_text())
        if found:
            token = (state / "admin.token").read_text().strip()
            return proc, found.group(1), {"Authorization": f"Bearer {token}"}
        time.sleep(0.1)
    raise SystemExit(f"serve did not start:\n{log.read_text()[-2000:]}")


class Prober(threading.Thread):
    """Asks /readyz and makes a creation every 200 ms; keeps (time, what, status, seconds)."""

    def __init__(self, url: str, headers: dict[str, str], base: str) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.base = url, headers, base
        self.seen: list[tuple[float, str, int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for what in ("readyz", "create"):
                t0 = time.monotonic()
                try:
                    if what == "readyz":
                        code = requests.get(self.url + "/readyz", timeout=5).status_code
                    else:
                        body = {"url": self.base + "/ok?probe", "delay": 3_600_000}
                        code = requests.post(self.url + "/scheduler/schedule", json=body, headers=self.headers, timeout=5).status_code  # fmt: skip
                except requests.RequestException:
                    code = 0
                self.seen.append((time.time(), what, code, time.monotonic() - t0))


def run(args: argparse.Namespace) -> None:
    mode = args.mode
    n, rate = args.tasks, args.rate
    with endpoint() as base, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        state, specs, log = tmp / "state", tmp / "specs", tmp / "serve.log"
        specs.mkdir()
        state.mkdir()
        if mode == "disk-full":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(state)], check=True)
        proc = None
        try:
            proc, url, headers = _serve(state, specs, log)
            requests.delete(base + "/_calls", timeout=5)
            first = time.time() + 8
            docs = [
                f"kind: Task\nmetadata: {{name: t{i}}}\nspec:\n  invoke: '{base}/ok?i={i}'\n  at: {dt.datetime.fromtimestamp(first + i / rate, dt.UTC).isoformat()}\n"
                for i in range(n)
            ]
            requests.post(url + "/specs", data="---\n".join(docs), headers={**headers, "Content-Type": "application/yaml"}, timeout=300).raise_for_status()  # fmt: skip
            prober = Prober(url, headers, base)
            prober.start()
            while time.time() < first + FAULT_AT:
                time.sleep(0.05)
            fault_start = time.time()
            pid = int((state / "secantusd.pid").read_text())
            filler = state / "filler"
            if mode == "store-kill":
                os.kill(pid, signal.SIGKILL)
                fault_end = fault_start
            elif mode == "store-stall":
                os.kill(pid, signal.SIGSTOP)
                time.sleep(args.stall)
                os.kill(pid, signal.SIGCONT)
                fault_end = time.time()
            else:
                with filler.open("wb") as f:
                    f.write(b"\0" * max(0, shutil.disk_usage(state).free - 8 * 1024 * 1024))
                time.sleep(10)
                filler.unlink()
                fault_end = time.time()
            end = first + n / rate + 30
            while time.time() < end and len(calls(base)) < n:
                time.sleep(0.5)
            time.sleep(2)
            prober.stop.set()
            prober.join(10)
            got = calls(base)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            if mode == "disk-full":
                subprocess.run(["umount", "-l", str(state)], check=False)
    report(mode, args, got, first, rate, n, fault_start, fault_end, prober.seen)


def report(mode: str, args: Any, got: list[dict[str, Any]], first: float, rate: float, n: int,
           fault_start: float, fault_end: float, seen: list[tuple[float, str, int, float]]) -> None:  # fmt: skip
    by: dict[int, list[dict[str, Any]]] = {}
    for c in got:
        q = str(c["query"])
        if q.startswith("i="):
            by.setdefault(int(q[2:]), []).append(c)
    lost = n - len(by)
    repeated = sum(1 for v in by.values() if len(v) > 1)
    other_key = sum(1 for v in by.values() if len({c["idempotency_key"] for c in v}) > 1)
    phases: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    for i, cs in by.items():
        due = first + i / rate
        late = (min(float(c["at"]) for c in cs) - due) * 1000
        phase = "before" if due < fault_start else "during" if due <= fault_end + 0.001 else "after"
        phases[phase].append(late)
    what = {"store-kill": "kill -9 of the embedded store", "store-stall": f"SIGSTOP of the store for {args.stall:g}s", "disk-full": "the state folder's disk filled to 8 MB free for 10 s"}[mode]  # fmt: skip
    print(f"{what}, {fault_start - first:.1f}s into {n} Tasks due at {rate:g}/s")
    print(f"calls: due {n}, made {len(by)}, lost {lost}, repeated {repeated} (with another key: {other_key})")
    for name, values in phases.items():
        if values:
            print(f"  due {name} the fault: {len(values)} calls, lateness p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms, max {max(values):.0f} ms")  # fmt: skip
    window = [s for s in seen if fault_start - 0.2 <= s[0] <= max(fault_end, fault_start) + 15]
    for kind in ("readyz", "create"):
        answers = [s for s in window if s[1] == kind]
        codes: dict[int, int] = {}
        for _, _, code, _ in answers:
            codes[code] = codes.get(code, 0) + 1
        slowest = max((s[3] for s in answers), default=0.0)
        print(f"  {kind} during and after the fault: {dict(sorted(codes.items()))} (0 = no answer within 5s), slowest answer {slowest * 1000:.0f} ms")  # fmt: skip
    back, down = None, False
    for at, kind, code, _ in seen:
        if kind != "readyz" or at < fault_start:
            continue
        if code != 200:
            down = True
        elif down:
            back = at - fault_start
            break
    if back is not None:
        print(f"  /readyz was 200 again {back:.1f}s after the fault began")
