"""What the specs-folder tests share: a Task document, its status file's entry and conditions, the
calls the demo endpoint saw, the stored object, and the CLI against a running server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import wait_until
from lambdaop.cli.main import main
from lambdaop.tools.demo import DemoLambda


def task(name: str, url: str, *lines: str) -> str:
    extra = "".join(f"  {line}\n" for line in lines)
    return (
        f"apiVersion: lambdaop/v1\nkind: Task\nmetadata: {{name: {name}}}\nspec:\n  invoke: '{url}'\n{extra}"
    )


def status(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    report = path.with_name(path.stem + ".status.yaml")
    if not report.exists():
        return {}
    return YAML(typ="safe", pure=True).load(report.read_text()) or {}


def entry(path: Path, name: str) -> dict[str, Any]:
    return next((d for d in status(path).get("documents", []) if d["name"] == name), {})


def condition(path: Path, name: str, kind: str) -> dict[str, Any]:
    return next((c for c in entry(path, name).get("conditions", []) if c["type"] == kind), {})


def hits(demo: DemoLambda, path: str, query: str) -> list[Any]:
    return [c for c in demo.calls(path) if c.query == query]


def wait_hits(demo: DemoLambda, path: str, query: str, n: int = 1, timeout: float = 20) -> list[Any]:
    return wait_until(lambda: len(hits(demo, path, query)) >= n and hits(demo, path, query), timeout=timeout, what=f"{n} call(s) to {path}?{query}")  # fmt: skip


def stored(runtime: Any, name: str) -> dict[str, Any]:
    doc = runtime.store.find_by_name("admin", "Task", name)
    assert doc is not None, name
    return dict(doc)


def run_cli(runtime: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--server", runtime.url, "--token", runtime.admin_token or "", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err
