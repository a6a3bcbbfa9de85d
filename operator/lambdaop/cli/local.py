"""The verbs that run in this process: serve, validate, schema, user.

Called by main.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from lambdaop import __version__
from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.runtime.config import Config
from lambdaop.spec import Document, json_schemas, load_documents, parse_duration

log = logging.getLogger("lambdaop")


def policy_of(text: str) -> Policy:
    policy = Policy.parse(text)
    if policy.problems:
        raise argparse.ArgumentTypeError("--allow-hosts: " + "; ".join(policy.problems))
    return policy


def serve(args: argparse.Namespace) -> int:
    from lambdaop.runtime.runtime import Runtime

    config = Config(
        state_dir=args.state_dir,
        specs_dir=args.specs,
        specs_owner=args.specs_owner,
        mongodb_uri=os.environ.get("LAMBDAOP_MONGODB_URI") or None,
        database=os.environ.get("LAMBDAOP_DATABASE", "lambdaop"),
        host=args.host,
        port=args.port,
        workers=args.workers,
        api_threads=args.api_threads,
        timezone=args.timezone,
        allow_hosts=policy_of(args.allow_hosts),
        on_failure=args.on_failure,
        public_url=args.public_url,
        callback_secret=os.environ.get("LAMBDAOP_CALLBACK_SECRET") or None,
        metrics_public=args.metrics_public,
        claim_window=args.claim_window
        if not isinstance(args.claim_window, str)
        else parse_duration(args.claim_window),
        liveness=args.liveness if not isinstance(args.liveness, str) else parse_duration(args.liveness),
        lease=args.lease if not isinstance(args.lease, str) else parse_duration(args.lease),
        resync=args.resync if not isinstance(args.resync, str) else parse_duration(args.resync),
        env=dict(os.environ),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s: stopping (calls in flight get 10s to report back)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime = Runtime(config)
    runtime.start()
    log.info("lambdaop %s serving %s (the page, the API, its reference at /docs); specs from %s; Ctrl-C to stop",
             __version__, runtime.url, config.specs_dir)  # fmt: skip
    try:
        while not stop.wait(1.0):
            if runtime.failed.is_set():
                break
    finally:
        runtime.stop()
    return 1 if runtime.probes.fatal is not None else 0  # the reason is logged (critical) when it happens


def user_command(args: argparse.Namespace) -> int:
    from lambdaop.app.users import Users
    from lambdaop.core.clock import SystemClock
    from lambdaop.store.embedded import EmbeddedServer, StateDir
    from lambdaop.store.mongo import MongoStore, connect, start_embedded

    uri = os.environ.get("LAMBDAOP_MONGODB_URI") or None
    state = StateDir(args.state_dir)
    server = None
    if uri is None and state.held_elsewhere() and (state.path / "store.uri").exists():
        store = MongoStore((state.path / "store.uri").read_text().strip(), embedded=True)  # serve's store
    elif uri is not None:
        store = connect(uri, os.environ.get("LAMBDAOP_DATABASE", "lambdaop"))
    else:
        state.acquire()
        server = EmbeddedServer(state.path)
        try:
            store = connect(start_embedded(server), embedded=True)
        except Exception:
            server.stop()
            state.release()
            raise
    try:
        users = Users(store, SystemClock(), token_file=state.path / "admin.token")
        if users.ensure_admin():
            print(
                f"created user admin first; its API token is in {state.path / 'admin.token'}", file=sys.stderr
            )
        command = args.user_command
        if command == "add":
            print(users.add(args.name, admin=args.admin))
        elif command == "token":
            print(users.issue_token(args.name, args.expires))
        elif command == "tokens":
            print(f"{'PREFIX':10} {'CREATED':25} {'LAST USED':25} EXPIRES")
            for t in users.tokens(args.name):
                print(
                    f"{t['prefix'] or '-':10} {_when(t['created']):25} {_when(t['lastUsed']):25} {_when(t['expires'])}"
                )
        elif command == "revoke":
            print(f"revoked {users.revoke(args.name, args.prefix)} token(s) of {args.name}")
        elif command == "remove":
            users.remove(args.name)
            print(f"removed user {args.name}")
        elif command == "passwd":
            users.set_password(args.name, _read_password(args.password_stdin))
            print(f"password of {args.name} set")
        else:
            for u in users.listing():
                print(f"{u['name']}\t{'admin' if u['admin'] else 'user'}\t{u['tokens']} token(s)")
    finally:
        store.close()
        if server is not None:
            server.stop()
        state.release()
    return 0


def _when(value: object) -> str:
    from lambdaop.core.clock import iso

    return iso(value) or "-" if isinstance(value, dt.datetime) else "-"


def _read_password(from_stdin: bool) -> str:
    """From standard input, or asked twice without echo."""
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise SpecInvalid("the passwords differ", [Problem("type the same password twice", field="password")])
    return first


SPEC_SUFFIXES = (".yaml", ".yml", ".json")


class PathProblem(Exception):
    """A path given on the command line that cannot be used: one line says why."""


def spec_files_of(paths: Sequence[Path]) -> list[Path]:
    """The spec files of the paths given (folders: their *.yaml and *.yml files, recursively).
    A path that does not exist, or a folder with no spec files in it, raises PathProblem."""
    from lambdaop.app.folder import spec_files

    out: list[Path] = []
    for path in paths:
        if str(path) == "-":  # standard input
            out.append(path)
            continue
        if not path.exists():
            raise PathProblem(f"{path}: no such file or folder")
        if path.is_dir():
            found = spec_files(path)
            if not found:
                raise PathProblem(f"{path}: a folder with no spec files in it (*.yaml or *.yml, outside hidden folders)")  # fmt: skip
            out.extend(found)
        else:
            out.append(path)
    return out


def read_problem(path: Path, exc: Exception) -> str:
    """Why a file cannot be read, in words (never `[Errno 13] …`)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not a text file (spec files are YAML or JSON, in UTF-8)"
    if isinstance(exc, PermissionError):
        return f"{path}: cannot be read: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a folder"
    return f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}"


def validate(paths: Sequence[Path], policy: Policy = SECURE) -> int:
    """Check spec files offline with the batch validator the server uses; exit 1 on any error."""
    from lambdaop.app.batch import Checker

    files: list[tuple[str | None, list[Document]]] = []
    unreadable = 0
    for path in spec_files_of(paths):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(read_problem(path, exc), file=sys.stderr)
            unreadable += 1
            continue
        docs = load_documents(text, str(path))
        if not str(path).endswith(SPEC_SUFFIXES) and any(
            d.problems and d.kind is None for d in docs
        ):  # no spec at all
            print(f"{path}: is it a spec file? spec files are YAML or JSON, named *.yaml, *.yml or *.json", file=sys.stderr)  # fmt: skip
        files.append((str(path), docs))
    problems = Checker(policy).check(files)
    for problem in problems:
        print(str(problem), file=sys.stderr)
    count = sum(len(docs) for _, docs in files)
    bad = {(p.file, p.document if p.document is not None else p.line) for p in problems}
    print(f"{count} document(s) checked, {len(bad) + unreadable} with errors", file=sys.stderr)
    return 1 if problems or unreadable else 0


def write_schemas(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out / name}")
    return 0
