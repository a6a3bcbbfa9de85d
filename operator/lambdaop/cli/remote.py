"""The verbs that talk to a running lambdaop: apply, get, describe, cancel, modify, suspend, resume,
run, rerun, backfill, delete.

Called by main.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lambdaop.cli import show
from lambdaop.cli.client import Client, ClientError, split_documents
from lambdaop.cli.local import SPEC_SUFFIXES, spec_files_of
from lambdaop.core.clock import SystemClock, iso


def client_problem(exc: ClientError, args: argparse.Namespace) -> str:
    return _flag(_problem(exc, args))


def _problem(exc: ClientError, args: argparse.Namespace) -> str:
    if exc.status == 401:
        if not args.token:
            return "no token: pass --token or set LAMBDAOP_TOKEN; `lambdaop user token NAME` prints one"
        return "the server refused the token (revoked, expired or mistyped); `lambdaop user token NAME` prints a new one"
    if exc.status == 403:
        return f"not allowed: {exc.body.get('message')}"
    if exc.status == 404:
        return f"not found: {exc.body.get('message') or 'no such object'} (`lambdaop get {getattr(args, 'kind', 'task').lower()}s` lists the names this accepts; check --token's user too)"  # fmt: skip
    if exc.status == 409:
        said = str(exc.body.get("reason") or exc.body.get("message"))
        return _headline(said) if exc.body.get("details") else said
    message = str(exc.body.get("message") or exc.body)
    if exc.body.get("details"):
        message = _headline(message)
    return f"the server answered {exc.status}: {message}"


def _headline(message: str) -> str:
    """What a message says before its details (which follow, one a line)."""
    return message.split(": ", 1)[0]


def client_command(args: argparse.Namespace) -> int:
    client = Client(args.server, args.token)
    command = args.command
    if command == "apply":
        return _apply(client, args)
    if command == "diff":
        return _diff(client, args)
    if command == "get":
        if args.kind == "Run":
            return _runs(client, args)
        if args.name:
            return _show(args, [client.find(args.kind, args.name)])
        if args.since or args.of_kind:
            raise argparse.ArgumentTypeError("--since and --kind are for get runs")
        body = client.list(args.kind, args.state, args.limit, selector=args.selector, prefix=args.prefix)
        return _show(args, body["tasks" if args.kind == "Task" else "taskSets"])
    if command == "delete":
        name = _bare(args.kind, args.name)
        body = client.delete_spec(args.kind, name, force=args.force)
        _said(args, body["object"], f"deleted ({body['object']['state']}, marked pruned)")
        return 0
    if command == "pause" or (command == "resume" and not args.name):
        return _many(client, args)
    if command == "rerun" and not args.name:
        return _rerun_many(client, args)
    if command == "resume" and args.kind is None:
        raise argparse.ArgumentTypeError("resume KIND NAME, or resume with -l SELECTOR, --owner or --all")
    target = client.find(args.kind, args.name)
    if command == "describe":
        view = client.get(target["id"], args.kind)
        if args.output in ("json", "yaml"):
            _print(args, show.ordered(view))
        elif args.output == "name":
            print(show.name_of(view))
        else:
            show.describe(view, sys.stdout)
        return 0
    if command == "cancel":
        body = client.cancel(target["id"], args.kind)
        _said(args, body.get("task") or body.get("taskSet") or target, "cancelled")
        return 0
    if command == "modify":
        at = args.at if args.at else str(iso(SystemClock().now() + args.after))
        body = client.modify(target["id"], at, args.kind)
        changed = body.get("task") or body.get("taskSet") or target
        _said(args, changed, f"now due {changed.get('due')}")
        return 0
    if command in ("run", "rerun", "backfill"):
        fields: dict[str, Any] = {}
        if command == "rerun":
            fields = {"from": args.start, **({"run": args.run} if args.run else {})}
        elif command == "backfill":
            fields = {"start": args.start, "end": args.end, **({"parallelism": args.parallelism} if args.parallelism != 1 else {})}  # fmt: skip
        body = client.act(target["id"], args.kind, command, fields)
        _said(args, body["object"], body["message"])
        return 0
    if command in ("suspend", "resume"):
        reason = getattr(args, "reason", None) if command == "suspend" else None
        body = client.pause(target["id"], args.kind, command, {"reason": reason} if reason else None)
        _said(args, body.get("object") or target, ("suspended" if body["suspended"] else "resumed")
              + (" after the run going on" if body.get("afterThisRun") else ""))  # fmt: skip
        return 0
    return 2


def _runs(client: Client, args: argparse.Namespace) -> int:
    """get runs: ended runs across objects, newest first (with --prefix, of the objects whose name
    starts with it)."""
    if args.name:
        raise argparse.ArgumentTypeError("get runs lists runs across objects: filter with --state, --since, -l, --kind and --prefix")  # fmt: skip
    filters = {"state": args.state, "since": args.since, "labelSelector": args.selector, "kind": args.of_kind, "prefix": args.prefix}  # fmt: skip
    params = {"limit": args.limit, **{k: v for k, v in filters.items() if v}}
    # GET /runs as Client.runs sends it, with the name prefix too
    rows = client._call("GET", "/runs", expect="runs", params=params)["runs"]
    if args.output in ("json", "yaml"):
        _print(args, rows)
    elif not rows:
        print("No runs" + (f" {args.state}" if args.state else "") + (f" of names starting {args.prefix!r}" if args.prefix else "") + (f" since {args.since}" if args.since else "") + ".", file=sys.stderr)  # fmt: skip
    elif args.output == "name":
        for r in rows:
            print(f"{r['object']['kind'].lower()}/{r['object']['name']}")
    else:
        sys.stdout.write(show.runs_table(rows))
    return 0


def _rerun_many(client: Client, args: argparse.Namespace) -> int:
    """rerun -l … --since …: every failed run of the range, each object's latest."""
    if not args.since:
        raise argparse.ArgumentTypeError("rerun KIND NAME, or rerun many with --since (and -l SELECTOR, KIND, --until)")  # fmt: skip
    pairs = (("labelSelector", args.selector), ("owner", args.owner), ("kind", args.kind), ("since", args.since), ("until", args.until))  # fmt: skip
    fields: dict[str, Any] = {k: v for k, v in pairs if v} | {"from": args.start}
    if args.dry_run:
        fields["dryRun"] = True
    refused = False
    while True:
        body = client.bulk("rerun", fields)
        for row in body["rerun"]:
            print(f"{row['kind']}/{row['name']} {row['message']}")
        for row in body["refused"]:
            refused = True
            print(f"{row['kind']}/{row['name']} not re-run: {row['message']}", file=sys.stderr)
        if not body.get("next"):
            if not body["rerun"] and not body["refused"]:
                print(f"No failed runs since {args.since}.", file=sys.stderr)
            return 1 if refused else 0
        fields["cursor"] = body["next"]


def _many(client: Client, args: argparse.Namespace) -> int:
    """pause / resume by selector, owner and kind, or everything (--all)."""
    if args.name:
        raise argparse.ArgumentTypeError("pause chooses objects by -l SELECTOR, --owner and KIND (one recurring object: suspend KIND NAME)")  # fmt: skip
    if not (args.selector or args.owner or args.all or args.kind):
        raise argparse.ArgumentTypeError(f"{args.command} what? give -l SELECTOR, --owner, a KIND, or --all")
    fields: dict[str, Any] = {"all": True} if args.all else {
        k: v for k, v in (("labelSelector", args.selector), ("owner", args.owner), ("kind", args.kind)) if v
    }  # fmt: skip
    if args.command == "pause" and args.reason:
        fields["reason"] = args.reason
    if args.command == "resume" and args.skip_missed:
        fields["skipMissed"] = True
    if args.dry_run:
        fields["dryRun"] = True
    verb = "paused" if args.command == "pause" else "resumed"
    while True:
        body = client.bulk(args.command, fields)
        if args.all:
            everything = body.get("pausedAll")
            print(
                f"everything paused: {everything['reason']}"
                if everything
                else "the pause of everything has ended"
            )
            return 0
        for row in body[verb]:
            print(f"{row['kind']}/{row['name']} {row['message']}" if args.output != "name" else f"{row['kind'].lower()}/{row['name']}")  # fmt: skip
        for row in body["refused"]:
            print(f"{row['kind']}/{row['name']} not {verb}: {row['message']}", file=sys.stderr)
        if not body.get("next"):
            return 1 if body["refused"] else 0
        fields["cursor"] = body["next"]


def _bare(kind: str, name: str) -> str:
    """`task/pulse` (what `-o name` prints) or `pulse`."""
    return name.split("/", 1)[1] if name.lower().startswith(f"{kind.lower()}/") else name


def _said(args: argparse.Namespace, view: dict[str, Any], what: str) -> None:
    """What a verb did, in one line (`-o name`: the object's name only, for scripts)."""
    print(show.name_of(view) if args.output == "name" else f"{view['kind']}/{view['name']} {what}")


def _apply(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for path in spec_files_of(args.files):
        results = []
        for offset, piece in split_documents(read_spec_file(path)):
            try:
                results += client.apply(piece, force=args.force)["results"]
            except ClientError as exc:
                failed = True
                if exc.status == 422:
                    print(
                        f"{path}: invalid; nothing in it was applied{not_a_spec_file(path)}", file=sys.stderr
                    )
                else:
                    print(f"{path}: {client_problem(exc, args)}", file=sys.stderr)
                for d in exc.body.get("details", []):
                    print(f"{place(path, d, offset)} {_flag(d['message'])}", file=sys.stderr)
        for r in results:
            if args.output == "name":
                print(f"{str(r['kind']).lower()}/{r['name']}")
                continue
            print(
                f"{path}: {r['kind']}/{r['name']} {r['action']}"
                + (f" ({_flag(r['message'])})" if r.get("message") else "")
            )
            for warning in r.get("warnings", []):
                print(f"{path}: {r['kind']}/{r['name']}: warning: {warning}", file=sys.stderr)
    return 1 if failed else 0


def read_spec_file(path: Any) -> str:
    """A spec file's text (`-`: standard input)."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return str(path.read_text())
    except UnicodeDecodeError:
        raise OSError(f"{path}: not a text file (spec files are YAML or JSON)") from None


def not_a_spec_file(path: Any) -> str:
    """A hint after a refusal of a file whose name says it is no spec file (README.md)."""
    if str(path).endswith(SPEC_SUFFIXES) or str(path) == "-":
        return ""
    return " (is it a spec file? spec files are YAML or JSON, named *.yaml, *.yml or *.json)"


def place(path: Any, detail: dict[str, Any], offset: int = 0) -> str:
    """`file:line:column: field:` of a problem the server found in a piece of a file."""
    where = str(path)
    if detail.get("line"):
        where += f":{detail['line'] + offset}"
        if detail.get("column"):
            where += f":{detail['column']}"
    return where + ":" + (f" {detail['field']}:" if detail.get("field") else "")


def _block(value: Any) -> list[str]:
    """A spec as block-style YAML lines, in the order a spec is written (what diff compares)."""
    from io import StringIO

    out = StringIO()
    show.write_yaml(show.ordered(value), out)
    return out.getvalue().splitlines(keepends=True)


def _diff(client: Client, args: argparse.Namespace) -> int:
    """`diff -f PATH`: per document what an apply would change, as a unified diff of its spec.

    A document of an object the specs folder manages is compared too (a specs repository's
    change, previewed), its header saying that the folder applies it; exit 0 (no change) or 1
    (changes) either way, 2 only on errors."""
    import difflib

    changed = failed = False
    for path in spec_files_of(args.files):
        for offset, piece in split_documents(read_spec_file(path)):
            try:
                results = client.apply(piece, force=args.force, dry_run=True)["results"]
            except ClientError as exc:
                failed = True
                print(f"{path}: {client_problem(exc, args)}{not_a_spec_file(path)}", file=sys.stderr)
                for d in exc.body.get("details", []):
                    print(f"{place(path, d, offset)} {_flag(d['message'])}", file=sys.stderr)
                continue
            for r in results:
                name, where = f"{r['kind']}/{r['name']}", f"{path}:{r['line'] + offset}"
                action, note = r["action"], ""
                if action == "refused" and "change" in r:  # the specs folder's: what its file would change
                    action, note = r["change"], f" ({_flag(r.get('message', ''))})"
                if action == "refused":
                    failed = True
                    print(f"{where}: {name} would be refused: {_flag(r.get('message', ''))}", file=sys.stderr)
                    continue
                if action == "unchanged":
                    continue
                changed = True
                print(f"diff {name} ({where}): would be {action}{note}")
                before = _block(r["current"]) if "current" in r else []
                after = _block(r["desired"])
                stored = f"{name} (stored, {r['state']})" if "current" in r else f"{name} (not stored)"
                sys.stdout.writelines(difflib.unified_diff(before, after, stored, f"{name} ({path})"))
    return 2 if failed else 1 if changed else 0


def _flag(message: str) -> str:
    """The API's words for its flag, as the command line spells it."""
    return message.replace("force=true", "--force")


def _print(args: argparse.Namespace, value: Any) -> None:
    if args.output == "yaml":
        show.write_yaml(value, sys.stdout)
    else:
        print(json.dumps(value, indent=2))


def _show(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    if args.output in ("json", "yaml"):
        show.write_documents(rows, args.output, sys.stdout) if rows else print(
            "[]" if args.output == "json" else ""
        )
        masked = sorted({f for r in rows for f in show.masked_fields(show.document(r).get("spec"))})
        if masked:
            print(f"lambdaop: {', '.join(masked)}: shown masked (***), and refused so when applied; put the value, or {{fromEnv: NAME}}, back first", file=sys.stderr)  # fmt: skip
        return 0
    if args.output == "name":
        for r in rows:
            print(show.name_of(r))
        return 0
    if not rows:
        print(f"No {args.kind}s{f' in state {args.state}' if args.state else ''}.", file=sys.stderr)
        return 0
    sys.stdout.write(show.table(rows, wide=args.output == "wide"))
    return 0
