"""How the client verbs show objects: tables, `kubectl describe`-like summaries, names, and
objects as spec documents that `apply -f` takes back.

An object from the API is shown as a document (`apiVersion`, `kind`,
`metadata`, `spec`, then `status` with the rest of the view): `-o yaml`
writes it block style in the order a spec is written, with the model's
defaults left out, so `get task X -o yaml > x.yaml; apply -f x.yaml` says
`unchanged` (a `status` block is ignored when applied). Called by remote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from io import StringIO
from typing import Any, TextIO

from lambdaop.spec import API_VERSION, KINDS

# the order fields are written in (README "Specs"); siblings are sorted by it, other keys keep their place
ORDER = [
    "apiVersion", "kind", "metadata", "spec", "status",
    "name", "labels", "annotations",
    "invoke", "url", "lambda", "qualifier", "method", "auth", "headers", "query", "body", "payload",
    "invocationType", "region", "roleArn", "externalId", "sessionName", "timeout", "successWhen",
    "followRedirects", "sign", "initialDelay", "at", "after", "schedule", "cron", "every", "timezone",
    "start", "end", "suspended", "tasks", "delay", "on", "retries", "retryDelay", "backoff", "factor", "max",
    "jitter", "retryOn", "catchUp", "overlap", "afterLast", "conditionCheck", "fallback", "onFailure",
    "path", "equals", "in",
]  # fmt: skip
RANK = {key: i for i, key in enumerate(ORDER)}
FREE = {
    "headers",
    "query",
    "body",
    "payload",
    "labels",
    "annotations",
    "equals",
    "in",
    "settings",
}  # users' own keys
STATUS = (
    "id", "displayName", "owner", "state", "suspended", "generation", "due", "nextRuns", "calls", "step",
    "attempt", "reason", "failedStep", "last", "lastRun", "manager", "source", "pruned", "created",
    "updated", "started", "finished", "redacted",
)  # fmt: skip


def ordered(value: Any, key: str | None = None) -> Any:
    """A spec (or any answer) with each mapping's keys in the order a spec is written; the
    users' own mappings (headers, body, labels, …) stay as they are."""
    if key in FREE:
        return value
    if isinstance(value, list):
        return [ordered(v, key) for v in value]
    if not isinstance(value, dict):
        return value
    keys = sorted(value, key=lambda k: RANK.get(k, len(ORDER)))
    return {k: ordered(value[k], k) for k in keys}


def compact_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without the model's defaults (applying it gives the same spec back), a call that
    is only a URL or a function written as that string."""
    model = KINDS.get(kind)
    try:
        parsed = model.model_validate({"metadata": {"name": "x"}, "spec": spec}) if model else None
    except ValueError:
        parsed = None
    if parsed is None:
        return spec
    out = parsed.spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return _short_calls(out)


def _short_calls(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        if (
            key in ("invoke", "tasks")
            and len(value) == 1
            and ({"url"} == set(value) or {"lambda"} == set(value))
        ):
            return next(iter(value.values()))
        return {k: (_short_calls(v, k) if k not in FREE else v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_calls(v, key) for v in value]
    return value


def document(view: dict[str, Any]) -> dict[str, Any]:
    """One object of the API as a spec document with its status."""
    meta: dict[str, Any] = {"name": view["name"]}
    if view.get("labels"):
        meta["labels"] = view["labels"]
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": view["kind"], "metadata": meta}
    if view.get("spec") is not None:
        doc["spec"] = ordered(compact_spec(view["kind"], view["spec"]))
    status = {k: view[k] for k in STATUS if view.get(k) not in (None, [], {}, False) or k == "calls"}
    if status.get("displayName") == view["name"]:
        status.pop("displayName")
    doc["status"] = status  # as the API answers it
    return doc


def masked_fields(value: Any, path: str = "spec") -> list[str]:
    """Where a document holds a masked secret (`***`): applied as it is, it would store `***`."""
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in masked_fields(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in masked_fields(v, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and "***" in value else []


def write_yaml(value: Any, out: TextIO) -> None:
    """Block style YAML (strings that would read as something else are quoted)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.dump(value, out)


def write_documents(views: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Objects as documents: a YAML stream (`---` between them) or JSON (a list for several)."""
    docs = [document(v) for v in views]
    if fmt == "json":
        out.write(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2) + "\n")
        return
    for i, doc in enumerate(docs):
        if i:
            out.write("---\n")
        write_yaml(doc, out)


def name_of(view: dict[str, Any]) -> str:
    """`task/pulse`: what `-o name` prints, and what every verb takes."""
    return f"{view['kind'].lower()}/{view['name']}"


# ----- tables


def state_of(view: dict[str, Any]) -> str:
    """The state, with `suspended` beside it for a paused recurring object (kubectl's Ready,SchedulingDisabled)."""
    return f"{view['state']},suspended" if view.get("suspended") else str(view["state"])


def last_result(view: dict[str, Any]) -> str:
    last = view.get("last") or {}
    if not last:
        return "-"
    if last.get("ok"):
        return f"ok {last.get('status') or ''}".strip()
    return f"failed {last.get('status') or ''}".strip()


def table(rows: Iterable[dict[str, Any]], wide: bool) -> str:
    """The `get` table: columns as wide as their widest value, so every name is shown whole (and
    every verb accepts what NAME shows)."""
    head = ["NAME", "STATE", "NEXT", "CALLS"]
    if wide:
        head = ["ID", *head, "OWNER", "LAST RESULT", "DISPLAY NAME", "SCHEDULE"]
    lines = []
    for r in rows:
        nxt = r.get("due") or ((r.get("nextRuns") or [None])[0]) or "-"
        cells = [r["name"], state_of(r), nxt, str(r.get("calls", 0))]
        if wide:
            display = r.get("displayName") if r.get("displayName") not in (None, r["name"]) else "-"
            sched = (r.get("schedule") or {}).get("description", "-")
            cells = [r["id"], *cells, r.get("owner", "-"), last_result(r), display or "-", sched]
        lines.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(head, *lines, strict=False)]
    right = {head.index("CALLS")}
    out = StringIO()
    for cells in [head, *lines]:
        parts = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))]  # fmt: skip
        out.write("   ".join(parts).rstrip() + "\n")
    return out.getvalue()


def runs_table(rows: Iterable[dict[str, Any]]) -> str:
    """The `get runs` table: when each run ended, its object as verbs take it, and how it went."""
    head = ["FINISHED", "OBJECT", "RUN", "RESULT", "REASON"]
    lines = []
    for r in rows:
        obj = r["object"]
        run = str(r["run"]) if r.get("run") is not None else f"g{r.get('generation', 1)}"
        if r.get("trigger"):
            run += f" ({r['trigger']})"
        lines.append(
            [r["finished"], f"{obj['kind'].lower()}/{obj['name']}", run, r["result"], r.get("reason") or "-"]
        )
    widths = [max(len(str(c)) for c in column) for column in zip(head, *lines, strict=False)]
    out = StringIO()
    for cells in [head, *lines]:
        out.write("   ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n")
    return out.getvalue()


# ----- describe


def _call_target(invoke: Any) -> str:
    if isinstance(invoke, str):
        return invoke
    if not isinstance(invoke, dict):
        return "-"
    if invoke.get("lambda"):
        qualifier = f" (qualifier {invoke['qualifier']})" if invoke.get("qualifier") else ""
        return f"Lambda {invoke['lambda']}{qualifier} {invoke.get('invocationType') or 'RequestResponse'}"
    return f"{invoke.get('method', 'GET')} {invoke.get('url')}"


def _steps(view: dict[str, Any]) -> list[tuple[str, str]]:
    spec = view.get("spec") or {}
    check = spec.get("conditionCheck")
    tasks = spec.get("tasks") or []
    out = []
    for i, task in enumerate(tasks):
        retries = f" (retries {task['retries']})" if isinstance(task, dict) and task.get("retries") else ""
        out.append((f"task:{i}", f"Task {i + 1}: {_call_target(task)}{retries}"))
        if check and (i < len(tasks) - 1 or check.get("afterLast")):
            out.append((f"check:{i}", f"Check {i + 1}: {_call_target(check.get('invoke'))}"))
    fallback = spec.get("fallback")
    if fallback:
        when = " or ".join({"check": "the check gives up", "task": "a task fails"}[w] for w in fallback.get("on", ["check", "task"]))  # fmt: skip
        out.append(("fallback", f"Fallback: {_call_target(fallback.get('invoke'))} (when {when})"))
    return out


def _paused(view: dict[str, Any]) -> str | None:
    """Why no call of it starts: everything is paused (the kill switch), or it is."""
    everything = view.get("pausedAll")
    if everything:
        return f"everything is paused by {everything.get('by')} since {everything.get('at')}: {everything.get('reason')}"  # fmt: skip
    if view.get("suspended"):
        return f"yes: {view['pauseReason']}" if view.get("pauseReason") else "yes"
    return None


def _trigger(view: dict[str, Any]) -> str | None:
    """A run off the schedule, in words."""
    trigger = view.get("trigger")
    if trigger == "rerun":
        return f"re-run {view.get('rerun')}" + (f" of run {view['rerunOf']}" if view.get("rerunOf") else "")
    if trigger == "backfill":
        return f"backfill ({view.get('backfillLeft') or 0} more to go)"
    return "run now" if trigger == "now" and view.get("schedule") else None


def _reruns_waiting(view: dict[str, Any]) -> str | None:
    waiting = view.get("rerunsWaiting") or []
    return f"of run(s) {', '.join(map(str, waiting))}, one after another once this run has ended" if waiting else None  # fmt: skip


def describe(view: dict[str, Any], out: TextIO, calls_shown: int = 10, runs_shown: int = 5) -> None:
    """A readable summary of one object: who and what it is, its state and schedule, its spec,
    its last runs and its last calls (`-o yaml` or `-o json` give everything)."""
    rows: list[tuple[str, Any]] = [
        ("Name", view["name"]),
        ("Display name", view.get("displayName") if view.get("displayName") != view["name"] else None),
        ("Kind", view["kind"]),
        ("Id", view["id"]),
        ("Owner", view.get("owner")),
        ("Labels", ", ".join(f"{k}={v}" for k, v in (view.get("labels") or {}).items()) or None),
        ("Managed by", _manager(view)),
        ("State", state_of(view) + (" (pruned: its spec is gone)" if view.get("pruned") else "")),
        ("Reason", view.get("reason")),
        ("Failed step", view.get("failedStep")),
        ("Generation", view.get("generation")),
        ("Created", view.get("created")),
        ("Updated", view.get("updated")),
        ("Next call", view.get("due") or ("-" if view["state"] in ("scheduled", "running") else None)),
        ("Calls", view.get("calls")),
        ("Paused", _paused(view)),
        ("This run", _trigger(view)),
        ("Re-runs waiting", _reruns_waiting(view)),
    ]
    schedule = view.get("schedule")
    if schedule:
        rows.append(("Schedule", schedule.get("description")))
        runs = view.get("nextRuns") or []
        rows.append(
            (
                "Next runs",
                ", ".join(runs) if runs else ("none: suspended" if view.get("suspended") else "none"),
            )
        )
        if view.get("skippedRuns"):
            rows.append(("Skipped runs", view["skippedRuns"]))
    width = max(len(k) for k, v in rows if v is not None) + 2
    for key, value in rows:
        if value is not None:
            out.write(f"{key + ':':{width}}{value}\n")
    spec = view.get("spec")
    if view["kind"] == "TaskSet" and spec:
        out.write("Steps:\n")
        for _, text in _steps(view):
            out.write(f"  {text}\n")
    elif spec:
        out.write(f"{'Calls to:':{width}}{_call_target(spec.get('invoke'))}\n")
    if spec:
        out.write("Spec:\n")
        block = StringIO()
        write_yaml(ordered(compact_spec(view["kind"], spec)), block)
        out.writelines(f"  {line}\n" for line in block.getvalue().splitlines())
    runs = view.get("runs") or []
    if runs:
        shown = runs[-runs_shown:]
        out.write(f"Last runs ({len(shown)} of {len(runs)}):\n")
        out.write(_grid(["RUN", "DUE", "FINISHED", "RESULT", "REASON"],
                        [[r.get("run"), r.get("scheduled"), r.get("finished"), r.get("result"), r.get("reason")] for r in reversed(shown)]))  # fmt: skip
    attempts = view.get("attempts") or []
    if attempts:
        shown = attempts[-calls_shown:]
        out.write(f"Last calls ({len(shown)} of {len(attempts)}):\n")
        out.write(_grid(["TIME", "STEP", "ATTEMPT", "RESULT", "DURATION", "NEXT TRY"],
                        [[a.get("at"), a.get("step") + (f" (run {a['run']})" if a.get("run") else ""), a.get("attempt"),
                          ("ok" if a.get("ok") else "failed") + (f" {a['status']}" if a.get("status") else "") + (f": {a['error']}" if a.get("error") and not a.get("ok") else ""),
                          f"{a['duration_ms']:.0f} ms" if isinstance(a.get("duration_ms"), int | float) else None,
                          f"in {a['nextDelayMs'] / 1000:g}s ({a.get('delayReason')})" if a.get("nextDelayMs") is not None else None]
                         for a in reversed(shown)]))  # fmt: skip
    elif view.get("attempts") is not None:
        out.write("Last calls:  none yet\n")


def _manager(view: dict[str, Any]) -> str | None:
    manager = view.get("manager") or ""
    source = view.get("source") or {}
    if manager.startswith("folder:"):
        folder, file = manager[len("folder:") :], source.get("file")
        where = file if not file or file.startswith("/") else f"{folder.rstrip('/')}/{file}"
        where = where or folder
        line = f", line {source['line']}" if source.get("line") else ""
        return f"the specs folder ({where}{line}): edit the file to change it"
    if manager.startswith("api:"):
        return f"the API (applied by {manager[len('api:') :]})"
    return manager or None


def _grid(head: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(c) for c in column) for column in zip(head, *cells, strict=False)]
    out = StringIO()
    for row in [head, *cells]:
        out.write("  " + "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() + "\n")
    return out.getvalue()
