"""Spec models: what users write in YAML (and the REST API sends), validated by pydantic.

`Task` and `TaskSet` are the two kinds. `json_schemas` gives the JSON Schemas committed under
schemas/. Called by the loading code, the engine (stored specs) and the API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from lambdaop.spec.calls import (
    Invoke,
    InvokeOrUrl,
    RetryFields,
    SpecModel,
    SuccessWhen,
    invoke_from,
    templated,
)
from lambdaop.spec.durations import Duration, Time, check_zone
from lambdaop.spec.flowcontrol import Concurrency, Rate

API_VERSION = "lambdaop/v1"


class Kind(StrEnum):
    """The two kinds of object: what `kind` means in specs, routes, the store and the code. (The
    API's `waitingFor.kind`, concurrency or rate, keeps the word its readers already know.)"""

    TASK = "Task"
    TASKSET = "TaskSet"


_KIND_NAMES = {"task": Kind.TASK, "tasks": Kind.TASK, "taskset": Kind.TASKSET, "tasksets": Kind.TASKSET}


def kind_named(text: str) -> Kind | None:
    """The kind a route or a command names: Task or TaskSet, or task(s), taskset(s) in any case."""
    return _KIND_NAMES.get(text.lower())


class Metadata(SpecModel):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$",
        description="unique per owner and kind",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


_CRON_FIELDS = 5


class Schedule(SpecModel):
    """A recurring schedule: `cron` (five fields, in `timezone`) or `every` (a fixed rate)."""

    cron: str | None = Field(
        default=None, description="minute hour day-of-month month day-of-week, e.g. 0 9 * * MON-FRI"
    )
    every: Duration | None = Field(
        default=None, description="a fixed rate, e.g. 15m (from `start`, or from when applied)"
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the cron fields")
    start: Time | None = Field(default=None, description="no run before this time")
    end: Time | None = Field(default=None, description="no run after this time; the object then ends")
    jitter: Duration | None = Field(default=None, description="spread each run over [0, jitter)")
    catchUp: Literal["none", "latest", "all"] = Field(
        default="latest", description="runs missed while the service was down: none, the latest one, or all"
    )
    overlap: Literal["skip", "wait"] = Field(
        default="skip",
        description="a run still going when the next is due: skip the next, or run it right after",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from cronsim import CronSim, CronSimError

        text = " ".join(value.split())
        if len(text.split(" ")) != _CRON_FIELDS:
            raise ValueError(f"expected five fields (minute hour day month weekday), got {value!r}")
        try:
            CronSim(text, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        except CronSimError as exc:
            raise ValueError(f"{exc} in {value!r}") from None
        return text

    @field_validator("every")
    @classmethod
    def _rate(cls, value: dt.timedelta | None) -> dt.timedelta | None:
        if value is not None and value < dt.timedelta(seconds=1):
            raise ValueError("every must be at least 1s")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give either `cron` or `every`")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("`end` must be after `start`")
        return self


class Notify(RetryFields):
    """A call made when a run ends failed: a JSON event POSTed to `invoke`."""

    invoke: InvokeOrUrl
    retries: int = Field(default=3, ge=0, le=1000)


NotifyOn = Literal["started", "succeeded", "failed"]
NOTIFY_ON: tuple[NotifyOn, ...] = ("started", "succeeded", "failed")


class Notification(Notify):
    """A JSON event POSTed to `invoke` when a run starts, succeeds or fails (`onFailure` is the
    failures-only form). A `started` one is delivered before the run's first call."""

    on: list[NotifyOn] = Field(
        min_length=1, description="the runs' events it hears of: started, succeeded, failed"
    )

    @field_validator("on")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each event once")
        return value


def _notify_urls(notify: list[Notification] | None) -> list[tuple[str, Invoke]]:
    return [(f"notify[{i}].invoke.", n.invoke) for i, n in enumerate(notify or ())]


def _plain_urls(calls: Sequence[tuple[str, Invoke]]) -> None:
    """Expressions fill in URLs only in a TaskSet's `steps` (and its fallback): refused elsewhere."""
    for where, call in calls:
        if call.url is not None and templated(call.url):
            raise ValueError(f"{where}url: an expression `${{{{ … }}}}` works only in a TaskSet's `steps` and its fallback; {call.url!r} is not a URL")  # fmt: skip


class TaskSpec(RetryFields):
    invoke: InvokeOrUrl
    at: Time | None = Field(default=None, description="when to call (ISO 8601 with an offset)")
    after: Duration | None = Field(default=None, description="when to call, relative to apply time")
    schedule: Schedule | None = Field(default=None, description="run on a calendar instead of once")
    suspended: bool = Field(default=False, description="a recurring object paused (no runs until resumed)")
    onFailure: Notify | None = None
    notify: list[Notification] | None = Field(default=None, min_length=1, max_length=10, description="calls told of each run's events (started, succeeded, failed), in this order")  # fmt: skip
    concurrency: Concurrency | None = Field(default=None, description="at most `limit` calls of `key` out at once (every attempt of this Task counts, with every other call naming the key); calls beyond wait")  # fmt: skip
    rate: Rate | None = Field(default=None, description="at most `limit` calls of `key` leave in any window of `per`; calls beyond wait")  # fmt: skip

    @model_validator(mode="after")
    def _one_start(self) -> TaskSpec:
        if self.at is not None and self.after is not None:
            raise ValueError("give either `at` or `after`, not both")
        if self.schedule is not None and (self.at is not None or self.after is not None):
            raise ValueError("a `schedule` runs on its own times: leave out `at` and `after`")
        _plain_urls([("invoke.", self.invoke)] + ([("onFailure.invoke.", self.onFailure.invoke)] if self.onFailure else []) + _notify_urls(self.notify))  # fmt: skip
        return self


class Step(Invoke, RetryFields):
    """A task of a TaskSet: an invoke, with its own retries (default none)."""

    def as_invoke(self) -> Invoke:
        return Invoke.model_validate(
            self.model_dump(by_alias=True, exclude={"retries", "retryDelay", "backoff", "jitter", "retryOn"})
        )


StepOrUrl = Annotated[Step, BeforeValidator(invoke_from)]


class ConditionCheck(RetryFields):
    invoke: InvokeOrUrl
    delay: Duration = Field(default=dt.timedelta(0), description="wait after a task before the check")
    retries: int = Field(default=0, ge=0, le=1000, description="further checks after a failed one")
    retryDelay: Duration = Field(default=dt.timedelta(seconds=10), description="between checks")
    afterLast: bool = Field(default=False, description="also check after the last task (with `tasks`; a step's own check always runs)")  # fmt: skip


FALLBACK_ON: tuple[Literal["check", "task"], ...] = ("check", "task")


class Fallback(RetryFields):
    invoke: InvokeOrUrl
    on: list[Literal["check", "task"]] = Field(
        default_factory=lambda: list(FALLBACK_ON),
        min_length=1,
        description="when it runs: the condition check gave up (check), a task (or step) failed (task)",
    )


# --------------------------------------------------------------------------- named steps

STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_STEPS = 100


class NamedStep(RetryFields):
    """What every named step has: a name, its retries and success test, and (mostly) a call."""

    name: str = Field(
        pattern=STEP_NAME, description="unique in the TaskSet; expressions read it as steps.NAME"
    )
    invoke: InvokeOrUrl | None = Field(default=None, description="the call; strings in its url, query, headers, body and payload may hold ${{ EXPR }}")  # fmt: skip
    successWhen: SuccessWhen | None = Field(default=None, description="what counts as success of the call (or give it in invoke)")  # fmt: skip

    @model_validator(mode="after")
    def _success_once(self) -> NamedStep:
        if self.successWhen is not None and self.invoke is not None and self.invoke.successWhen is not None:
            raise ValueError("give successWhen once: on the step or in its invoke")
        return self

    @property
    def call(self) -> Invoke:
        """The call the step makes, with the step's successWhen."""
        invoke = self.invoke
        wait = getattr(self, "waitForCallback", None)
        if invoke is None and wait is not None:
            invoke = wait.invoke
        if invoke is None:
            raise ValueError(f"step {self.name!r} makes no call of its own")
        if self.successWhen is not None:
            return invoke.model_copy(update={"successWhen": self.successWhen})
        return invoke


class BranchStep(NamedStep):
    """One named step of a parallel branch: a call with its own retries and success test."""

    name: str = Field(pattern=STEP_NAME, description="unique in its branch; later steps of the branch read it as steps.NAME")  # fmt: skip
    invoke: InvokeOrUrl = Field(description="the call; strings in its url, query, headers, body and payload may hold ${{ EXPR }}")  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _no_limits(cls, data: Any) -> Any:
        limited = [k for k in ("concurrency", "rate") if isinstance(data, dict) and k in data]
        if limited:
            raise ValueError(
                f"{' and '.join(limited)} (limits per key) cannot be set on a step of a parallel branch: "
                "the parallel step's maxConcurrency bounds its branches, or put the limit on a step outside it"
            )
        return data


MAX_BRANCHES = 40
MAX_BRANCH_STEPS = 20


class Parallel(SpecModel):
    """Branches of steps that run side by side, joined when they have ended."""

    branches: list[Annotated[list[BranchStep], Field(min_length=1, max_length=MAX_BRANCH_STEPS)]] = Field(
        min_length=1, max_length=MAX_BRANCHES, description="each branch: named steps in sequence"
    )
    maxConcurrency: int | None = Field(default=None, ge=1, le=MAX_BRANCHES, description="branches that run at once (default: all of them)")  # fmt: skip
    mode: Literal["all", "any"] = Field(default="all", description="all: every branch must succeed (one that fails fails the step, and the branches not started are cancelled); any: the first branch that succeeds ends the step")  # fmt: skip

    @property
    def limit(self) -> int:
        return min(self.maxConcurrency or len(self.branches), len(self.branches))


class WaitForCallback(SpecModel):
    """A call that hands its target a callback URL, then a wait until someone POSTs to it."""

    invoke: InvokeOrUrl = Field(description="the call; ${{ callback.url }} in its strings is the single-use signed URL to POST {status: success|failure, output} to")  # fmt: skip
    timeout: Duration = Field(description="how long to wait for the callback once the call succeeded (a failure: retried, then the fallback)")  # fmt: skip
    heartbeat: Duration | None = Field(default=None, description="each {status: heartbeat} POST moves the end of the wait to this long after it (default: the timeout)")  # fmt: skip

    @field_validator("timeout", "heartbeat")
    @classmethod
    def _at_least_a_second(cls, value: dt.timedelta | None) -> dt.timedelta | None:
        if value is not None and value < dt.timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value


_NOT_FOR_PARALLEL = ("retries", "retryDelay", "backoff", "jitter", "retryOn", "successWhen")


class StepSpec(NamedStep):
    """One named step of a TaskSet: a call (or parallel branches) with its own retries, success
    test and condition check."""

    parallel: Parallel | None = Field(default=None, description="instead of invoke: branches of steps run side by side; steps.NAME.output[i] is what branch i answered last")  # fmt: skip
    waitForCallback: WaitForCallback | None = Field(default=None, description="instead of invoke: a call handed ${{ callback.url }}, then a wait until it is POSTed to; steps.NAME.output is the callback's output")  # fmt: skip
    conditionCheck: ConditionCheck | None = Field(default=None, description="after the step succeeded: a check call (with its own delay and retries) that must succeed before the next step")  # fmt: skip
    concurrency: Concurrency | None = Field(default=None, description="at most `limit` calls of `key` out at once (each attempt of this step's call counts, with every other call naming the key); calls beyond wait")  # fmt: skip
    rate: Rate | None = Field(default=None, description="at most `limit` calls of `key` leave in any window of `per` (this step's call; not its conditionCheck); calls beyond wait")  # fmt: skip

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        if [self.invoke, self.parallel, self.waitForCallback].count(None) != 2:
            raise ValueError("give the step one of `invoke` (a call), `parallel` (branches) or `waitForCallback` (a call, then a wait)")  # fmt: skip
        fields = type(self).model_fields  # (a stored spec has the defaults written out)
        given = [
            f
            for f in _NOT_FOR_PARALLEL
            if f in self.model_fields_set and getattr(self, f) != fields[f].default
        ]
        if self.parallel is not None and given:
            raise ValueError(f"{', '.join(given)}: a parallel step has none of its own; give them to the steps of its branches")  # fmt: skip
        if self.parallel is not None and (self.concurrency is not None or self.rate is not None):
            raise ValueError("concurrency, rate: a parallel step makes no call of its own (its branches run at most `maxConcurrency` at once); limits go on steps that call")  # fmt: skip
        return self


class TaskSetSpec(SpecModel):
    tasks: list[StepOrUrl] | None = Field(default=None, min_length=1, max_length=1000, description="the seed's form: calls in sequence, gated by `conditionCheck`")  # fmt: skip
    steps: list[StepSpec] | None = Field(default=None, min_length=1, max_length=MAX_STEPS, description="named steps in sequence, each with its own retries and condition check; their strings may read earlier steps' outputs with ${{ EXPR }}")  # fmt: skip
    initialDelay: Duration | None = None
    at: Time | None = None
    conditionCheck: ConditionCheck | None = None
    fallback: Fallback | None = None
    schedule: Schedule | None = Field(default=None, description="run the set on a calendar instead of once")
    suspended: bool = False
    onFailure: Notify | None = None
    notify: list[Notification] | None = Field(default=None, min_length=1, max_length=10, description="calls told of each run's events (started, succeeded, failed), in this order")  # fmt: skip

    @model_validator(mode="after")
    def _one_start(self) -> TaskSetSpec:
        if (self.tasks is None) == (self.steps is None):
            raise ValueError("give either `tasks` (calls in sequence) or `steps` (named steps), one of them")
        if self.steps is not None and self.conditionCheck is not None:
            raise ValueError(
                "conditionCheck: with `steps`, give each step that needs one its own conditionCheck"
            )
        if self.at is not None and self.initialDelay is not None:
            raise ValueError("give either `at` or `initialDelay`, not both")
        if self.schedule is not None and (self.at is not None or self.initialDelay is not None):
            raise ValueError("a `schedule` runs on its own times: leave out `at` and `initialDelay`")
        plain: list[tuple[str, Invoke]] = [(f"tasks[{i}].", t) for i, t in enumerate(self.tasks or ())]
        plain += [(f"{k}.invoke.", p.invoke) for k, p in (("conditionCheck", self.conditionCheck), ("onFailure", self.onFailure)) if p is not None]  # fmt: skip
        if self.fallback is not None and self.steps is None:
            plain.append(("fallback.invoke.", self.fallback.invoke))
        _plain_urls(plain + _notify_urls(self.notify))
        return self

    def step_named(self, name: str) -> StepSpec:
        """The named step (raises ValueError when there is none)."""
        for step in self.steps or ():
            if step.name == name:
                return step
        raise ValueError(f"no step {name!r} in this TaskSet")


class Task(SpecModel):
    """A single call at a time, retried until it succeeds or its retries are used up."""

    apiVersion: Literal["lambdaop/v1"] = "lambdaop/v1"
    kind: Literal["Task"] = "Task"
    metadata: Metadata
    spec: TaskSpec
    status: dict[str, Any] | None = Field(
        default=None,
        exclude=True,
        description="what `lambdaop get -o yaml` writes beside the spec; ignored when applied",
    )


class TaskSet(SpecModel):
    """Calls in sequence (`tasks`, or named `steps`), gated by condition checks, with a fallback."""

    apiVersion: Literal["lambdaop/v1"] = "lambdaop/v1"
    kind: Literal["TaskSet"] = "TaskSet"
    metadata: Metadata
    spec: TaskSetSpec
    status: dict[str, Any] | None = Field(
        default=None,
        exclude=True,
        description="what `lambdaop get -o yaml` writes beside the spec; ignored when applied",
    )


KINDS: dict[str, type[Task] | type[TaskSet]] = {"Task": Task, "TaskSet": TaskSet}
AnySpec = Task | TaskSet


def targets(obj: AnySpec) -> list[tuple[str, Invoke]]:
    """Every call a spec makes, with the field that holds its URL (or its function, `lambda`)."""
    if isinstance(obj, Task):
        found = [("spec.invoke", obj.spec.invoke)]
    else:
        found = [(f"spec.tasks[{i}]", t) for i, t in enumerate(obj.spec.tasks or ())]
        for i, step in enumerate(obj.spec.steps or ()):
            if step.invoke is not None:
                found.append((f"spec.steps[{i}].invoke", step.invoke))
            if step.waitForCallback is not None:
                found.append((f"spec.steps[{i}].waitForCallback.invoke", step.waitForCallback.invoke))
            for b, branch in enumerate(step.parallel.branches if step.parallel else ()):
                found += [
                    (f"spec.steps[{i}].parallel.branches[{b}][{j}].invoke", s.invoke)
                    for j, s in enumerate(branch)
                ]
            if step.conditionCheck is not None:
                found.append((f"spec.steps[{i}].conditionCheck.invoke", step.conditionCheck.invoke))
        found += [(f"spec.{k}.invoke", p.invoke) for k, p in (("conditionCheck", obj.spec.conditionCheck), ("fallback", obj.spec.fallback)) if p is not None]  # fmt: skip
    found += [(f"spec.notify[{i}].invoke", n.invoke) for i, n in enumerate(obj.spec.notify or ())]
    return [(f"{where}.{'url' if i.lambda_ is None else 'lambda'}", i) for where, i in found]


def spec_json(obj: AnySpec) -> dict[str, Any]:
    """The spec part as stored: plain JSON, durations as strings, secrets as references."""
    return obj.spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def spec_hash(obj: AnySpec) -> str:
    blob = json.dumps(spec_json(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, as committed under schemas/."""
    out = {}
    for name, model in (("task", Task), ("taskset", TaskSet)):
        schema = model.model_json_schema(by_alias=True)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://lambdaop.dev/schemas/{name}.schema.json"
        out[f"{name}.schema.json"] = schema
    return out
