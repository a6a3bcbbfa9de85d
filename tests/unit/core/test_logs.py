"""Times inside log messages are written like the line's own time: ISO 8601 in UTC with Z."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest

from lambdaop.core import logs


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_time_in_a_message_is_iso_with_z(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level, before = root.level, logs._installed
    logs.setup("INFO", fmt)
    try:
        berlin = dt.timezone(dt.timedelta(hours=1))
        due = dt.datetime(2030, 3, 4, 13, 5, 6, 789123, tzinfo=berlin)
        logging.getLogger("lambdaop.test").info("Task a/b restarted (generation %s), due %s", 2, due)
    finally:  # leave logging as the test found it
        if logs._installed is not None:
            root.removeHandler(logs._installed)
        logs._installed = before
        if before is not None:
            root.addHandler(before)
        root.setLevel(level)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "due 2030-03-04T12:05:06.789Z" in line, line
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:", line), "no second time format"
