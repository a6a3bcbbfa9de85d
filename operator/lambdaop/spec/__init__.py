"""spec: what users write, and how it is read.

Owns the pydantic models of the two kinds (Task, TaskSet) and their parts (the
calls they make in `calls`), durations and times as users write them, the
`${{ EXPR }}` expressions of a TaskSet's named steps and their checks
(`expressions`), loading YAML/JSON text with line numbers, and the input
limits checked before anything is parsed.

May import: lambdaop.core only (and pydantic, ruamel.yaml, cronsim, jmespath).
"""

from lambdaop.spec.calls import (
    METHODS,
    RETRY_ON,
    Backoff,
    FromEnv,
    HeaderValue,
    Invoke,
    InvokeOrUrl,
    JsonTest,
    RetryFields,
    RetryOn,
    Sign,
    SuccessWhen,
    check_url,
    function_url_region,
    templated,
)
from lambdaop.spec.durations import (
    EARLIEST,
    LATEST,
    MAX_DURATION,
    Duration,
    Time,
    check_zone,
    format_duration,
    parse_duration,
    parse_time,
)
from lambdaop.spec.flowcontrol import MAX_LIMIT, Concurrency, Rate
from lambdaop.spec.loading import Document, load_documents, load_one, validate_document, validation_problems
from lambdaop.spec.models import (
    API_VERSION,
    FALLBACK_ON,
    KINDS,
    MAX_STEPS,
    NOTIFY_ON,
    AnySpec,
    BranchStep,
    ConditionCheck,
    Fallback,
    Kind,
    Metadata,
    Notification,
    Notify,
    Parallel,
    Schedule,
    Step,
    StepSpec,
    Task,
    TaskSet,
    TaskSetSpec,
    TaskSpec,
    WaitForCallback,
    json_schemas,
    kind_named,
    spec_hash,
    spec_json,
    targets,
)

__all__ = [
    "API_VERSION", "EARLIEST", "FALLBACK_ON", "KINDS", "LATEST", "MAX_DURATION", "MAX_STEPS", "METHODS", "NOTIFY_ON", "RETRY_ON",
    "MAX_LIMIT", "AnySpec", "Backoff", "Concurrency", "ConditionCheck", "Document", "Duration", "Fallback", "FromEnv", "HeaderValue",
    "Invoke", "InvokeOrUrl", "JsonTest", "Kind", "Metadata", "Notification", "Notify", "Rate", "RetryFields", "RetryOn", "Schedule", "Sign",
    "BranchStep", "Parallel", "Step", "StepSpec", "SuccessWhen", "Task", "TaskSet", "TaskSetSpec", "TaskSpec", "Time", "WaitForCallback", "check_url", "check_zone",
    "format_duration", "function_url_region", "json_schemas", "kind_named", "load_documents", "load_one", "parse_duration", "parse_time",
    "spec_hash", "spec_json", "targets", "templated", "validate_document", "validation_problems",
]  # fmt: skip
