"""The calls a spec makes, as users write them: `Invoke` (a URL or a Lambda function) and its parts,
what counts as success (`SuccessWhen`), secrets by reference (`FromEnv`, `Sign`), and the retry
fields every call carries (`RetryFields`). The kinds that use them are in `models`. Called by
models, the engine and the invoker (through the package).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo

from lambdaop.spec.durations import Duration
from lambdaop.spec.limits import printable


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FromEnv(SpecModel):
    """A secret by reference: the value is read from this environment variable at call time."""

    fromEnv: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


HeaderValue = str | FromEnv


class Sign(SpecModel):
    """Sign each call with the Standard Webhooks headers (webhook-id, -timestamp, -signature)."""

    secretFromEnv: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the secret (whsec_<base64>, or any text)",
    )


class JsonTest(SpecModel):
    """A test on one field of the JSON response body, by dotted path."""

    path: str = Field(min_length=1, description="dotted path into the JSON body, e.g. status or data.0.ok")
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> JsonTest:
        if self.in_ is None and "equals" not in self.model_fields_set:
            raise ValueError("give `equals` or `in`")
        return self


class SuccessWhen(SpecModel):
    """What counts as success. Default: any 2xx status."""

    status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, min_length=1, description="accepted status codes (replaces the 2xx default)"
    )
    json_: JsonTest | None = Field(default=None, alias="json")


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})
MASK = "***"  # what lambdaop shows in place of a secret header's value or a URL's password


# A Lambda function as the Invoke API names it: my-fn, 123456789012:function:my-fn or
# arn:aws:lambda:REGION:ACCOUNT:function:my-fn, each with an optional :QUALIFIER (version or alias).
_FUNCTION = re.compile(
    r"^(?:arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?=\d{12}:function:))?(?:\d{12}:function:)?"
    r"(?P<name>[A-Za-z0-9_.-]{1,64})(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[A-Za-z0-9_-]{1,128}))?$"
)
_FUNCTION_URL = re.compile(r"^[a-z0-9]+\.lambda-url\.(?P<region>[a-z0-9-]+)\.on\.aws$")
InvocationType = Literal["RequestResponse", "Event", "DryRun"]
_NOT_FOR_LAMBDA: dict[str, Any] = {"method": "GET", "headers": {}, "query": {}, "body": None, "followRedirects": False, "sign": None, "auth": None}  # fmt: skip
_ONLY_LAMBDA = {"qualifier": None, "payload": None, "invocationType": None}


class Invoke(SpecModel):
    """One call: an HTTP request to `url`, or a Lambda function invoked by name or ARN (`lambda`)."""

    url: str | None = Field(default=None, description="http(s) URL of a Lambda function URL or any endpoint")
    lambda_: str | None = Field(default=None, alias="lambda", description="a Lambda function, called through the Invoke API: arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], or a name")  # fmt: skip
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
    auth: Literal["aws_iam"] | None = Field(default=None, description="aws_iam: sign the call with SigV4 (a Function URL whose AuthType is AWS_IAM)")  # fmt: skip
    qualifier: str | None = Field(default=None, pattern=r"^(\$LATEST(\.PUBLISHED)?|[A-Za-z0-9_-]{1,128})$", description="lambda: a version or alias")  # fmt: skip
    payload: Any = Field(default=None, description="lambda: the event, as JSON (default {}); {fromEnv: NAME} anywhere in it is a secret")  # fmt: skip
    invocationType: InvocationType | None = Field(default=None, description="lambda: RequestResponse (the default: wait for the result), Event (queue it) or DryRun (check access)")  # fmt: skip
    region: str | None = Field(default=None, pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$", max_length=32, description="AWS region (default: the ARN's or the Function URL's, else AWS_DEFAULT_REGION)")  # fmt: skip
    roleArn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$", description="an IAM role to assume for the call (with the credentials lambdaop finds)")  # fmt: skip
    externalId: str | FromEnv | None = Field(default=None, description="roleArn: the ExternalId its trust policy asks for")  # fmt: skip
    sessionName: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_+=,.@-]{2,64}$", description="roleArn: the role session's name (default lambdaop)")  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _arn_in_url(cls, data: Any) -> Any:
        """`url: arn:aws:lambda:…` (a URL field given an ARN) is the `lambda` form."""
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and url.strip().startswith("arn:") and not {"lambda", "lambda_"} & set(data):
            return {k: v for k, v in data.items() if k != "url"} | {"lambda": url.strip()}
        return data

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("lambda_")
    @classmethod
    def _function(cls, value: str | None) -> str | None:
        if value is not None and not _FUNCTION.match(value.strip()):
            raise ValueError(f"expected a Lambda function name or ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]), got {printable(value)[:300]!r}")  # fmt: skip
        return None if value is None else value.strip()

    @field_validator(*_NOT_FOR_LAMBDA, *_ONLY_LAMBDA, "region", "roleArn", "externalId", "sessionName")
    @classmethod
    def _belongs(cls, value: Any, info: ValidationInfo) -> Any:
        """A field of the other kind of call is refused where it is written."""
        name, data = info.field_name or "", info.data
        is_url = "lambda_" in data and data["lambda_"] is None
        if name in _NOT_FOR_LAMBDA and data.get("lambda_") is not None and value != _NOT_FOR_LAMBDA[name]:
            raise ValueError(f"`{name}` is for URL calls; a Lambda call (`lambda`) sends `payload`")
        if name in _ONLY_LAMBDA and is_url and value != _ONLY_LAMBDA[name]:
            raise ValueError(f"`{name}` is for Lambda calls (`lambda`), not `url`")
        if name in ("region", "roleArn") and value is not None and is_url and data.get("auth") is None:
            raise ValueError(f"`{name}` is for Lambda calls (`lambda`) and `auth: aws_iam` URLs")
        if name in ("externalId", "sessionName") and value is not None and data.get("roleArn") is None:
            raise ValueError(f"`{name}` goes with `roleArn`")
        return value

    @field_validator("headers")
    @classmethod
    def _http_headers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, header in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"header name {printable(name)!r} is not a valid HTTP header name")
            if isinstance(header, str) and any(c in header for c in "\r\n\x00"):
                raise ValueError(f"header {name}: the value must not hold CR, LF or NUL")
            if header == MASK and name.lower() in SECRET_HEADERS:
                raise ValueError(f"header {name}: {MASK} is what lambdaop shows in place of a secret; put the value back, or {{fromEnv: NAME}}")  # fmt: skip
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: dt.timedelta) -> dt.timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("timeout must be greater than 0")
        if value.total_seconds() > 900:
            raise ValueError("timeout must be at most 15m")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Invoke:
        if (self.url is None) == (self.lambda_ is None):
            raise ValueError("give `url` (an http(s) URL) or `lambda` (a function name or ARN), one of them")
        if self.lambda_ is not None:
            _, inner, arn_region = self.function()
            if self.qualifier is not None and inner not in (None, self.qualifier):
                raise ValueError(f"qualifier {self.qualifier!r} differs from the one in the ARN ({inner!r})")
            if self.region is not None and arn_region not in (None, self.region):
                raise ValueError(f"region {self.region!r} differs from the ARN's ({arn_region!r})")
            if self.invocation != "RequestResponse" and self.successWhen and self.successWhen.json_:
                raise ValueError(f"successWhen.json: an {self.invocationType} call returns no payload to test")  # fmt: skip
        elif self.auth == "aws_iam":
            if self.region is None and function_url_region(self.url or "") is None:
                raise ValueError(f"auth: aws_iam needs `region`: {urlsplit(self.url or '').hostname} is not a Function URL host (ID.lambda-url.REGION.on.aws)")  # fmt: skip
            if self.followRedirects:
                raise ValueError("auth: aws_iam calls do not follow redirects (each hop needs its own signature)")  # fmt: skip
            if {h.lower() for h in self.headers} & {"authorization", "x-amz-date", "x-amz-security-token"}:
                raise ValueError("headers: auth: aws_iam sets Authorization, X-Amz-Date and X-Amz-Security-Token")  # fmt: skip
        return self

    @property
    def aws(self) -> bool:
        """Whether the call is signed with AWS credentials (a Lambda call, or an AWS_IAM Function URL)."""
        return self.lambda_ is not None or self.auth == "aws_iam"

    @property
    def invocation(self) -> InvocationType:
        """A Lambda call's invocation type: `invocationType`, RequestResponse when not given."""
        return self.invocationType or "RequestResponse"

    @property
    def target(self) -> str:
        """What is called: the URL, or the function with its qualifier."""
        if self.lambda_ is None:
            return self.url or ""
        name, qualifier, _ = self.function()
        return name if qualifier is None else f"{name}:{qualifier}"

    def function(self) -> tuple[str, str | None, str | None]:
        """A Lambda call's function without a qualifier, its qualifier (the ARN's or `qualifier`), the ARN's region."""  # fmt: skip
        found = _FUNCTION.match(self.lambda_ or "")
        if found is None:
            raise ValueError("not a Lambda call")
        name = found.string[: found.start("qualifier") - 1] if found["qualifier"] else found.string
        return name, found["qualifier"] or self.qualifier, found["region"]


def function_url_region(url: str) -> str | None:
    """The region in a Function URL's host (ID.lambda-url.REGION.on.aws), or None for another host."""
    found = _FUNCTION_URL.match((urlsplit(url).hostname or "").lower())
    return found["region"] if found else None


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def templated(text: str) -> bool:
    """Whether a string holds an expression, `${{ EXPR }}` (a TaskSet's steps read earlier steps' outputs)."""
    return "${{" in text


def check_url(value: str) -> str:
    """An http(s) URL. One with an expression is checked again once the expression is filled in
    (`spec.expressions` refuses it outside a TaskSet's steps)."""
    if value.strip().startswith("${{"):
        return value.strip()
    parts = urlsplit(EXPRESSION.sub("x", value.strip()))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL (or a Lambda function ARN), got {value!r}")
    if parts.password == MASK:
        raise ValueError(
            f"the URL's password is {MASK}, what lambdaop shows in place of it; put the password back"
        )
    return value.strip()


def invoke_from(value: Any) -> Any:
    """The short forms: `invoke: https://…` and `invoke: arn:aws:lambda:…`."""
    if isinstance(value, str):
        return {"lambda": value.strip()} if value.strip().startswith("arn:") else {"url": value}
    return value


InvokeOrUrl = Annotated[Invoke, BeforeValidator(invoke_from)]


class Backoff(SpecModel):
    """Each retry waits `factor` times longer than the one before, up to `max`."""

    factor: float = Field(default=2.0, ge=1.0, le=10.0)
    max: Duration | None = Field(
        default=None, description="the longest wait (default: none; 15m for Retry-After)"
    )


RetryOn = Literal["5xx", "4xx", "429", "timeout", "connection", "body", "function"]
RETRY_ON: tuple[RetryOn, ...] = ("5xx", "4xx", "429", "timeout", "connection", "body", "function")


class RetryFields(SpecModel):
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
        description="which failures are retried: 5xx, 4xx, 429, timeout, connection, body, function (default: all)",
    )

    @field_validator("retryOn", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return (
            [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            if isinstance(value, list)
            else value
        )
