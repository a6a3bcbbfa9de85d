"""The `lambdaop` command: serve, validate, schema. The only code that reads the environment.

`main(argv)` returns an exit code, so tests call it directly. Exit codes: 0
done; 1 refused (the server or the check said no: an invalid spec, an
unknown object, a state that does not allow it, a bad token); 2 the command
could not be carried out as written (a usage mistake, a path that cannot be
read, a server that cannot be reached or is not lambdaop); `diff` has its
own (0 nothing would change, 1 something would, 2 errors); 141 when the
output was closed early (`lambdaop get tasks | head`), as for any Unix tool.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import requests

from lambdaop import __version__
from lambdaop.cli.client import ClientError, NotLambdaop
from lambdaop.cli.local import PathProblem, policy_of, serve, user_command, validate, write_schemas
from lambdaop.cli.remote import client_command, client_problem
from lambdaop.core.errors import LambdaopError
from lambdaop.core.logs import setup as setup_logs
from lambdaop.spec import kind_named, parse_duration

log = logging.getLogger("lambdaop")


def _duration(text: str) -> object:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _api_threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads from 1 to 256, not {text!r}")
    return value


ALLOW_HELP = (
    "targets calls may reach beyond public addresses: comma-separated CIDRs and host patterns, "
    "e.g. 127.0.0.1,10.0.0.0/8,*.corp.example (default: none)"
)


KIND_WORDS = ("task", "tasks", "taskset", "tasksets")


def _kind_or_runs(text: str) -> str:
    """A kind, or `runs` (get runs)."""
    return "Run" if text.lower() in ("run", "runs") else _kind(text)


def _kind(text: str) -> str:
    kind = kind_named(text)
    if kind is None:
        guess = difflib.get_close_matches(text.lower(), KIND_WORDS, n=1, cutoff=0.5)
        maybe = f"; did you mean {guess[0]}?" if guess else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not a kind: use task or taskset{maybe}")
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
    parser.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml", "name"], default=default("table"),
                        help="table (default), wide, json, yaml (documents apply -f takes back), name (kind/name)")  # fmt: skip


class Usage(Exception):
    """A command line argparse cannot read: one line says why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise Usage(f"{_in_words(message, self)} (see `{self.prog} --help`)")


def _in_words(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's message, with a guess when a word is close to one it knows."""
    found = re.match(r"argument (\S+): invalid choice: '(.*?)' \(choose from (.*)\)$", message)
    if found:
        what, word, choices = found.groups()
        known = re.findall(r"'([^']*)'", choices)
        guess = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
        name = {"VERB": "a verb", "ACTION": "an action"}.get(what, f"a choice for {what}")
        return f"{word!r} is not {name}" + (f"; did you mean {guess[0]}?" if guess else f": use one of {', '.join(known)}")  # fmt: skip
    found = re.match(r"unrecognized arguments: (.*)$", message)
    if found:
        options = [o for a in parser._actions for o in a.option_strings]
        for sub in parser._subparsers._group_actions if parser._subparsers else []:
            for choice in getattr(sub, "choices", {}).values():
                options += [o for a in choice._actions for o in a.option_strings]
        words = found.group(1).split()
        guesses = [g for w in words if w.startswith("-") for g in difflib.get_close_matches(w, set(options), n=1, cutoff=0.6)]  # fmt: skip
        return f"unknown {'option' if len(words) == 1 else 'options'} {found.group(1)}" + (f"; did you mean {', '.join(guesses)}?" if guesses else "")  # fmt: skip
    found = re.match(r"argument [A-Z|]+: (.*)$", message)  # a value the verb's own check refused: it says why
    return found.group(1) if found else message


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
    serve.add_argument("--resync", type=_duration, default=env.get("LAMBDAOP_RESYNC", "1m"),
                       help="read the whole specs folder again this often, to apply what did not converge (default 1m)")  # fmt: skip
    serve.add_argument("--specs-owner", default=env.get("LAMBDAOP_SPECS_OWNER", "admin"),
                       help="the user owning specs from the folder (default admin)")  # fmt: skip
    serve.add_argument("--workers", type=int, default=int(env.get("LAMBDAOP_WORKERS", "16")),
                       help="calls at once (slow calls past a second do not count; default 16)")  # fmt: skip
    serve.add_argument("--api-threads", type=_api_threads, default=env.get("LAMBDAOP_API_THREADS", "8"),
                       help="API requests answered at once; creations from that many clients share a commit (default 8)")  # fmt: skip
    serve.add_argument("--lease", type=_duration, default=env.get("LAMBDAOP_LEASE", "30s"),
                       help="how long a claimed call is held before another process may re-run it (default 30s)")  # fmt: skip
    serve.add_argument("--claim-window", type=_duration, default=env.get("LAMBDAOP_CLAIM_WINDOW") or None,
                       help="how far ahead of its due time work is claimed (default 15s on the embedded store, 2s on a shared MongoDB)")  # fmt: skip
    serve.add_argument("--liveness", type=_duration, default=env.get("LAMBDAOP_LIVENESS", "60s"),
                       help="/healthz fails after this long without progress while work is due (default 60s)")  # fmt: skip
    serve.add_argument("--allow-hosts", default=env.get("LAMBDAOP_ALLOW_HOSTS", ""), help=ALLOW_HELP)
    serve.add_argument("--on-failure", default=env.get("LAMBDAOP_ON_FAILURE") or None,
                       help="URL that hears of every failed run whose spec names no onFailure (a JSON POST)")  # fmt: skip
    serve.add_argument("--public-url", default=env.get("LAMBDAOP_PUBLIC_URL") or None,
                       help="where callers reach this API: callback URLs start with it (default: the address it listens on)")  # fmt: skip
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
    apply.add_argument("-f", "--file", dest="files", type=Path, action="append", required=True,
                       help="a spec file, a folder of them, or - for standard input (again for more)")  # fmt: skip
    apply.add_argument("--force", action="store_true", help="take over objects the specs folder manages")
    diff = verb(
        "diff", "what an apply would change on the running server (exit 0: nothing, 1: changes, 2: errors)"
    )
    diff.add_argument("-f", "--file", dest="files", type=Path, action="append", required=True)
    diff.add_argument("--force", action="store_true", help="as apply --force would")
    get = verb(
        "get", "list Tasks, TaskSets or runs (get task, get tasksets --state failed, get runs --since 24h)"
    )
    get.add_argument("kind", type=_kind_or_runs, metavar="KIND")
    get.add_argument("name", nargs="?", help="one object, by name or id")
    get.add_argument("--state", help="scheduled, running, completed, failed, cancelled or All")
    get.add_argument("--limit", type=int, default=50)
    get.add_argument("-l", "--selector", help="labels, as kubectl: team=billing,env!=dev")
    get.add_argument("--prefix", help="names that start with this (your own objects, by name; runs: of those objects)")  # fmt: skip
    get.add_argument(
        "--since", help="runs: ended since a time with an offset, or a duration back from now (24h)"
    )
    get.add_argument("--kind", dest="of_kind", type=_kind, help="runs: of Tasks or of TaskSets only")
    for name, text in (("describe", "one object with its history"), ("cancel", "cancel a scheduled object"),
                       ("suspend", "pause an object (a recurring one after the run going on)")):  # fmt: skip
        one = verb(name, text + " (by name or id)")
        one.add_argument("kind", type=_kind, metavar="KIND")
        one.add_argument("name", metavar="NAME|ID")
        if name == "suspend":
            one.add_argument("--reason", help="why: shown by describe, the API and the page")
    pause = verb(
        "pause", "pause many objects: by -l selector, --owner and KIND, or --all (an admin's kill switch)"
    )
    resume = verb(
        "resume", "resume a paused object (KIND NAME), or many (-l, --owner, --all) as pause chose them"
    )
    for many in (pause, resume):
        many.add_argument(
            "kind", type=_kind, metavar="KIND", nargs="?", help="task or taskset (default: both)"
        )
        many.add_argument("name", metavar="NAME|ID", nargs="?", help=argparse.SUPPRESS if many is pause else "one object")  # fmt: skip
        many.add_argument("-l", "--selector", help="labels, as kubectl: team=billing,env!=dev")
        many.add_argument("--owner", help="another user's objects (admins)")
        many.add_argument("--all", action="store_true", help="everything, everybody's (admins): no call starts until resume --all")  # fmt: skip
        many.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    pause.add_argument("--reason", help="why: shown by describe, the API and the page")
    resume.add_argument("--skip-missed", action="store_true", help="a one-time object whose time passed while paused is cancelled, not run")  # fmt: skip
    run = verb(
        "run", "run an object now: a recurring one once (its schedule unchanged), a finished one again"
    )
    run.add_argument("kind", type=_kind, metavar="KIND")
    run.add_argument("name", metavar="NAME|ID")
    rerun = verb("rerun", "run a failed run again, from its failed step (keeping the steps that succeeded); without NAME every failed run of --since (and -l, KIND)")  # fmt: skip
    rerun.add_argument("kind", type=_kind, metavar="KIND", nargs="?")
    rerun.add_argument("name", metavar="NAME|ID", nargs="?")
    rerun.add_argument("-l", "--selector", help="many: the objects' labels, as kubectl: team=billing")
    rerun.add_argument("--owner", help="many: another user's objects (admins)")
    rerun.add_argument("--since", help="many: the failed runs that ended since a time with an offset, or a duration back (24h)")  # fmt: skip
    rerun.add_argument("--until", help="many: and before this time (or this long ago)")
    rerun.add_argument(
        "--dry-run", action="store_true", help="many: list what would be re-run, re-run nothing"
    )
    rerun.add_argument("--from", dest="start", choices=["failed", "start"], default="failed",
                       help="failed: from the step that failed (default); start: the whole run again")  # fmt: skip
    rerun.add_argument(
        "--run", type=int, help="a recurring object's run number (default: its last failed run)"
    )
    backfill = verb(
        "backfill", "make the runs a recurring object's schedule would have made in [--start, --end)"
    )
    backfill.add_argument("kind", type=_kind, metavar="KIND")
    backfill.add_argument("name", metavar="NAME|ID")
    backfill.add_argument("--start", required=True, help="an ISO 8601 time with an offset (included)")
    backfill.add_argument("--end", required=True, help="an ISO 8601 time with an offset (not included)")
    backfill.add_argument("--parallelism", type=int, default=1, metavar="N",
                          help="runs at once (default 1: one after another in the object; more: in N copies of it, "
                          "labelled lambdaop/backfill-of=NAME)")  # fmt: skip
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
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`| head`): say nothing more, as Unix tools do
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # nothing asked: what can be asked
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except Usage as exc:
        print(f"lambdaop: {exc}", file=sys.stderr)
        return 2
    setup_logs(args.log_level, args.log_format)

    def say(text: str) -> None:
        """One line on stderr; `serve` with JSON logs says it as a log line, so every line is JSON."""
        if args.command == "serve" and args.log_format == "json":
            log.critical(text)
        else:
            print(f"lambdaop: {text}", file=sys.stderr)

    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "validate":
            return validate(args.paths, policy_of(args.allow_hosts))
        if args.command == "schema":
            return write_schemas(args.out)
        if args.command == "user":
            return user_command(args)
        return client_command(args)
    except BrokenPipeError:
        raise
    except LambdaopError as exc:
        say(str(exc))
        return 2
    except (argparse.ArgumentTypeError, PathProblem, NotLambdaop) as exc:
        say(str(exc))
        return 2
    except ClientError as exc:
        say(client_problem(exc, args))
        for detail in exc.body.get("details", []) if exc.status in (409, 422) else []:
            where = ", ".join(
                f"{k} {detail[k] + 1 if k == 'document' else detail[k]}" if k != "field" else str(detail[k])
                for k in ("document", "line", "field")
                if detail.get(k) is not None
            )
            print(f"  {where + ': ' if where else ''}{detail.get('message')}", file=sys.stderr)
        return 1
    except requests.ConnectionError:
        say(f"cannot reach {args.server}: is `lambdaop serve` running there? (pass --server or set LAMBDAOP_SERVER)")  # fmt: skip
        return 2
    except requests.RequestException as exc:
        say(f"talking to {args.server} failed: {exc}")
        return 2
    except FileNotFoundError as exc:
        say(f"{exc.filename}: no such file or folder")
        return 2
    except PermissionError as exc:
        say(f"{exc.filename}: permission denied")
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        say(f"{where}{exc.strerror or exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; the traceback goes to the debug log
        log.debug("unexpected error", exc_info=True)
        say(f"unexpected error: {type(exc).__name__}: {exc} (run with --log-level DEBUG for details)")
        return 2


if __name__ == "__main__":
    sys.exit(main())
