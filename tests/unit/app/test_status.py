"""Status reports are rendered when they are written, not each time an object moves; a file
that cannot be written is logged once, not at every try."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from lambdaop.app.status import StatusWriter


def test_a_busy_report_is_rendered_once_per_write(tmp_path: Path) -> None:
    writer = StatusWriter(interval=3600)  # after the first write, only flush() writes again
    report = tmp_path / "load.status.yaml"
    renders = []

    def render() -> str:
        renders.append(1)
        return f"documents: {len(changes)}\n"

    changes: list[int] = []
    try:
        for i in range(1000):  # 1,000 objects of one file move
            changes.append(i)
            writer.put(report, render)
        writer.flush()
        assert report.read_text() == "documents: 1000\n"
        assert len(renders) <= 2, f"{len(renders)} renderings for 1,000 changes"
    finally:
        writer.stop()


def test_a_report_that_cannot_be_rendered_does_not_stop_the_writer(tmp_path: Path) -> None:
    writer = StatusWriter(interval=0)

    def broken() -> str:
        raise ValueError("no")

    try:
        writer.put(tmp_path / "bad.status.yaml", broken)
        writer.put(tmp_path / "good.status.yaml", "documents: []\n")
        writer.flush()
        assert writer.alive
        assert (tmp_path / "good.status.yaml").read_text() == "documents: []\n"
        assert not (tmp_path / "bad.status.yaml").exists()
    finally:
        writer.stop()


def test_a_file_that_cannot_be_written_is_logged_once_until_it_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Directories where the temporary file or the report goes fail the writes, for root too
    (whom a read-only folder does not stop)."""
    writer = StatusWriter(interval=0)
    report = tmp_path / "pulse.status.yaml"
    temporary = tmp_path / f".pulse.status.yaml.{os.getpid()}.tmp"
    caplog.set_level(logging.INFO, logger="lambdaop.app.status")

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

    def runs(*numbers: int) -> None:  # a busy object: a new report each run
        for n in numbers:
            writer.put(report, f"documents: {n}\n")
            writer.flush()

    try:
        temporary.mkdir()
        runs(0, 1, 2, 3, 4)
        assert writer.failures == 5 and len(errors()) == 1, errors()
        assert "pulse.status.yaml: cannot write the status file" in errors()[0]
        temporary.rmdir()
        report.mkdir()
        runs(5, 6)
        assert len(errors()) == 2 and errors()[0] != errors()[1], "another error is said once too"
        report.rmdir()
        runs(7)
        assert report.read_text() == "documents: 7\n"
        assert any("written again" in r.getMessage() for r in caplog.records)
        report.unlink()
        report.mkdir()
        runs(8, 9)
        assert len(errors()) == 3, "it failed again after it was written: said again, once"
        assert writer.failures == 9
        assert sorted(p.name for p in tmp_path.iterdir()) == ["pulse.status.yaml"], "no temporary file left"
    finally:
        writer.stop()
