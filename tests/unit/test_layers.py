"""The import rules bite: `lint-imports`, with the repository's contracts, fails on a planted import.

The package is copied to a temporary folder and `lambdaop` resolves to the
copy (PYTHONPATH comes before the editable install's path). The untouched copy
keeps every contract, so the checker reads the copy; the copy with
`import pymongo` in the state machine breaks the contracts on store drivers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PURE = "The pure packages import no store driver, web framework, server or file watcher"
DRIVER = "Only the store talks to MongoDB"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package under `tmp_path/src`, and of pyproject.toml (the contracts) beside it."""
    shutil.copytree(ROOT / "operator" / "lambdaop", tmp_path / "src" / "lambdaop", ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def run(folder: Path, *command: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder / "src")}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def lint(folder: Path) -> subprocess.CompletedProcess[str]:
    done = run(folder, LINT_IMPORTS, "--no-cache", "--no-logo", folder / "pyproject.toml")
    print(done.stdout, done.stderr)
    return done


def test_the_copy_is_what_is_checked(copy: Path) -> None:
    found = run(copy, sys.executable, "-c", "import lambdaop; print(lambdaop.__file__)")
    assert Path(found.stdout.strip()) == copy / "src" / "lambdaop" / "__init__.py", found


def test_a_store_driver_imported_by_the_state_machine_breaks_the_contracts(copy: Path) -> None:
    kept = lint(copy)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert f"{PURE} KEPT" in kept.stdout and f"{DRIVER} KEPT" in kept.stdout

    machine = copy / "src" / "lambdaop" / "engine" / "machine.py"
    machine.write_text(machine.read_text() + "\nimport pymongo  # planted\n")
    broken = lint(copy)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"{PURE} BROKEN" in broken.stdout and f"{DRIVER} BROKEN" in broken.stdout
    assert "lambdaop.engine.machine -> pymongo" in broken.stdout
