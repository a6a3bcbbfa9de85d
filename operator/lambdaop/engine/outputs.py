"""What a named step of a TaskSet answered, kept so later steps can read it (`steps.NAME`).

A `StepOutput` is part of the stored record (`record.StoredObject.outputs`,
written by a `Change` like every other field): the step's JSON answer (or its
text), the status of its last call, how many attempts it took, whether it
succeeded, and the run and generation it belongs to, so a new run (or a new
generation) never reads an old one (a recurring set's re-run from its failed
step starts with the failed run's, carried over as its own by
`ondemand.carried_outputs`). The steps of a parallel branch keep theirs
as `PARALLEL/BRANCH/STEP`; the parallel step's own output is the list of
what each branch's last step answered, with how each branch ended. Each output is bounded (`MAX_OUTPUT`), and
so are all of a run's together (`MAX_OUTPUTS`, under the store's 16 MiB per
object). Pure. Called by the record, the templates, `ondemand` and the loop's results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_OUTPUT = 256 * 1024  # bytes of one step's answer kept as its output (as Step Functions)
MAX_OUTPUTS = 4 * 1024 * 1024  # bytes of all the outputs of one run


def size_of(value: Any) -> int:
    """How many bytes a value takes as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass(frozen=True)
class StepOutput:
    output: Any  # the JSON answer, or its text (None when it had no body, or it was over MAX_OUTPUT)
    status: int | None  # of the step's last call (None: no answer)
    attempts: int
    ok: bool
    run: int = 1
    generation: int = 1
    size: int = 0  # bytes of `output` as JSON
    branches: tuple[str, ...] | None = (
        None  # a parallel step: how each branch ended (done, failed, cancelled)
    )

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> StepOutput:
        text = data.get("output")
        return cls(
            output=json.loads(text) if isinstance(text, str) else None,
            status=data.get("status"),
            attempts=int(data.get("attempts", 1)),
            ok=bool(data.get("ok")),
            run=int(data.get("run", 1)),
            generation=int(data.get("generation", 1)),
            size=int(data.get("size", 0)),
            branches=tuple(data["branches"]) if isinstance(data.get("branches"), list) else None,
        )

    def for_storage(self) -> dict[str, Any]:
        """Stored with the output as JSON text: an answer's keys (`$set`, `a.b`, NUL) are the
        endpoint's, and the store must be able to hold whatever it answered."""
        out = {
            "output": json.dumps(self.output, separators=(",", ":"), ensure_ascii=False),
            "status": self.status,
            "attempts": self.attempts,
            "ok": self.ok,
            "run": self.run,
            "generation": self.generation,
            "size": self.size,
        }
        return out | ({"branches": list(self.branches)} if self.branches is not None else {})

    def in_context(self) -> dict[str, Any]:
        """What an expression reads as `steps.NAME`."""
        out = {"output": self.output, "status": self.status, "attempts": self.attempts, "ok": self.ok}
        return out | ({"branches": list(self.branches)} if self.branches is not None else {})


def current(outputs: Mapping[str, StepOutput], run: int, generation: int) -> dict[str, StepOutput]:
    """The outputs of this run of this generation (older ones are never read)."""
    return {name: o for name, o in outputs.items() if o.run == run and o.generation == generation}


def with_output(
    outputs: Mapping[str, StepOutput], name: str, new: StepOutput
) -> tuple[dict[str, StepOutput], str | None]:
    """The outputs of the run with `new` kept as step `name`'s, or why it cannot be kept (all of
    the run's outputs together would be over `MAX_OUTPUTS`)."""
    kept = {**current(outputs, new.run, new.generation), name: new}
    total = sum(o.size for o in kept.values())
    if total > MAX_OUTPUTS:
        return dict(
            outputs
        ), f"the outputs of this run would take {total} bytes; at most {MAX_OUTPUTS} are kept"
    return kept, None
