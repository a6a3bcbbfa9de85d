"""Status reports are rendered when they are written, not each time an object moves."""

from __future__ import annotations

from pathlib import Path

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
