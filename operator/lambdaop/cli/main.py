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
from typing import Any, NoReturn

import requests

from lambdaop import __version__
from lambdaop.cli.client import Client, ClientError, split_documents
from lambdaop.core.errors import LambdaopError, Problem, SpecInvalid
from lambdaop.core.logs import setup as setup_logs
from lambdaop.loop.outbound import SECURE, Policy, Refused
from lambdaop.runtime.config import Config
from lambdaop.spec import json_schemas, load_documents, parse_duration, targets

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


KINDS = {"task": "Task", "tasks": "Task", "taskset": "TaskSet", "tasksets": "TaskSet"}


def _kind(text: str) -> str:
    kind = KINDS.get(text.lower())
    if kind is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a kind: use task or taskset")
    return kind


def _globals(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options every verb takes, before or after it (a verb's own copy never hides the top one)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    env = os.environ
    parser.add_argument("--state-dir", type=Path, default=default(Path(env.get("LAMBDAOP_STATE_DIR", ".lambdaop"))),
                        help="where the embedded store keeps its data (default ./.lambdaop)")  # fmt: skip
    parser.add_argument("--log-level", default=default(env.get("LAMBDAOP_LOG_LEVEL", "INFO")))
    parser.add_argument("--log-format", choices=["text", "json"], default=default(env.get("LAMBDAOP_LOG_FORMAT", "text")))  # fmt: skip
    parser.add_argument("--server", default=default(env.get("LAMBDAOP_SERVER", "http://127.0.0.1:8080")),
                        help="a running lambdaop (client verbs)")  # fmt: skip
    parser.add_argument(
        "--token", default=default(env.get("LAMBDAOP_TOKEN")), help="an API token (client verbs)"
    )
    parser.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default=default("table"))


class Usage(Exception):
    """A command line argparse cannot read: one line says why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Usage(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lambdaop", description="Scheduler and orchestrator for Lambda functions and HTTP endpoints."
    )
    parser.add_argument("--version", action="version", version=f"lambdaop {__version__}")
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    common = _Parser(add_help=False)
    _globals(common, top=False)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    env = os.environ
    serve = verb("serve", "run the engine (and the embedded store unless LAMBDAOP_MONGODB_URI is set)")
    serve.add_argument("--specs", type=Path, default=Path(env.get("LAMBDAOP_SPECS", "specs")),
                       help="the watched folder of spec files (default ./specs)")  # fmt: skip
    serve.add_argument("--specs-owner", default=env.get("LAMBDAOP_SPECS_OWNER", "admin"),
                       help="the user owning specs from the folder (default admin)")  # fmt: skip
    serve.add_argument("--workers", type=int, default=int(env.get("LAMBDAOP_WORKERS", "16")),
                       help="calls at once (slow calls past a second do not count; default 16)")  # fmt: skip
    serve.add_argument("--lease", type=_duration, default=env.get("LAMBDAOP_LEASE", "30s"),
                       help="how long a claimed call is held before another process may re-run it (default 30s)")  # fmt: skip
    serve.add_argument("--claim-window", type=_duration, default=env.get("LAMBDAOP_CLAIM_WINDOW", "2s"),
                       help="how far ahead of its due time work is claimed (default 2s)")  # fmt: skip
    serve.add_argument("--allow-hosts", default=env.get("LAMBDAOP_ALLOW_HOSTS", ""), help=ALLOW_HELP)
    serve.add_argument("--on-failure", default=env.get("LAMBDAOP_ON_FAILURE") or None,
                       help="URL that hears of every failed run whose spec names no onFailure (a JSON POST)")  # fmt: skip
    serve.add_argument("--metrics-public", action="store_true", default=env.get("LAMBDAOP_METRICS_PUBLIC") == "1",
                       help="serve /metrics without a token")  # fmt: skip
    serve.add_argument("--host", default=env.get("LAMBDAOP_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(env.get("LAMBDAOP_PORT", "8080")))
    serve.add_argument("--timezone", default=env.get("LAMBDAOP_TIMEZONE", "UTC"),
                       help="zone of datefield/timefield on the original routes when none is sent (default UTC)")  # fmt: skip

    validate = verb("validate", "check spec files or folders offline; exit 1 on any error")
    validate.add_argument("paths", nargs="+", type=Path)
    validate.add_argument("--allow-hosts", default=env.get("LAMBDAOP_ALLOW_HOSTS", ""), help=ALLOW_HELP)
    schema = verb("schema", "write the JSON Schemas of the spec kinds")
    schema.add_argument("--out", type=Path, default=Path("schemas"))

    user = verb("user", "manage users (works with or without a running serve)")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    def user_verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return user_sub.add_parser(name, help=help_text, parents=[common])

    add = user_verb("add", "create a user and print its API token once")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage users through the API")
    token = user_verb("token", "issue another API token")
    token.add_argument("name")
    token.add_argument("--expires", type=_duration, help="e.g. 30d (default: never)")
    tokens = user_verb("tokens", "list a user's API tokens (prefix, created, last used)")
    tokens.add_argument("name")
    revoke = user_verb("revoke", "revoke API tokens by their prefix (from `user tokens`)")
    revoke.add_argument("name")
    revoke.add_argument("prefix")
    remove = user_verb("remove", "remove a user (its tokens and sessions stop at once)")
    remove.add_argument("name")
    passwd = user_verb("passwd", "set the password used to sign in to the web page (asked twice, not shown)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from standard input")
    user_verb("list", "list users")

    apply = verb("apply", "send spec files (or folders of them) to a running lambdaop")
    apply.add_argument("-f", "--file", dest="files", type=Path, action="append", required=True)
    apply.add_argument("--force", action="store_true", help="take over objects the specs folder manages")
    get = verb("get", "list Tasks or TaskSets (get task, get tasksets --state failed)")
    get.add_argument("kind", type=_kind, metavar="KIND")
    get.add_argument("name", nargs="?", help="one object, by name or id")
    get.add_argument("--state", help="scheduled, running, completed, failed, cancelled or All")
    get.add_argument("--limit", type=int, default=50)
    for name, text in (("describe", "one object with its history"), ("cancel", "cancel a scheduled object"),
                       ("suspend", "pause a recurring object"), ("resume", "resume a paused recurring object")):  # fmt: skip
        one = verb(name, text + " (by name or id)")
        one.add_argument("kind", type=_kind, metavar="KIND")
        one.add_argument("name", metavar="NAME|ID")
    modify = verb("modify", "give a scheduled object a new time (by name or id)")
    modify.add_argument("kind", type=_kind, metavar="KIND")
    modify.add_argument("name", metavar="NAME|ID")
    when = modify.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", help="an ISO 8601 time with an offset")
    when.add_argument("--after", type=_duration, help="from now, e.g. 10m")
    delete = verb("delete", "delete a spec by name: cancel it if still scheduled, mark it pruned")
    delete.add_argument("kind", type=_kind, metavar="KIND")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--force", action="store_true", help="also an object the specs folder manages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; answers its exit code. Every mistake is one line on stderr, never a traceback."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except Usage as exc:
        print(f"lambdaop: {exc}", file=sys.stderr)
        return 2
    setup_logs(args.log_level, args.log_format)
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
        print(f"lambdaop: {_client_problem(exc, args)}", file=sys.stderr)
        for detail in exc.body.get("details", []) if exc.status == 422 else []:
            where = ", ".join(
                str(detail[k]) for k in ("document", "line", "field") if detail.get(k) is not None
            )
            print(f"  {where + ': ' if where else ''}{detail.get('message')}", file=sys.stderr)
        return 1
    except requests.ConnectionError:
        print(f"lambdaop: cannot reach {args.server}: is `lambdaop serve` running there? (pass --server or set LAMBDAOP_SERVER)", file=sys.stderr)  # fmt: skip
        return 2
    except requests.RequestException as exc:
        print(f"lambdaop: talking to {args.server} failed: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"lambdaop: {exc.filename}: no such file or folder", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lambdaop: {getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; the traceback goes to the debug log
        log.debug("unexpected error", exc_info=True)
        print(f"lambdaop: unexpected error: {type(exc).__name__}: {exc} (run with --log-level DEBUG for details)", file=sys.stderr)  # fmt: skip
        return 2


def _client_problem(exc: ClientError, args: argparse.Namespace) -> str:
    if exc.status == 401:
        if not args.token:
            return "no token: pass --token or set LAMBDAOP_TOKEN; `lambdaop user token NAME` prints one"
        return "the server refused the token (revoked, expired or mistyped); `lambdaop user token NAME` prints a new one"
    if exc.status == 403:
        return f"not allowed: {exc.body.get('message')}"
    if exc.status == 404:
        return f"not found: {exc.body.get('message') or 'no such object'} (check the name or id, and --token's user)"
    if exc.status == 409:
        return str(exc.body.get("reason") or exc.body.get("message"))
    return f"the server answered {exc.status}: {exc.body.get('message') or exc.body}"


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
        timezone=args.timezone,
        allow_hosts=_policy(args.allow_hosts),
        on_failure=args.on_failure,
        metrics_public=args.metrics_public,
        claim_window=args.claim_window,
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
    from lambdaop.app.users import Users
    from lambdaop.core.clock import SystemClock
    from lambdaop.store.embedded import EmbeddedServer, StateDir
    from lambdaop.store.mongo import Store, connect, start_embedded

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


def client_command(args: argparse.Namespace) -> int:
    client = Client(args.server, args.token)
    command = args.command
    if command == "apply":
        return _apply(client, args)
    if command == "get":
        if args.name:
            return _show(args, [client.find(args.kind, args.name)], args.kind)
        body = client.list(args.kind, args.state, args.limit)
        return _show(args, body["tasks" if args.kind == "Task" else "taskSets"], args.kind)
    if command == "delete":
        body = client.delete_spec(args.kind, args.name, force=args.force)
        print(f"{args.kind}/{args.name} deleted ({body['object']['state']}, marked pruned)")
        return 0
    target = client.find(args.kind, args.name)
    if command == "describe":
        _print(args, client.get(target["id"], args.kind), detail=True)
        return 0
    if command == "cancel":
        client.cancel(target["id"], args.kind)
        print(f"{args.kind}/{target['name']} cancelled")
        return 0
    if command == "modify":
        at = args.at if args.at else (dt.datetime.now(dt.UTC) + args.after).isoformat()
        body = client.modify(target["id"], at, args.kind)
        changed = body.get("task") or body.get("taskSet") or {}
        print(f"{args.kind}/{target['name']} now due {changed.get('due')}")
        return 0
    if command in ("suspend", "resume"):
        body = client.pause(target["id"], args.kind, command)
        print(f"{args.kind}/{target['name']} {'suspended' if body['suspended'] else 'resumed'}"
              + (" after the run going on" if body.get("afterThisRun") else ""))  # fmt: skip
        return 0
    return 2


def _apply(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for path in _files(args.files):
        results = []
        for offset, piece in split_documents(path.read_text()):
            try:
                results += client.apply(piece, force=args.force)["results"]
            except ClientError as exc:
                failed = True
                if exc.status != 422:
                    print(f"{path}: {_client_problem(exc, args)}", file=sys.stderr)
                    continue
                print(f"{path}: invalid; nothing in it was applied", file=sys.stderr)
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


def _print(args: argparse.Namespace, value: Any, detail: bool = False) -> None:
    if args.output == "yaml":
        from ruamel.yaml import YAML

        YAML(typ="safe", pure=True).dump(value, sys.stdout)
    else:
        print(json.dumps(value, indent=2))


def _show(args: argparse.Namespace, rows: list[dict[str, Any]], kind: str) -> int:
    if args.output in ("json", "yaml"):
        _print(args, rows)
        return 0
    wide = args.output == "wide"
    header = f"{'NAME':32} {'STATE':10} {'NEXT':25} {'CALLS':>5}"
    if wide:
        header = f"{'ID':25} {header} {'OWNER':12} {'LAST RESULT':24} SCHEDULE"
    print(header)
    for r in rows:
        nxt = r.get("due") or ((r.get("nextRuns") or [None])[0]) or "-"
        line = (
            f"{(r.get('displayName') or r['name'])[:32]:32} {r['state']:10} {nxt:25} {r.get('calls', 0):>5}"
        )
        if wide:
            last = r.get("last") or {}
            result = (
                "-"
                if not last
                else ("ok" if last.get("ok") else f"failed {last.get('status') or ''}".strip())
            )
            sched = (r.get("schedule") or {}).get("description", "-")
            line = f"{r['id']:25} {line} {r['owner'][:12]:12} {result[:24]:24} {sched}"
        print(line)
    return 0


def _files(paths: Sequence[Path]) -> list[Path]:
    from lambdaop.app.folder import spec_files

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
