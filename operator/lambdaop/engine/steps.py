"""The steps of a run: which call each one makes, with what retry policy, and where a run begins.

A Task has one step, `task`. A TaskSet has `task:0 … task:N-1`, a condition
check after each task but the last (`check:I`, and after the last with
`afterLast`), and `fallback`; one with named `steps` has `step:NAME` for each,
`check:NAME` after a step with its own condition check, and `fallback`.
Notifications are steps too: `notify:EVENT:I` for the `notify:` entries (those
of `started` come before the run's first call) and `notify` for `onFailure`.
Pure: no I/O, no clock. Called by `machine`, `recurring` and `ondemand`, and
by the loop to know what to call.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdaop.engine import lanes
from lambdaop.engine.progress import PlanSpec
from lambdaop.spec import Invoke, Notify, RetryFields, TaskSpec


@dataclass(frozen=True)
class StepPlan:
    invoke: Invoke
    policy: RetryFields


def notices(spec: PlanSpec, event: str, notify: Notify | None = None) -> list[str]:
    """The notification steps an event of a run calls, in order (`onFailure` last)."""
    out = [f"notify:{event}:{i}" for i, n in enumerate(spec.notify or ()) if event in n.on]
    if event == "failed" and (spec.onFailure or notify) is not None:
        out.append("notify")
    return out


def is_notice(step: str) -> bool:
    """Whether a step is a notification (`notify`, or `notify:EVENT:I`)."""
    return step == "notify" or step.startswith("notify:")


def notice_event(step: str) -> str:
    """The event a notification step tells of."""
    return "failed" if step == "notify" else step.split(":")[1]


def first_step(spec: PlanSpec) -> str:
    """Where a run begins: its `started` notifications, else its first call."""
    started = notices(spec, "started")
    return started[0] if started else first_call(spec)


def first_call(spec: PlanSpec) -> str:
    if isinstance(spec, TaskSpec):
        return "task"
    return f"step:{spec.steps[0].name}" if spec.steps else "task:0"


def step_plan(spec: PlanSpec, step: str, notify: Notify | None = None) -> StepPlan:
    """The call a step makes and its retry policy."""
    if step == "notify":
        target = spec.onFailure or notify
        if target is None:
            raise ValueError("no failure notification configured")
        return StepPlan(target.invoke, target)
    if step.startswith("notify:"):
        entry = (spec.notify or [])[int(step.rpartition(":")[2])]
        return StepPlan(entry.invoke, entry)
    if isinstance(spec, TaskSpec):
        return StepPlan(spec.invoke, spec)
    name, _, index = step.partition(":")
    branch = lanes.parse_lane_step(step) if spec.steps is not None else None
    if branch is not None:
        inner = lanes.branch_step(spec, step)
        return StepPlan(inner.call, inner)
    if spec.steps is not None and name in ("step", "check"):
        named = spec.step_named(index)
        if name == "step":
            return StepPlan(named.call, named)
        if named.conditionCheck is not None:
            return StepPlan(named.conditionCheck.invoke, named.conditionCheck)
    if name == "task" and spec.tasks is not None:
        item = spec.tasks[int(index)]
        return StepPlan(item.as_invoke(), item)
    if name == "check" and spec.conditionCheck is not None:
        return StepPlan(spec.conditionCheck.invoke, spec.conditionCheck)
    if name == "fallback" and spec.fallback is not None:
        return StepPlan(spec.fallback.invoke, spec.fallback)
    raise ValueError(f"no step {step!r} in this spec")
