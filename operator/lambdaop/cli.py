"""The `lambdaop` command: serve, validate, schema. The only code that reads the environment.

`main(argv)` returns an exit code, so tests call it directly.
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

import requests

from . import __version__
from .client import Client, ClientError, split_documents
from .config import Config
from .errors import LambdaopError, Problem, SpecInvalid
from .outbound import SECURE, Policy, Refused
from .spec import json_schemas, load_documents, parse_duration, targets

log = logging.getLogger("lambdaop")


def _duration(text: str) -> object:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


ALLOW_HELP = (
    "targets calls may reach beyond public addresses: comma-separated CIDRs and host patterns, "
    "e.g. 127.0.0.1,10.0.0.0/8,*.corp.example (default: none)"
)


def _policy(text: str) -> Policy:
    policy = Policy.parse(text)
    if policy.problems:
        raise argparse.ArgumentTypeError("--allow-hosts: " + "; ".join(policy.problems))
    return policy


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
        help="the watched folder of spec files (default ./specs)",
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
    serve.add_argument("--allow-hosts", default=os.environ.get("LAMBDAOP_ALLOW_HOSTS", ""), help=ALLOW_HELP)
    serve.add_argument(
        "--on-failure",
        default=os.environ.get("LAMBDAOP_ON_FAILURE") or None,
        help="URL that hears of every failed run whose spec names no onFailure (a JSON POST)",
    )
    serve.add_argument("--host", default=os.environ.get("LAMBDAOP_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("LAMBDAOP_PORT", "8080")))
    serve.add_argument(
        "--timezone",
        default=os.environ.get("LAMBDAOP_TIMEZONE", "UTC"),
        help="zone of datefield/timefield on the original routes when none is sent (default UTC)",
    )

    validate = sub.add_parser("validate", help="check spec files or folders offline; exit 1 on any error")
    validate.add_argument("paths", nargs="+", type=Path)
    validate.add_argument(
        "--allow-hosts", default=os.environ.get("LAMBDAOP_ALLOW_HOSTS", ""), help=ALLOW_HELP
    )

    schema = sub.add_parser("schema", help="write the JSON Schemas of the spec kinds")
    schema.add_argument("--out", type=Path, default=Path("schemas"))

    user = sub.add_parser("user", help="manage users (works with or without a running serve)")
    user.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("LAMBDAOP_STATE_DIR", ".lambdaop"))
    )
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user and print its API token once")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage users through the API")
    token = user_sub.add_parser("token", help="issue another API token")
    token.add_argument("name")
    token.add_argument("--expires", type=_duration, help="e.g. 30d (default: never)")
    tokens = user_sub.add_parser("tokens", help="list a user's API tokens (prefix, created, last used)")
    tokens.add_argument("name")
    revoke = user_sub.add_parser("revoke", help="revoke API tokens by their prefix (from `user tokens`)")
    revoke.add_argument("name")
    revoke.add_argument("prefix")
    remove = user_sub.add_parser("remove", help="remove a user (its tokens and sessions stop at once)")
    remove.add_argument("name")
    passwd = user_sub.add_parser("passwd", help="set the password used to sign in to the web page")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read it from standard input (no prompt)"
    )
    user_sub.add_parser("list", help="list users")

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", default=os.environ.get("LAMBDAOP_SERVER", "http://127.0.0.1:8080"))
        p.add_argument("--token", default=os.environ.get("LAMBDAOP_TOKEN"))

    apply = sub.add_parser("apply", help="send spec files (or a folder of them) to a running lambdaop")
    apply.add_argument("-f", "--file", dest="files", type=Path, action="append", required=True)
    apply.add_argument("--force", action="store_true", help="take over objects the specs folder manages")
    client_options(apply)
    get = sub.add_parser("get", help="list tasks or tasksets")
    get.add_argument("what", choices=["tasks", "tasksets"])
    get.add_argument("--state", help="scheduled, running, completed, failed, cancelled or All")
    get.add_argument("--limit", type=int, default=50)
    client_options(get)
    describe = sub.add_parser("describe", help="one object with its attempt history")
    describe.add_argument("what", choices=["task", "taskset"])
    describe.add_argument("id")
    client_options(describe)
    cancel = sub.add_parser("cancel", help="cancel a scheduled Task or TaskSet")
    cancel.add_argument("id")
    client_options(cancel)
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
            return validate(args.paths, _policy(args.allow_hosts))
        if args.command == "schema":
            return write_schemas(args.out)
        if args.command == "user":
            return user_command(args)
        return client_command(args)
    except LambdaopError as exc:
        print(f"lambdaop: {exc}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as exc:
        print(f"lambdaop: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"lambdaop: the server answered {exc}", file=sys.stderr)
        for detail in exc.body.get("details", []):
            print(f"  {detail}", file=sys.stderr)
        return 1
    except requests.ConnectionError as exc:
        print(f"lambdaop: cannot reach the server: {exc}", file=sys.stderr)
        return 2


def serve(args: argparse.Namespace) -> int:
    from .runtime import Runtime

    config = Config(
        state_dir=args.state_dir,
        specs_dir=args.specs,
        specs_owner=args.specs_owner,
        mongodb_uri=os.environ.get("LAMBDAOP_MONGODB_URI") or None,
        database=os.environ.get("LAMBDAOP_DATABASE", "lambdaop"),
        host=args.host,
        port=args.port,
        workers=args.workers,
        timezone=args.timezone,
        allow_hosts=_policy(args.allow_hosts),
        on_failure=args.on_failure,
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
    if runtime.admin_token:
        print(
            f"first start: created user admin; its API token is in {runtime.state.path / 'admin.token'}",
            file=sys.stderr,
        )
    print(
        f"lambdaop {__version__} serving {runtime.url}; specs from {config.specs_dir}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        runtime.stop()
    return 0


def user_command(args: argparse.Namespace) -> int:
    from .clock import SystemClock
    from .embedded import EmbeddedServer, StateDir
    from .store import Store, connect, start_embedded
    from .users import Users

    uri = os.environ.get("LAMBDAOP_MONGODB_URI") or None
    state = StateDir(args.state_dir)
    server = None
    if uri is None and state.held_elsewhere() and (state.path / "store.uri").exists():
        store = Store((state.path / "store.uri").read_text().strip(), embedded=True)  # serve's store
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
    from .clock import iso

    return iso(value) or "-" if isinstance(value, dt.datetime) else "-"


def _read_password(from_stdin: bool) -> str:
    """From standard input, or asked twice without echo."""
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise SpecInvalid("the passwords differ", [Problem("type the same password twice", field="password")])
    return first


def client_command(args: argparse.Namespace) -> int:
    client = Client(args.server, args.token)
    if args.command == "apply":
        failed = False
        for path in _files(args.files):
            results = []
            for offset, piece in split_documents(path.read_text()):
                try:
                    results += client.apply(piece, force=args.force)["results"]
                except ClientError as exc:
                    failed = True
                    print(
                        f"{path}: {exc.body.get('message') if exc.status == 409 or not exc.body.get('details') else 'invalid'}",
                        file=sys.stderr,
                    )
                    for d in exc.body.get("details", []):
                        line = f":{d['line'] + offset}" if d.get("line") else ""
                        field = f" {d['field']}:" if d.get("field") else ""
                        print(f"{path}{line}:{field} {d['message']}", file=sys.stderr)
            for r in results:
                print(
                    f"{path}: {r['kind']}/{r['name']} {r['action']}"
                    + (f" ({r['message']})" if r.get("message") else "")
                )
        return 1 if failed else 0
    if args.command == "get":
        kind = "Task" if args.what == "tasks" else "TaskSet"
        body = client.list(kind, args.state, args.limit)
        rows = body["tasks" if kind == "Task" else "taskSets"]
        print(f"{'ID':26} {'NAME':30} {'STATE':10} {'DUE':25} CALLS")
        for r in rows:
            print(f"{r['id']:26} {r['name'][:30]:30} {r['state']:10} {r['due'] or '-':25} {r['calls']}")
        return 0
    if args.command == "describe":
        print(json.dumps(client.get(args.id, "Task" if args.what == "task" else "TaskSet"), indent=2))
        return 0
    if args.command == "cancel":
        body = client.cancel(args.id)
        print(json.dumps(body, indent=2))
        return 0
    return 2


def _files(paths: Sequence[Path]) -> list[Path]:
    from .watcher import spec_files

    out: list[Path] = []
    for path in paths:
        out.extend(spec_files(path) if path.is_dir() else [path])
    return out


def validate(paths: Sequence[Path], policy: Policy = SECURE) -> int:
    failed = 0
    count = 0
    seen: dict[tuple[str, str], list[str]] = {}
    for path in _files(paths):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot be read: {exc}", file=sys.stderr)
            failed += 1
            continue
        for doc in load_documents(text, str(path)):
            count += 1
            if doc.spec is not None:
                for field, invoke in targets(doc.spec):
                    try:
                        policy.check_url(invoke.url)
                    except Refused as exc:
                        doc.problems.append(Problem(str(exc), file=str(path), line=doc.line, field=field))
            if doc.problems:
                failed += 1
                for problem in doc.problems:
                    print(str(problem), file=sys.stderr)
            elif doc.spec is not None:
                seen.setdefault((doc.spec.kind, doc.spec.metadata.name), []).append(f"{path}:{doc.line}")
    for (kind, name), places in seen.items():
        if len(places) > 1:
            failed += len(places)
            for place in places:
                print(
                    f"{place}: {kind} {name!r} is defined more than once ({', '.join(places)})",
                    file=sys.stderr,
                )
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
