"""The watched folder: N spec files written at once, until every one is applied and reported.

Prints the time from the first write until all N objects are in the store, until
every status file is written, and the number of file applies (N when no status
write causes a re-apply).

Usage: python benchmarks/folder.py [--files 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import start_embedded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lambdaop-bench-"))
    specs = tmp / "specs"
    specs.mkdir()
    server = EmbeddedServer(tmp / "store")
    start_embedded(server)
    try:
        config = Config(
            state_dir=tmp / "state",
            specs_dir=specs,
            mongodb_uri=server.uri + "&retryWrites=false",
            serve_api=False,
            allow_hosts=Policy.parse("127.0.0.1"),  # the Tasks call a local address
        )
        runtime = Runtime(config)
        runtime.start()
        try:
            t0 = time.perf_counter()
            for i in range(args.files):
                (specs / f"spec-{i:05}.yaml").write_text(
                    f"apiVersion: lambdaop/v1\nkind: Task\nmetadata: {{name: f{i}}}\nspec:\n"
                    f"  invoke: http://127.0.0.1:9/ok?i={i}\n  after: 1h\n"
                )
            written = time.perf_counter() - t0
            while (runtime.store.counts("admin", "Task").get("scheduled") or 0) < args.files:
                time.sleep(0.01)
            applied = time.perf_counter() - t0
            reports = [specs / f"spec-{i:05}.status.yaml" for i in range(args.files)]
            while not all(p.exists() for p in reports):
                time.sleep(0.01)
            reported = time.perf_counter() - t0
            time.sleep(3)  # let any (wrong) re-apply triggered by the status writes show up in the count
            print(f"{args.files} files written in {written:.2f}s; all applied after {applied:.2f}s; "
                  f"all status files written after {reported:.2f}s; file applies: {runtime.folder.applies}")  # fmt: skip
        finally:
            runtime.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
