"""Parallel branches of a named step: where each branch stands, and what their calls' results decide.

A parallel step keeps one `Lane` per branch in the object's progress (so it
is stored with it, and survives a restart): the step of the branch it is at,
that step's attempt, when it is due and whether it is waiting for a free
place, running, done, failed or cancelled. At most `maxConcurrency` lanes are
active (running, or waiting for a retry) at once; the others wait. A lane's
due call leaves when it is due, and its result is taken (`after_wave`) as it
comes back: the lane moves on to its branch's next step, retries, ends done or
failed, and a waiting lane takes the place freed (calls of other lanes may be
out meanwhile: the loop says which, `out`). `mode: all` fails on the first
branch that fails (the branches not started are cancelled); `mode: any`
succeeds on the first branch that succeeds; either ends once the calls still
out are back. Pure: no I/O, no clock. Called by waves and machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from lambdaop.engine import retrypolicy
from lambdaop.engine.outcomes import Outcome
from lambdaop.spec import BranchStep, Parallel, TaskSetSpec, TaskSpec


class LaneState(StrEnum):
    WAITING = "waiting"  # not started: no place free yet
    ACTIVE = "active"  # its current step is due, out, or waiting for a retry
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Lane:
    branch: int
    at: int = 0  # its current step, in the branch
    attempt: int = 1
    state: LaneState = LaneState.WAITING
    due: dt.datetime | None = None
    error: str | None = None  # why it failed

    @classmethod
    def from_storage(cls, data: dict[str, Any]) -> Lane:
        return cls(**{**data, "state": LaneState(data["state"])})

    def for_storage(self) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state.value}


@dataclass(frozen=True)
class Verdict:
    """How a parallel step ended after a wave (None from `after_wave` while it goes on)."""

    ok: bool
    reason: str | None = None
    failed: tuple[int, int] | None = None  # the branch that failed and its step there


def lane_step(name: str, branch: int, step: str) -> str:
    """The machine's step id of a branch's step: `step:NAME/BRANCH/STEP`."""
    return f"step:{name}/{branch}/{step}"


def parse_lane_step(step: str) -> tuple[str, int, str] | None:
    """(parallel step, branch, branch step) of a lane's step id, or None for any other step."""
    kind, _, rest = step.partition(":")
    parts = rest.split("/")
    if kind != "step" or len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def parallel_of(spec: TaskSpec | TaskSetSpec, step: str) -> Parallel | None:
    """The branches of a parallel step (None for any other step)."""
    if not isinstance(spec, TaskSetSpec) or spec.steps is None or not step.startswith("step:"):
        return None
    name = step.partition(":")[2]
    if "/" in name:
        return None
    return spec.step_named(name).parallel


def branch_step(spec: TaskSetSpec, step: str) -> BranchStep:
    """The step of a branch a lane's step id names (`step:NAME/BRANCH/STEP`)."""
    found = parse_lane_step(step)
    if found is None:
        raise ValueError(f"no branch step {step!r} in this spec")
    name, branch, inner = found
    par = spec.step_named(name).parallel
    for candidate in par.branches[branch] if par is not None and branch < len(par.branches) else ():
        if candidate.name == inner:
            return candidate
    raise ValueError(f"no branch step {step!r} in this spec")


def begin(par: Parallel, now: dt.datetime) -> tuple[Lane, ...]:
    """The lanes of a parallel step that starts now: the first `maxConcurrency` active, the rest waiting."""
    return tuple(
        Lane(b, state=LaneState.ACTIVE, due=now) if b < par.limit else Lane(b)
        for b in range(len(par.branches))
    )


def wave(lanes: Sequence[Lane], now: dt.datetime, out: Collection[int] = ()) -> list[int]:
    """The lanes whose call is due now and not out already (active ones only, so never more than
    `maxConcurrency` calls at once)."""
    return [i for i, lane in enumerate(lanes) if lane.state is LaneState.ACTIVE and i not in out and lane.due is not None and lane.due <= now]  # fmt: skip


def next_due(lanes: Sequence[Lane], out: Collection[int] = ()) -> dt.datetime | None:
    """When the next call of a lane is due (of the lanes not out, when `out` is given)."""
    return min((lane.due for i, lane in enumerate(lanes) if lane.state is LaneState.ACTIVE and i not in out and lane.due is not None), default=None)  # fmt: skip


def after_wave(
    par: Parallel,
    name: str,
    lanes: Sequence[Lane],
    results: Sequence[tuple[int, Outcome]],
    salt: int,
    now: dt.datetime,
    out: Collection[int] = (),
) -> tuple[tuple[Lane, ...], Verdict | None]:
    """The lanes once results are in, and the verdict when the parallel step has ended. A verdict
    reached while calls of other lanes are `out` waits for them: nothing new starts meanwhile (the
    lanes not out are cancelled), and the step ends once the last of them is back."""
    moved = list(lanes)
    for i, outcome in results:
        lane = moved[i]
        if lane.state is not LaneState.ACTIVE:
            continue
        branch = par.branches[lane.branch]
        step = branch[lane.at]
        if outcome.ok:
            last = lane.at == len(branch) - 1
            moved[i] = replace(lane, state=LaneState.DONE, due=None) if last else replace(lane, at=lane.at + 1, attempt=1, due=now)  # fmt: skip
            continue
        wait = retrypolicy.delay(step, lane.attempt, outcome, salt, lane_step(name, lane.branch, step.name))
        if wait is not None:
            moved[i] = replace(lane, attempt=lane.attempt + 1, due=now + wait[0])
        else:
            why = f"step {step.name} failed after {lane.attempt} attempt(s): {outcome.error or 'call failed'}"
            moved[i] = replace(lane, state=LaneState.FAILED, due=None, error=why)
    verdict = _verdict(par, name, moved)
    if verdict is not None:
        if any(moved[i].state is LaneState.ACTIVE for i in out):
            return tuple(lane if i in out else _cancel(lane) for i, lane in enumerate(moved)), None
        return tuple(_cancel(lane) for lane in moved), verdict
    free = par.limit - sum(1 for lane in moved if lane.state is LaneState.ACTIVE)
    for i, lane in enumerate(moved):
        if free > 0 and lane.state is LaneState.WAITING:
            moved[i], free = replace(lane, state=LaneState.ACTIVE, due=now), free - 1
    return tuple(moved), None


def _cancel(lane: Lane) -> Lane:
    if lane.state in (LaneState.WAITING, LaneState.ACTIVE):
        return replace(lane, state=LaneState.CANCELLED, due=None)
    return lane


def _verdict(par: Parallel, name: str, lanes: Sequence[Lane]) -> Verdict | None:
    states = [lane.state for lane in lanes]
    failed = [lane for lane in lanes if lane.state is LaneState.FAILED]
    if par.mode == "any":
        if LaneState.DONE in states:
            return Verdict(True)
        if len(failed) == len(lanes):
            first = failed[0]
            return Verdict(False, f"every branch of step {name} failed; branch {first.branch}: {first.error}", (first.branch, first.at))  # fmt: skip
        return None
    if failed:
        first = failed[0]
        return Verdict(False, f"branch {first.branch} of step {name} failed: {first.error}", (first.branch, first.at))  # fmt: skip
    if all(s is LaneState.DONE for s in states):
        return Verdict(True)
    return None
