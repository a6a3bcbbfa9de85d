"""The `lambdaop` command: serve, validate, schema. The only code that reads the environment.

`main(argv)` returns an exit code, so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import Config
from .errors import LambdaopError
from .spec import json_schemas, load_documents, parse_duration

log = logging.getLogger("lambdaop")


def _duration(text: str) -> object:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambdaop", description="Scheduler and orchestrator for Lambda functions and HTTP endpoints."
    )
    parser.add_argument("--version", action="version", version=f"lambdaop {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("LAMBDAOP_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the engine (and the embedded store unless LAMBDAOP_MONGODB_URI is set)"
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("LAMBDAOP_STATE_DIR", ".lambdaop")),
        help="where the embedded store keeps its data (default ./.lambdaop)",
    )
    serve.add_argument(
        "--specs",
        type=Path,
        default=Path(os.environ.get("LAMBDAOP_SPECS", "specs")),
        help="folder of spec files applied at start (default ./specs)",
    )
    serve.add_argument(
        "--specs-owner",
        default=os.environ.get("LAMBDAOP_SPECS_OWNER", "admin"),
        help="the user owning specs from the folder (default admin)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("LAMBDAOP_WORKERS", "16")),
        help="concurrent calls (default 16)",
    )
    serve.add_argument(
        "--lease",
        type=_duration,
        default=os.environ.get("LAMBDAOP_LEASE", "30s"),
        help="how long a claimed call is held before another process may re-run it (default 30s)",
    )
    serve.add_argument("--host", default=os.environ.get("LAMBDAOP_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("LAMBDAOP_PORT", "8080")))

    validate = sub.add_parser("validate", help="check spec files or folders offline; exit 1 on any error")
    validate.add_argument("paths", nargs="+", type=Path)

    schema = sub.add_parser("schema", help="write the JSON Schemas of the spec kinds")
    schema.add_argument("--out", type=Path, default=Path("schemas"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "validate":
            return validate(args.paths)
        if args.command == "schema":
            return write_schemas(args.out)
    except LambdaopError as exc:
        print(f"lambdaop: {exc}", file=sys.stderr)
        return 2
    return 0


def serve(args: argparse.Namespace) -> int:
    from .runtime import Runtime

    config = Config(
        state_dir=args.state_dir,
        specs_dir=args.specs,
        specs_owner=args.specs_owner,
        mongodb_uri=os.environ.get("LAMBDAOP_MONGODB_URI") or None,
        host=args.host,
        port=args.port,
        workers=args.workers,
        lease=args.lease if not isinstance(args.lease, str) else parse_duration(args.lease),
        env=dict(os.environ),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: stopping after the current pass", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime = Runtime(config)
    runtime.start()
    print(
        f"lambdaop {__version__} serving; specs from {config.specs_dir}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        runtime.stop()
    return 0


def _files(paths: Sequence[Path]) -> list[Path]:
    from .runtime import spec_files

    out: list[Path] = []
    for path in paths:
        out.extend(spec_files(path) if path.is_dir() else [path])
    return out


def validate(paths: Sequence[Path]) -> int:
    failed = 0
    count = 0
    for path in _files(paths):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot be read: {exc}", file=sys.stderr)
            failed += 1
            continue
        for doc in load_documents(text, str(path)):
            count += 1
            if doc.problems:
                failed += 1
                for problem in doc.problems:
                    print(str(problem), file=sys.stderr)
    print(f"{count} document(s) checked, {failed} with errors", file=sys.stderr)
    return 1 if failed else 0


def write_schemas(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
