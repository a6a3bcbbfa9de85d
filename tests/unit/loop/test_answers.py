"""What is kept of an answer: a named step's output, bounded, with no secret of the call in it."""

from __future__ import annotations

import json

from lambdaop.engine.outputs import MAX_OUTPUT
from lambdaop.loop.answers import REDACTED, Secrets, output_of


def test_json_and_text_answers_become_outputs() -> None:
    none = Secrets()
    assert output_of(b'{"id": "art-7", "n": 1}', none) == ({"id": "art-7", "n": 1}, 20, None)
    assert output_of(b"plain text", none) == ("plain text", 12, None)
    assert output_of(b"  ", none) == (None, 0, None)


def test_an_answer_over_the_bound_is_not_kept() -> None:
    value, size, why = output_of(b"x" * (MAX_OUTPUT + 1), Secrets())
    assert value is None and size == 0 and why is not None and f"at most {MAX_OUTPUT} bytes" in why
    quotes = b'"' * (MAX_OUTPUT // 2 + 10)  # as JSON text each quote is escaped: over the bound
    assert output_of(quotes, Secrets())[2] is not None


def test_secrets_are_taken_out_of_outputs_and_text() -> None:
    secrets = Secrets()
    secrets.add("s3cr3t-1")
    secrets.add("abc")  # too short to take out
    answer = json.dumps({"headers": {"x-api-key": "s3cr3t-1"}, "s3cr3t-1": ["Bearer s3cr3t-1", 3]}).encode()
    value, _, _ = output_of(answer, secrets)
    assert value == {"headers": {"x-api-key": REDACTED}, REDACTED: [f"Bearer {REDACTED}", 3]}
    assert secrets.redact("key=s3cr3t-1; abc") == f"key={REDACTED}; abc"
