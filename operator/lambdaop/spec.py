"""Spec models: what users write in YAML (and the REST API sends), validated by pydantic.

`Task` and `TaskSet` are the two kinds. `load_documents` parses YAML (or JSON)
text into validated specs, keeping line numbers so every error names the file,
line and field. `json_schemas` gives the JSON Schemas committed under schemas/.
Called by service (apply), cli (validate, schema) and reconciler (stored specs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import Problem, SpecInvalid
from .limits import Limit, check_yaml, printable, unstorable

API_VERSION = "lambdaop/v1"
MAX_DURATION = dt.timedelta(days=3650)  # ten years: anything longer is a typo, and overflows the calendar
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|d|h|m|s))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> dt.timedelta:
    """`30s`, `5m`, `1h30m`, `250ms`, `2d`, ISO 8601 `PT30S`; `0` alone; never negative."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h30m or PT30S")
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a duration")
        if value != 0:
            raise ValueError(
                f"a bare number ({value}) has no unit: write e.g. {value}s, {value}ms or {value}m"
            )
        seconds = 0.0
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
        if text == "0":
            seconds = 0.0
        elif _DURATION.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            iso = _ISO.match(text.upper())
            if not iso or text.upper() in ("P", "PT"):
                raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or PT30S, got {value!r}")
            seconds = sum(
                float(iso.group(k) or 0) * m for k, m in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
            )
    else:
        raise ValueError("expected a duration such as 30s, 5m, 1h30m or PT30S")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    if not seconds <= MAX_DURATION.total_seconds():  # also NaN
        raise ValueError(f"must be at most 3650d (ten years), got {value!r}")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    ms = round(value.total_seconds() * 1000)
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^((\d+(\.\d+)?)(ms|d|h|m|s))+$|^0$|^P",
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or ISO 8601 (PT30S).",
            "examples": ["30s", "5m", "1h30m", "PT30S"],
        }
    ),
]


def parse_time(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"expected an ISO 8601 time with an offset, e.g. 2026-11-28T09:00:00Z, got {value!r}"
            ) from exc
        value = parsed
    elif not isinstance(value, dt.datetime):
        raise ValueError(
            f"expected an ISO 8601 time with an offset, e.g. 2026-11-28T09:00:00Z, got {value!r}"
        )
    if value.tzinfo is None:
        raise ValueError(
            f"time {value.isoformat()} has no offset: add Z (UTC) or +HH:MM, "
            "lambdaop never guesses a local time zone"
        )
    try:
        in_range = EARLIEST <= value.astimezone(dt.UTC) < LATEST
    except (OverflowError, ValueError):
        in_range = False
    if not in_range:
        raise ValueError(f"time {value.isoformat()} must be between 1970-01-01 and 2999-12-31 (UTC)")
    return value


Time = Annotated[
    AwareDatetime,
    BeforeValidator(parse_time),
    PlainSerializer(lambda v: v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"), return_type=str),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FromEnv(_Model):
    """A secret by reference: the value is read from this environment variable at call time."""

    fromEnv: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


HeaderValue = str | FromEnv


class Sign(_Model):
    """Sign each call with the Standard Webhooks headers (webhook-id, -timestamp, -signature)."""

    secretFromEnv: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the secret (whsec_<base64>, or any text)",
    )


class JsonTest(_Model):
    """A test on one field of the JSON response body, by dotted path."""

    path: str = Field(min_length=1, description="dotted path into the JSON body, e.g. status or data.0.ok")
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> JsonTest:
        if self.in_ is None and "equals" not in self.model_fields_set:
            raise ValueError("give `equals` or `in`")
        return self


class SuccessWhen(_Model):
    """What counts as success. Default: any 2xx status."""

    status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, min_length=1, description="accepted status codes (replaces the 2xx default)"
    )
    json_: JsonTest | None = Field(default=None, alias="json")


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")


class Invoke(_Model):
    """One HTTP call."""

    url: str = Field(description="http(s) URL of the Lambda function URL or any endpoint")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    query: dict[str, HeaderValue] = Field(
        default_factory=dict, description="query string (added to the URL's)"
    )
    body: Any = Field(
        default=None, description="JSON (a string is sent as is); {fromEnv: NAME} anywhere in it is a secret"
    )
    timeout: Duration = Field(default=dt.timedelta(seconds=30), description="one deadline for the whole call")
    successWhen: SuccessWhen | None = None
    followRedirects: bool = Field(default=False, description="follow up to 5 redirects, each checked again")
    sign: Sign | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("headers")
    @classmethod
    def _http_headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, header in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"header name {printable(name)!r} is not a valid HTTP header name")
            if isinstance(header, str) and any(c in header for c in "\r\n\x00"):
                raise ValueError(f"header {name}: the value must not hold CR, LF or NUL")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: dt.timedelta) -> dt.timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("timeout must be greater than 0")
        if value.total_seconds() > 900:
            raise ValueError("timeout must be at most 15m")
        return value


def check_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.strip()


def _invoke_from(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


InvokeOrUrl = Annotated[Invoke, BeforeValidator(_invoke_from)]


class Metadata(_Model):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$",
        description="unique per owner and kind",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Backoff(_Model):
    """Each retry waits `factor` times longer than the one before, up to `max`."""

    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    max: Duration | None = Field(
        default=None, description="the longest wait (default: none; 15m for Retry-After)"
    )


RetryOn = Literal["5xx", "4xx", "429", "timeout", "connection", "body"]
RETRY_ON: tuple[RetryOn, ...] = ("5xx", "4xx", "429", "timeout", "connection", "body")


class RetryFields(_Model):
    """When a failed call is tried again, and after how long."""

    retries: int = Field(default=0, ge=0, le=1000, description="further attempts after a failure")
    retryDelay: Duration = Field(
        default=dt.timedelta(seconds=10), description="the first wait before a retry"
    )
    backoff: Backoff | None = None
    jitter: Literal["none", "full"] = Field(
        default="none", description="full: each wait is random in [0, wait)"
    )
    retryOn: list[RetryOn] | None = Field(
        default=None,
        min_length=1,
        description="which failures are retried: 5xx, 4xx, 429, timeout, connection, body (default: all)",
    )

    @field_validator("retryOn", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return (
            [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            if isinstance(value, list)
            else value
        )


_CRON_FIELDS = 5


def check_zone(name: str) -> str:
    import zoneinfo

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}", name or "") or len(name) > 64:
        raise ValueError(f"unknown time zone {name[:80]!r}; use an IANA name such as Europe/Berlin")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None
    return name


class Schedule(_Model):
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


class TaskSpec(RetryFields):
    invoke: InvokeOrUrl
    at: Time | None = Field(default=None, description="when to call (ISO 8601 with an offset)")
    after: Duration | None = Field(default=None, description="when to call, relative to apply time")
    schedule: Schedule | None = Field(default=None, description="run on a calendar instead of once")
    suspended: bool = Field(default=False, description="a recurring object paused (no runs until resumed)")
    onFailure: Notify | None = None

    @model_validator(mode="after")
    def _one_start(self) -> TaskSpec:
        if self.at is not None and self.after is not None:
            raise ValueError("give either `at` or `after`, not both")
        if self.schedule is not None and (self.at is not None or self.after is not None):
            raise ValueError("a `schedule` runs on its own times: leave out `at` and `after`")
        return self


class Step(Invoke, RetryFields):
    """A task of a TaskSet: an invoke, with its own retries (default none)."""

    def as_invoke(self) -> Invoke:
        return Invoke.model_validate(
            self.model_dump(by_alias=True, exclude={"retries", "retryDelay", "backoff", "jitter", "retryOn"})
        )


StepOrUrl = Annotated[Step, BeforeValidator(_invoke_from)]


class ConditionCheck(RetryFields):
    invoke: InvokeOrUrl
    delay: Duration = Field(default=dt.timedelta(0), description="wait after a task before the check")
    retries: int = Field(default=0, ge=0, le=1000, description="further checks after a failed one")
    retryDelay: Duration = Field(default=dt.timedelta(seconds=10), description="between checks")
    afterLast: bool = Field(default=False, description="also check after the last task")


FALLBACK_ON: tuple[Literal["check", "task"], ...] = ("check", "task")


class Fallback(RetryFields):
    invoke: InvokeOrUrl
    on: list[Literal["check", "task"]] = Field(
        default_factory=lambda: list(FALLBACK_ON),
        min_length=1,
        description="when it runs: the condition check gave up (check), a task failed (task)",
    )


class TaskSetSpec(_Model):
    tasks: list[StepOrUrl] = Field(min_length=1, max_length=1000)
    initialDelay: Duration | None = None
    at: Time | None = None
    conditionCheck: ConditionCheck | None = None
    fallback: Fallback | None = None
    schedule: Schedule | None = Field(default=None, description="run the set on a calendar instead of once")
    suspended: bool = False
    onFailure: Notify | None = None

    @model_validator(mode="after")
    def _one_start(self) -> TaskSetSpec:
        if self.at is not None and self.initialDelay is not None:
            raise ValueError("give either `at` or `initialDelay`, not both")
        if self.schedule is not None and (self.at is not None or self.initialDelay is not None):
            raise ValueError("a `schedule` runs on its own times: leave out `at` and `initialDelay`")
        return self


class Task(_Model):
    """A single call at a time, retried until it succeeds or its retries are used up."""

    apiVersion: Literal["lambdaop/v1"] = "lambdaop/v1"
    kind: Literal["Task"] = "Task"
    metadata: Metadata
    spec: TaskSpec


class TaskSet(_Model):
    """Calls in sequence, gated by a condition check, with a fallback."""

    apiVersion: Literal["lambdaop/v1"] = "lambdaop/v1"
    kind: Literal["TaskSet"] = "TaskSet"
    metadata: Metadata
    spec: TaskSetSpec


KINDS: dict[str, type[Task] | type[TaskSet]] = {"Task": Task, "TaskSet": TaskSet}
AnySpec = Task | TaskSet


def targets(obj: AnySpec) -> list[tuple[str, Invoke]]:
    """Every call a spec makes, with the field that holds its URL."""
    if isinstance(obj, Task):
        return [("spec.invoke.url", obj.spec.invoke)]
    out: list[tuple[str, Invoke]] = [(f"spec.tasks[{i}].url", t) for i, t in enumerate(obj.spec.tasks)]
    if obj.spec.conditionCheck is not None:
        out.append(("spec.conditionCheck.invoke.url", obj.spec.conditionCheck.invoke))
    if obj.spec.fallback is not None:
        out.append(("spec.fallback.invoke.url", obj.spec.fallback.invoke))
    return out


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


# --------------------------------------------------------------------------- loading


@dataclass
class Document:
    """One document of a spec file: the validated spec or the problems found in it."""

    index: int  # 0-based position in the file
    line: int  # 1-based line where the document starts
    spec: AnySpec | None
    problems: list[Problem]
    kind: str | None = None
    name: str | None = None


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    # keep timestamps as text: pydantic checks offsets and says clearly what is wrong
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
    )
    return yaml


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _locate(node: Any, loc: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest part of `loc` present in the YAML tree."""
    line = col = None
    lc = getattr(node, "lc", None)
    if lc is not None:
        line, col = lc.line + 1, lc.col + 1
    for key in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and key in node:
            if lc is not None:
                try:
                    kline, kcol = lc.key(key)
                    line, col = kline + 1, kcol + 1
                except (KeyError, TypeError):
                    pass
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            if lc is not None:
                try:
                    iline, icol = lc.item(key)
                    line, col = iline + 1, icol + 1
                except (KeyError, TypeError, IndexError):
                    pass
            node = node[key]
        else:
            break
    return line, col


def _field_path(loc: tuple[Any, ...]) -> str:
    """`spec.tasks[1].url` from pydantic's location (union and validator names left out)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not str(item).startswith(("function-", "str", "FromEnv", "json-or-python")):
            parts.append(("." if parts else "") + printable(item))
    return "".join(parts)


def _friendly(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field (not part of the schema)"
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error" and err.get("loc") == ("kind",):
        return f"{msg}; kind must be Task or TaskSet"
    return msg


def validation_problems(
    exc: ValidationError, node: Any = None, file: str | None = None, document: int | None = None
) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(p for p in loc if p not in ("str", "FromEnv", "Step", "Invoke"))
        line, col = _locate(node, loc) if node is not None else (None, None)
        field = _field_path(loc) or None
        message = _friendly(err)
        key = (field, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(message, field=field, file=file, line=line, column=col, document=document))
    return problems


def validate_document(
    data: Any, file: str | None = None, document: int | None = None, node: Any = None
) -> AnySpec:
    """Validate one parsed document (a mapping). Raises SpecInvalid with located problems."""
    node = data if node is None else node
    if not isinstance(data, dict):
        line, col = _locate(node, ())
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    "a spec document must be a mapping with apiVersion, kind, metadata and spec",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    problems = []
    for path, message in unstorable(data):
        line, col = _locate(node, path)
        field = _field_path(path) or None
        problems.append(Problem(message, field=field, file=file, line=line, column=col, document=document))
    if problems:
        raise SpecInvalid("invalid spec", problems)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        line, col = _locate(node, ("kind",))
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    f"kind must be Task or TaskSet, got {kind!r}",
                    field="kind",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    if data.get("apiVersion", API_VERSION) != API_VERSION:
        line, col = _locate(node, ("apiVersion",))
        raise SpecInvalid(
            "invalid spec",
            [
                Problem(
                    f"apiVersion must be {API_VERSION}",
                    field="apiVersion",
                    file=file,
                    line=line,
                    column=col,
                    document=document,
                )
            ],
        )
    try:
        return KINDS[kind].model_validate(_plain(data))
    except ValidationError as exc:
        raise SpecInvalid("invalid spec", validation_problems(exc, node, file, document)) from None


def _fast_yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)  # the C parser (ruamel.yaml.clib) when installed
    yaml.allow_duplicate_keys = False
    yaml.constructor.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
    )
    return yaml


_MARKER = re.compile(r"^---(\s|$)")


def _document_lines(text: str, count: int) -> list[int] | None:
    """1-based start line of each document, from the `---` markers (None when unsure)."""
    markers: list[int] = []
    first_content: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if _MARKER.match(line):
            markers.append(
                number if line[3:].strip() and not line[3:].strip().startswith("#") else number + 1
            )
        elif first_content is None and line.strip() and not line.lstrip().startswith(("#", "%")):
            first_content = number
    starts = (
        markers
        if markers and (first_content is None or first_content > markers[0] - 1)
        else [first_content or 1, *markers]
    )
    return starts[:count] if len(starts) >= count else None


def load_documents(text: str, file: str | None = None) -> list[Document]:
    """Parse YAML or JSON text holding one or many documents.

    A syntax error makes the whole text one failed document (nothing from a
    broken file is applied); otherwise each document is validated on its own.
    A text past the limits (size, nesting, alias expansion) is refused before it
    is composed. The fast path parses with the C parser; any error re-reads the
    text with the round-trip parser, which knows every line and column.
    """
    try:
        check_yaml(text)
    except Limit as exc:
        return [Document(0, exc.line or 1, None, [exc.problem(file)])]
    try:
        parsed = list(_fast_yaml().load_all(text))
    except (YAMLError, ValueError, TypeError):
        return _load_located(text, file)
    if len(parsed) == 1 and isinstance(parsed[0], list) and text.lstrip().startswith("["):
        return _load_located(text, file)  # a JSON list of documents: rare, take the careful path
    lines = _document_lines(text, len(parsed))
    if lines is None:
        return _load_located(text, file)
    out = []
    for index, doc in enumerate(parsed):
        if doc is None:
            continue
        try:
            spec = validate_document(doc, file=file, document=index)
        except SpecInvalid:
            return _load_located(text, file)
        out.append(Document(index, lines[index], spec, [], spec.kind, spec.metadata.name))
    return out


def _load_located(text: str, file: str | None) -> list[Document]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        # a JSON list of documents (YAML flow style parses it too, with lines)
        try:
            docs = list(_yaml().load_all(text))
        except (YAMLError, ValueError, TypeError) as exc:
            return [_syntax_failure(exc, file)]
        items = docs[0] if docs and isinstance(docs[0], list) else []
        parsed = list(enumerate(items))
    else:
        try:
            parsed = list(enumerate(_yaml().load_all(text)))
        except (YAMLError, ValueError, TypeError) as exc:
            return [_syntax_failure(exc, file)]
    out = []
    for index, doc in parsed:
        if doc is None:
            continue
        lc = getattr(doc, "lc", None)
        line = lc.line + 1 if lc is not None else 1
        kind = doc.get("kind") if isinstance(doc, dict) else None
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        try:
            spec = validate_document(doc, file=file, document=index)
            out.append(Document(index, line, spec, [], spec.kind, spec.metadata.name))
        except SpecInvalid as exc:
            out.append(Document(index, line, None, exc.problems, _s(kind), _s(name)))
    return out


def _s(value: Any) -> str | None:
    return str(value) if isinstance(value, str) else None


def _syntax_failure(exc: Exception, file: str | None) -> Document:
    line = col = None
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, MarkedYAMLError) and mark is not None:
        line, col = mark.line + 1, mark.column + 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return Document(0, line or 1, None, [Problem(message, file=file, line=line, column=col)])


def load_one(text: str, file: str | None = None) -> list[AnySpec]:
    """All documents of a text, or SpecInvalid listing every problem in it."""
    docs = load_documents(text, file)
    problems = [p for d in docs for p in d.problems]
    if problems:
        raise SpecInvalid(f"{file or 'input'}: invalid spec", problems)
    return [d.spec for d in docs if d.spec is not None]
