"""Where each limited call of this process stands, as the limiter keeps it: its `Seat` (the keys it
needs places of, the stage it is at, the places it holds), the limiter's answer to the loop
(`Admission`), and what the limiter has done (`Counts`). Values only. Called by the limiter and
the loop's firing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import Enum

from lambdaop.engine.limits import EPOCH, CallLimits


class Stage(Enum):
    CONCURRENCY = "concurrency"  # waits for a concurrency place
    RATE = "rate"  # waits for a rate place
    READY = "ready"  # has what it needs: it leaves on its next turn
    OUT = "out"  # has left


@dataclass
class Seat:
    """Where one limited call stands."""

    call: str
    object_id: str
    limits: CallLimits
    due: dt.datetime
    since: dt.datetime
    ckey: str | None
    rkey: str | None
    stage: Stage
    number: int | None = None  # the concurrency place it holds
    deadline: dt.datetime | None = None  # a rate place's call leaves by then
    rnumber: int | None = None  # the rate place it took
    free_since: dt.datetime = EPOCH  # when the last place it took became free
    waited: bool = False


@dataclass(frozen=True)
class Admission:
    """May the call leave now? (`refused`: never, its key cannot be made; `free_since`: when the last
    place it took became free, from which its lateness counts; `waited`: seconds it waited.)"""

    go: bool
    refused: str | None = None
    free_since: dt.datetime | None = None
    waited: float = 0.0


WAIT = Admission(False)


@dataclass
class Counts:
    """What the limiter has done (metrics and tests read it)."""

    waits: dict[str, int] = field(default_factory=lambda: {"concurrency": 0, "rate": 0})
    handed: int = 0  # places given to the next call here, with no store work
    taken: int = 0  # places taken in the store
    released: int = 0
    voided: int = 0  # rate places given up (the call could not leave in time)
    lost: int = 0  # places lost to another process (not renewed in time)
