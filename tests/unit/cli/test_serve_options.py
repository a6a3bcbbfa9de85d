"""`serve`'s options as parsed: a bad value is one line that names the option and what it expects."""

from __future__ import annotations

from typing import Any

import pytest

from lambdaop.cli.main import build_parser, main


def test_api_threads_defaults_to_8_and_takes_a_number_or_the_environment(monkeypatch: Any) -> None:
    assert build_parser().parse_args(["serve"]).api_threads == 8
    assert build_parser().parse_args(["serve", "--api-threads", "32"]).api_threads == 32
    monkeypatch.setenv("LAMBDAOP_API_THREADS", "16")
    assert build_parser().parse_args(["serve"]).api_threads == 16


@pytest.mark.parametrize("value", ["0", "257", "many"])
def test_api_threads_out_of_bounds_is_refused_in_words(value: str, capsys: Any) -> None:
    assert main(["serve", "--api-threads", value]) != 0
    err = capsys.readouterr().err
    assert "--api-threads" in err and "from 1 to 256" in err and value in err
    assert "Traceback" not in err
