"""Where each document of the specs folder stands, in the kstatus / Flux shape.

Every document's status entry carries `generation` (what the file asks for),
`observedGeneration` (what lambdaop runs) and three conditions, each with a
status, a reason, a message and the time its status last changed:

- `Ready`: the document's spec is what the object runs;
- `Reconciling`: lambdaop is getting there by itself (an edit waits for the run
  going on, or a refusal that may pass is tried again);
- `Stalled`: it cannot get there without a change of the file or of who manages
  the object (an invalid document, a target the outbound policy refuses, an
  object managed through the API, a name defined twice).

`Verdict` is what the folder learnt about a document (from applying it, or
from its object changing); `Conditions` keeps the transition times. Pure apart
from the clock it is given. Called by the folder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lambdaop.core.clock import iso


class Reason(StrEnum):
    APPLIED = "Applied"
    RUN_IN_PROGRESS = "RunInProgress"  # an edit waits for the run going on to end
    RETRYING = "Retrying"  # refused for a reason that may pass: tried again
    INVALID = "Invalid"
    OUTBOUND_POLICY = "OutboundPolicy"
    MANAGED_ELSEWHERE = "ManagedElsewhere"
    DUPLICATE = "DuplicateName"
    INVALID_FILE = "InvalidFile"


STALLED = {
    Reason.INVALID,
    Reason.OUTBOUND_POLICY,
    Reason.MANAGED_ELSEWHERE,
    Reason.DUPLICATE,
    Reason.INVALID_FILE,
}


@dataclass(frozen=True)
class Verdict:
    """Where one document stands: why, in words, and the generations asked for and run."""

    reason: Reason
    message: str
    generation: int | None = None
    observed: int | None = None

    @property
    def ready(self) -> bool:
        return self.reason is Reason.APPLIED

    @property
    def reconciling(self) -> bool:
        return self.reason in (Reason.RUN_IN_PROGRESS, Reason.RETRYING)

    @property
    def stalled(self) -> bool:
        return self.reason in STALLED


class Conditions:
    """The conditions of the documents of one folder, keeping when each last changed status."""

    def __init__(self) -> None:
        self._since: dict[tuple[Any, str], tuple[bool, dt.datetime]] = {}

    def entry(self, key: Any, verdict: Verdict, now: dt.datetime) -> dict[str, Any]:
        """The status entry's fields for a document: generations and conditions."""
        out: dict[str, Any] = {}
        if verdict.generation is not None:
            out["generation"] = verdict.generation
        if verdict.observed is not None:
            out["observedGeneration"] = verdict.observed
        conditions = []
        for kind, status in (("Ready", verdict.ready), ("Reconciling", verdict.reconciling), ("Stalled", verdict.stalled)):  # fmt: skip
            was = self._since.get((key, kind))
            since = was[1] if was is not None and was[0] == status else now
            self._since[(key, kind)] = (status, since)
            conditions.append(
                {
                    "type": kind,
                    "status": "True" if status else "False",
                    "reason": verdict.reason.value,
                    "message": verdict.message,
                    "lastTransitionTime": iso(since),
                }
            )
        out["conditions"] = conditions
        return out

    def forget(self, key: Any) -> None:
        for kind in ("Ready", "Reconciling", "Stalled"):
            self._since.pop((key, kind), None)
