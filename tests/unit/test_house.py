"""The house rules on size, read from the source with `ast`: no module over 500 lines, no class over 300.

A class's size runs from its `class` line to the last line of its body. The
failure names every offender with its size, so one run shows all that is to split.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "lambdaop"
MODULE_LINES = 500
CLASS_LINES = 300


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert found, f"no modules under {PACKAGE}"
    return found


def test_no_module_is_over_500_lines() -> None:
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in modules()}
    over = [f"{path.relative_to(PACKAGE.parent)}: {n} lines" for path, n in sizes.items() if n > MODULE_LINES]
    assert not over, f"modules over {MODULE_LINES} lines:\n" + "\n".join(over)


def test_no_class_is_over_300_lines() -> None:
    over: list[str] = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > CLASS_LINES:
                    over.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {size} lines")
    assert not over, f"classes over {CLASS_LINES} lines:\n" + "\n".join(over)
