"""spec: what users write, and how it is read.

Owns the pydantic models of the two kinds (Task, TaskSet) and their parts,
durations and times as users write them, loading YAML/JSON text with line
numbers, and the input limits checked before anything is parsed.

May import: lambdaop.core only (and pydantic, ruamel.yaml, cronsim).
"""

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
from lambdaop.spec.loading import Document, load_documents, load_one, validate_document, validation_problems
from lambdaop.spec.models import (
    API_VERSION,
    FALLBACK_ON,
    KINDS,
    METHODS,
    RETRY_ON,
    AnySpec,
    Backoff,
    ConditionCheck,
    Fallback,
    FromEnv,
    HeaderValue,
    Invoke,
    InvokeOrUrl,
    JsonTest,
    Kind,
    Metadata,
    Notify,
    RetryFields,
    RetryOn,
    Schedule,
    Sign,
    Step,
    SuccessWhen,
    Task,
    TaskSet,
    TaskSetSpec,
    TaskSpec,
    check_url,
    function_url_region,
    json_schemas,
    kind_named,
    spec_hash,
    spec_json,
    targets,
)

__all__ = [
    "API_VERSION", "EARLIEST", "FALLBACK_ON", "KINDS", "LATEST", "MAX_DURATION", "METHODS", "RETRY_ON",
    "AnySpec", "Backoff", "ConditionCheck", "Document", "Duration", "Fallback", "FromEnv", "HeaderValue",
    "Invoke", "InvokeOrUrl", "JsonTest", "Kind", "Metadata", "Notify", "RetryFields", "RetryOn", "Schedule", "Sign",
    "Step", "SuccessWhen", "Task", "TaskSet", "TaskSetSpec", "TaskSpec", "Time", "check_url", "check_zone",
    "format_duration", "function_url_region", "json_schemas", "kind_named", "load_documents", "load_one", "parse_duration", "parse_time",
    "spec_hash", "spec_json", "targets", "validate_document", "validation_problems",
]  # fmt: skip
