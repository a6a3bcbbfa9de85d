"""The verbs that talk to a running lambdaop: apply, get, describe, cancel, modify, suspend, resume, delete.

Called by main.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lambdaop.cli.client import Client, ClientError, split_documents
from lambdaop.cli.local import spec_files_of
from lambdaop.core.clock import SystemClock


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
        return f"not found: {exc.body.get('message') or 'no such object'} (check the name or id, and --token's user)"
    if exc.status == 409:
        return str(exc.body.get("reason") or exc.body.get("message"))
    return f"the server answered {exc.status}: {exc.body.get('message') or exc.body}"


def client_command(args: argparse.Namespace) -> int:
    client = Client(args.server, args.token)
    command = args.command
    if command == "apply":
        return _apply(client, args)
    if command == "diff":
        return _diff(client, args)
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
        at = args.at if args.at else (SystemClock().now() + args.after).isoformat()
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
    for path in spec_files_of(args.files):
        results = []
        for offset, piece in split_documents(path.read_text()):
            try:
                results += client.apply(piece, force=args.force)["results"]
            except ClientError as exc:
                failed = True
                if exc.status == 422:
                    print(f"{path}: invalid; nothing in it was applied", file=sys.stderr)
                else:
                    print(f"{path}: {client_problem(exc, args)}", file=sys.stderr)
                for d in exc.body.get("details", []):
                    line = f":{d['line'] + offset}" if d.get("line") else ""
                    field = f" {d['field']}:" if d.get("field") else ""
                    print(f"{path}{line}:{field} {_flag(d['message'])}", file=sys.stderr)
        for r in results:
            print(
                f"{path}: {r['kind']}/{r['name']} {r['action']}"
                + (f" ({_flag(r['message'])})" if r.get("message") else "")
            )
    return 1 if failed else 0


def _block(value: Any) -> list[str]:
    """A spec as block-style YAML lines, in its field order (what diff compares)."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(value, out)
    return out.getvalue().splitlines(keepends=True)


def _diff(client: Client, args: argparse.Namespace) -> int:
    """`diff -f PATH`: per document what an apply would change, as a unified diff of its spec."""
    import difflib

    changed = failed = False
    for path in spec_files_of(args.files):
        for offset, piece in split_documents(path.read_text()):
            try:
                results = client.apply(piece, force=args.force, dry_run=True)["results"]
            except ClientError as exc:
                failed = True
                print(f"{path}: {client_problem(exc, args)}", file=sys.stderr)
                for d in exc.body.get("details", []):
                    line = f":{d['line'] + offset}" if d.get("line") else ""
                    print(f"{path}{line}: {d.get('field') + ': ' if d.get('field') else ''}{d['message']}", file=sys.stderr)  # fmt: skip
                continue
            for r in results:
                name, where = f"{r['kind']}/{r['name']}", f"{path}:{r['line'] + offset}"
                if r["action"] == "refused":
                    failed = True
                    print(f"{where}: {name} would be refused: {_flag(r.get('message', ''))}", file=sys.stderr)
                    continue
                if r["action"] == "unchanged":
                    continue
                changed = True
                print(f"diff {name} ({where}): would be {r['action']}")
                before = _block(r["current"]) if "current" in r else []
                after = _block(r["desired"])
                stored = f"{name} (stored, {r['state']})" if "current" in r else f"{name} (not stored)"
                sys.stdout.writelines(difflib.unified_diff(before, after, stored, f"{name} ({path})"))
    return 2 if failed else 1 if changed else 0


def _flag(message: str) -> str:
    """The API's words for its flag, as the command line spells it."""
    return message.replace("force=true", "--force")


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
