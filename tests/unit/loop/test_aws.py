"""The AWS part of the invoker on its own: botocore reads the env mapping, endpoints, the Invoke request,
SigV4 (checked against an independent implementation of the algorithm), and what Lambda's answers mean.

No network: endpoint resolution and the credential chain here are local (files, the mapping; instance
metadata is switched off in every mapping).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from lambdaop.engine.outcomes import Failure
from lambdaop.loop.aws import (  # fmt: skip
    Aws,
    AwsFailed,
    aws_error,
    canonical_url,
    credential_chain,
    failure_of,
    host_header,
    session_for,
    signed,
)
from lambdaop.spec import Invoke

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:report"
NO_FILES = {"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


def aws(env: dict[str, str], clock: Any = None) -> Aws:
    def nowhere(*args: Any) -> Any:
        raise AssertionError("nothing is sent in these tests")

    return Aws(env, nowhere, clock)


def lam(**fields: Any) -> Invoke:
    return Invoke.model_validate({"lambda": ARN, **fields})


def test_botocore_reads_the_mapping_and_never_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "ap-south-1",
        **KEYS,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }.items():
        monkeypatch.setenv(name, value)  # the process environment: lambdaop must not see any of it
    bare = Invoke.model_validate({"lambda": "report"})
    with pytest.raises(AwsFailed, match="no AWS region"):
        aws(NO_FILES).region(bare)
    assert aws({**NO_FILES, "AWS_DEFAULT_REGION": "eu-west-3"}).region(bare) == "eu-west-3"
    assert aws({**NO_FILES, "AWS_REGION": "eu-west-2"}).region(bare) == "eu-west-2", "AWS_REGION, last"
    assert aws(NO_FILES).endpoint("lambda", "eu-west-1") == "https://lambda.eu-west-1.amazonaws.com"
    with pytest.raises(AwsFailed, match="no AWS credentials found") as found:
        aws(NO_FILES).credentials(lam(), "eu-west-1", None)
    assert found.value.failure == Failure.CONFIG
    creds = aws({**NO_FILES, "AWS_ACCESS_KEY_ID": "AKIDMAPPING", "AWS_SECRET_ACCESS_KEY": "s"}).credentials(lam(), "eu-west-1", None)  # fmt: skip
    assert creds.access_key == "AKIDMAPPING"


def test_region_comes_from_the_spec_the_arn_or_the_function_url() -> None:
    assert aws(NO_FILES).region(lam()) == "eu-west-1"
    assert (
        aws(NO_FILES).region(Invoke.model_validate({"lambda": "report", "region": "sa-east-1"}))
        == "sa-east-1"
    )
    url = Invoke.model_validate({"url": "https://abc123.lambda-url.ca-central-1.on.aws/x", "auth": "aws_iam"})
    assert aws(NO_FILES).region(url) == "ca-central-1"


def test_profiles_and_shared_files_named_by_the_mapping(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(
        "[profile ops]\nregion = eu-north-1\nendpoint_url = http://127.0.0.1:4566\n"
    )
    (tmp_path / "credentials").write_text(
        "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = ops-secret\n"
    )
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"), "AWS_PROFILE": "ops", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    a = aws(env)
    assert a.region(Invoke.model_validate({"lambda": "report"})) == "eu-north-1"
    assert a.endpoint("lambda", "eu-north-1") == "http://127.0.0.1:4566", "the profile's endpoint_url"
    assert a.credentials(lam(), "eu-north-1", None).access_key == "AKIDOPS"
    assert aws({**env, **KEYS}).credentials(lam(), "eu-north-1", None).access_key == "AKIDEXAMPLE", "keys in the environment win"  # fmt: skip
    assert aws({**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}).endpoint("lambda", "eu-north-1") == "https://lambda.eu-north-1.amazonaws.com"  # fmt: skip
    with pytest.raises(AwsFailed, match="could not be found"):
        aws({**env, "AWS_PROFILE": "missing"}).credentials(lam(), "eu-north-1", None)


def test_the_chain_is_botocores_in_its_order() -> None:
    chain = credential_chain(session_for(NO_FILES), NO_FILES)
    methods = [p.METHOD for p in chain.providers]
    assert methods[:3] == ["env", "assume-role", "assume-role-with-web-identity"]
    assert methods[-2:] == ["container-role", "iam-role"]
    assert {"sso", "shared-credentials-file", "custom-process", "config-file"} <= set(methods)


def test_endpoints_and_their_overrides() -> None:
    assert aws(NO_FILES).endpoint("lambda", "cn-north-1") == "https://lambda.cn-north-1.amazonaws.com.cn"
    both = {**NO_FILES, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:5000"}  # fmt: skip
    assert aws(both).endpoint("lambda", "us-east-1") == "http://127.0.0.1:5000", (
        "the service's own setting first"
    )
    assert aws(both).endpoint("sts", "us-east-1") == "http://127.0.0.1:4566", "then AWS_ENDPOINT_URL"
    fips = {**NO_FILES, "AWS_USE_FIPS_ENDPOINT": "true"}
    assert aws(fips).endpoint("lambda", "us-east-1") == "https://lambda-fips.us-east-1.amazonaws.com"


def test_the_invoke_request_and_its_event() -> None:
    a = aws(NO_FILES)

    def fill(value: Any) -> Any:
        return value

    url, headers, body = a.invoke(lam(qualifier="$LATEST", payload={"day": 1}), "o1-g1-task", 2, fill)
    assert url == "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Areport/invocations?Qualifier=%24LATEST"  # fmt: skip
    assert headers["X-Amz-Invocation-Type"] == "RequestResponse" and body == b'{"day":1}'
    assert json.loads(base64.b64decode(headers["X-Amz-Client-Context"])) == {"custom": {"idempotencyKey": "o1-g1-task", "attempt": 2}}  # fmt: skip
    url, headers, body = a.invoke(Invoke.model_validate({"lambda": f"{ARN}:prod", "invocationType": "Event"}), "k", 1, fill)  # fmt: skip
    assert url.endswith("%3Areport/invocations?Qualifier=prod") and "X-Amz-Client-Context" not in headers
    assert body == b"{}", "no payload is the empty event"
    notify = lam(payload={"ignored": True}).model_copy(
        update={"method": "POST", "body": {"event": "run.failed"}}
    )
    assert a.invoke(notify, "k", 1, fill)[2] == b'{"event":"run.failed"}', (
        "a failure notification sends its event"
    )


def sigv4(method: str, url: str, headers: dict[str, str], body: bytes, key: str, secret: str, region: str, when: str) -> str:  # fmt: skip
    """SigV4 written out from AWS's description (not botocore's code), for service lambda."""
    parts = urlsplit(url)
    canonical = sorted(
        (k.lower(), " ".join(v.split())) for k, v in headers.items() if k.lower() != "user-agent"
    )
    names = ";".join(k for k, _ in canonical)
    query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    request = "\n".join([method, quote(parts.path, safe="/~"), query, "".join(f"{k}:{v}\n" for k, v in canonical), names, hashlib.sha256(body).hexdigest()])  # fmt: skip
    scope = f"{when[:8]}/{region}/lambda/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256", when, scope, hashlib.sha256(request.encode()).hexdigest()])
    k = f"AWS4{secret}".encode()
    for part in (when[:8], region, "lambda", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={names}, Signature={hmac.new(k, text.encode(), hashlib.sha256).hexdigest()}"  # fmt: skip


class Frozen:
    access_key, secret_key, token = KEYS["AWS_ACCESS_KEY_ID"], KEYS["AWS_SECRET_ACCESS_KEY"], None


def test_the_signature_is_sigv4_dated_by_the_clock(clock: Any) -> None:
    url = "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Areport/invocations?Qualifier=%24LATEST"  # fmt: skip
    headers = {"X-Amz-Invocation-Type": "RequestResponse", "User-Agent": "lambdaop/test"}
    out = signed("POST", url, headers, b'{"a":1}', Frozen(), "eu-west-1", clock.now())
    assert out["X-Amz-Date"] == "20261127T120000Z" and out["Host"] == "lambda.eu-west-1.amazonaws.com"
    mine = {k: v for k, v in out.items() if k != "Authorization"}
    assert out["Authorization"] == sigv4("POST", url, mine, b'{"a":1}', Frozen.access_key, Frozen.secret_key, "eu-west-1", "20261127T120000Z")  # fmt: skip
    assert "user-agent" not in out["Authorization"], "User-Agent is left unsigned, as botocore does"
    Frozen.token = "session-token"
    try:
        out = signed("POST", url, headers, b"{}", Frozen(), "eu-west-1", clock.advance(3600))
    finally:
        Frozen.token = None
    assert out["X-Amz-Security-Token"] == "session-token" and "x-amz-security-token" in out["Authorization"]
    assert out["X-Amz-Date"] == "20261127T130000Z"


def test_what_lambdas_answers_mean() -> None:
    h = {"x-amzn-requestid": "r-1"}
    assert failure_of(lam(), 200, b'{"errorType":"ValueError","errorMessage":"bad"}', {**h, "x-amz-function-error": "Handled"}) == ("function error (Handled): ValueError: bad", Failure.FUNCTION)  # fmt: skip
    assert failure_of(lam(), 200, b"not json", {"x-amz-function-error": "Unhandled"}) == ("function error (Unhandled)", Failure.FUNCTION)  # fmt: skip
    throttled = failure_of(lam(), 429, b'{"message":"Rate Exceeded.","Reason":"CallerRateLimitExceeded"}', {**h, "x-amzn-errortype": "TooManyRequestsException"})  # fmt: skip
    assert throttled == ("status 429, TooManyRequestsException: Rate Exceeded. (CallerRateLimitExceeded); request id r-1", Failure.THROTTLED)  # fmt: skip
    missing = failure_of(
        lam(), 404, b'{"__type":"ResourceNotFoundException","Message":"Function not found"}', {}
    )
    assert missing == ("status 404, ResourceNotFoundException: Function not found", Failure.CLIENT)
    xml = b"<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: bob is not authorized</Message></Error></Errors></ErrorResponse>"  # fmt: skip
    assert aws_error({}, xml) == "AccessDenied: User: bob is not authorized"
    assert failure_of(lam(), 503, b"", {}) == ("status 503, no error details", Failure.SERVER)
    assert failure_of(lam(invocationType="Event"), 200, b"", {}) == ("status 200, where an Event call answers 202", Failure.BODY)  # fmt: skip
    assert failure_of(lam(invocationType="Event"), 202, b"", {}) is None
    assert failure_of(lam(), 200, b"{}", {}) is None, "a 200 is judged as usual (successWhen)"
    url = Invoke.model_validate({"url": "https://abc.lambda-url.eu-west-1.on.aws/", "auth": "aws_iam"})
    assert failure_of(url, 403, b'{"Message":"Forbidden."}', {"x-amzn-errortype": "AccessDeniedException"}) == ("status 403, AccessDeniedException: Forbidden.", Failure.CLIENT)  # fmt: skip
    assert failure_of(url, 500, b"the function's own", {}) is None, (
        "a Function URL's own answer is judged as usual"
    )


def test_urls_as_they_are_signed_and_sent() -> None:
    assert canonical_url("https://h.test/a b/c?b=x y&a=1&c=%2B") == "https://h.test/a%20b/c?b=x%20y&a=1&c=%2B"
    assert host_header("https://h.test:443/x") == "h.test" and host_header("http://127.0.0.1:8080/") == "127.0.0.1:8080"  # fmt: skip
    assert host_header("http://[::1]:9000/") == "[::1]:9000"
