"""The Lambda forms of `invoke`: by ARN or name (`lambda`), and AWS_IAM Function URLs (`auth: aws_iam`);
bad input answers a clear error on the field that holds it."""

from __future__ import annotations

import pytest

from lambdaop.core.errors import SpecInvalid
from lambdaop.spec import RETRY_ON, Invoke, json_schemas, load_one, targets

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:report"


def problems(invoke: str, extra: str = "") -> list[tuple[str | None, int | None, str]]:
    with pytest.raises(SpecInvalid) as raised:
        load_one(f"kind: Task\nmetadata: {{name: a}}\nspec:\n  invoke: {invoke}\n{extra}")
    return [(p.field, p.line, p.message) for p in raised.value.problems]


def test_every_place_of_a_taskset_takes_an_arn() -> None:
    (ts,) = load_one(
        "kind: TaskSet\nmetadata: {name: s}\nspec:\n"
        f"  tasks: ['{ARN}', {{lambda: 'step-b', region: eu-west-1, payload: {{n: 2}}, retries: 2}}, {{url: '{ARN}:live'}}]\n"  # fmt: skip
        f"  conditionCheck: {{invoke: {{lambda: '123456789012:function:check', region: eu-west-1}}, retries: 3}}\n"
        f"  fallback: {{invoke: '{ARN}:7'}}\n  onFailure: {{invoke: {{lambda: '{ARN}', invocationType: Event}}}}\n"
    )
    found = [(field, i.target) for field, i in targets(ts)]
    assert found == [
        ("spec.tasks[0].lambda", ARN),
        ("spec.tasks[1].lambda", "step-b"),
        ("spec.tasks[2].lambda", f"{ARN}:live"),
        ("spec.conditionCheck.invoke.lambda", "123456789012:function:check"),
        ("spec.fallback.invoke.lambda", f"{ARN}:7"),
    ]
    assert ts.spec.tasks[1].retries == 2 and ts.spec.tasks[1].as_invoke().payload == {"n": 2}
    assert ts.spec.fallback is not None and ts.spec.fallback.invoke.function() == (ARN, "7", "eu-west-1")
    assert ts.spec.onFailure is not None and ts.spec.onFailure.invoke.invocationType == "Event"


def test_a_task_by_arn_with_a_role_and_its_stored_form() -> None:
    (task,) = load_one(
        f"kind: Task\nmetadata: {{name: a}}\nspec:\n  invoke:\n    lambda: '{ARN}'\n    qualifier: prod\n"
        "    payload: {day: {fromEnv: DAY}}\n    roleArn: arn:aws:iam::123456789012:role/invoker\n"
        "    externalId: {fromEnv: EXTERNAL_ID}\n    sessionName: nightly-report\n    timeout: 5m\n"
        "  retryOn: [function, '429']\n"
    )
    inv = task.spec.invoke
    assert inv.aws and inv.target == f"{ARN}:prod" and inv.function() == (ARN, "prod", "eu-west-1")
    assert task.spec.retryOn == ["function", "429"] and "function" in RETRY_ON
    stored = task.spec.model_dump(mode="json", by_alias=True, exclude_none=True)["invoke"]
    assert (
        stored["lambda"] == ARN and stored["externalId"] == {"fromEnv": "EXTERNAL_ID"} and "url" not in stored
    )
    assert Invoke.model_validate(stored) == inv, "the stored form reads back the same"


def test_an_aws_iam_function_url() -> None:
    (task,) = load_one("kind: Task\nmetadata: {name: a}\nspec:\n  invoke: {url: 'https://abc123.lambda-url.eu-west-1.on.aws/x', auth: aws_iam, method: POST, body: {a: 1}}\n")  # fmt: skip
    assert (
        task.spec.invoke.aws and task.spec.invoke.lambda_ is None and targets(task)[0][0] == "spec.invoke.url"
    )
    (task,) = load_one("kind: Task\nmetadata: {name: a}\nspec:\n  invoke: {url: 'https://fn.example.com/', auth: aws_iam, region: us-west-2}\n")  # fmt: skip
    assert task.spec.invoke.region == "us-west-2"


@pytest.mark.parametrize(
    ("invoke", "field", "message"),
    [
        (
            f"{{lambda: '{ARN}', method: POST}}",
            "spec.invoke.method",
            "`method` is for URL calls; a Lambda call (`lambda`) sends `payload`",
        ),  # fmt: skip
        (f"{{lambda: '{ARN}', body: {{a: 1}}}}", "spec.invoke.body", "`body` is for URL calls"),
        (f"{{lambda: '{ARN}', auth: aws_iam}}", "spec.invoke.auth", "`auth` is for URL calls"),
        (
            "{url: 'https://x.test/', payload: {a: 1}}",
            "spec.invoke.payload",
            "`payload` is for Lambda calls (`lambda`), not `url`",
        ),  # fmt: skip
        ("{url: 'https://x.test/', invocationType: Event}", "spec.invoke.invocationType", "not `url`"),
        (
            "{url: 'https://x.test/', roleArn: 'arn:aws:iam::123456789012:role/r'}",
            "spec.invoke.roleArn",
            "`auth: aws_iam` URLs",
        ),  # fmt: skip
        ("{lambda: 'my function'}", "spec.invoke.lambda", "expected a Lambda function name or ARN"),
        (
            "{lambda: 'arn:aws:lambda:eu-west-1:12345:function:x'}",
            "spec.invoke.lambda",
            "expected a Lambda function name or ARN",
        ),  # fmt: skip
        (
            "'arn:aws:lambda:eu-west-1:123456789012:report'",
            "spec.invoke.lambda",
            "expected a Lambda function name or ARN",
        ),  # fmt: skip
        (f"{{lambda: '{ARN}', qualifier: 'a b'}}", "spec.invoke.qualifier", "expected a version or alias"),
        (
            f"{{lambda: '{ARN}', region: 'EU WEST'}}",
            "spec.invoke.region",
            "expected an AWS region such as eu-west-1",
        ),
        (
            f"{{lambda: '{ARN}', roleArn: 'arn:aws:iam::1:user/x'}}",
            "spec.invoke.roleArn",
            "expected an IAM role ARN",
        ),
        (f"{{lambda: '{ARN}', externalId: x}}", "spec.invoke.externalId", "`externalId` goes with `roleArn`"),
        (
            f"{{lambda: '{ARN}', invocationType: Later}}",
            "spec.invoke.invocationType",
            "expected one of RequestResponse, Event, DryRun",
        ),  # fmt: skip
        (
            f"{{lambda: '{ARN}:3', qualifier: '4'}}",
            "spec.invoke",
            "qualifier '4' differs from the one in the ARN ('3')",
        ),  # fmt: skip
        (
            f"{{lambda: '{ARN}', region: us-east-1}}",
            "spec.invoke",
            "region 'us-east-1' differs from the ARN's ('eu-west-1')",
        ),  # fmt: skip
        (
            f"{{lambda: '{ARN}', invocationType: Event, successWhen: {{json: {{path: ok, equals: true}}}}}}",
            "spec.invoke",
            "successWhen.json: an Event call returns no payload to test",
        ),  # fmt: skip
        (
            "{url: 'https://x.test/', auth: aws_iam}",
            "spec.invoke",
            "auth: aws_iam needs `region`: x.test is not a Function URL host",
        ),  # fmt: skip
        (
            "{url: 'https://abc.lambda-url.eu-west-1.on.aws/', auth: aws_iam, followRedirects: true}",
            "spec.invoke",
            "do not follow redirects",
        ),  # fmt: skip
        (
            "{url: 'https://abc.lambda-url.eu-west-1.on.aws/', auth: aws_iam, headers: {Authorization: x}}",
            "spec.invoke",
            "sets Authorization",
        ),  # fmt: skip
        (
            f"{{url: 'https://x.test/', lambda: '{ARN}'}}",
            "spec.invoke",
            "give `url` (an http(s) URL) or `lambda`",
        ),
        ("{timeout: 5s}", "spec.invoke", "give `url` (an http(s) URL) or `lambda`"),
        (
            "'ftp://x.test/'",
            "spec.invoke.url",
            "expected an http:// or https:// URL (or a Lambda function ARN)",
        ),
    ],
)
def test_bad_input_names_its_field(invoke: str, field: str, message: str) -> None:
    found = problems(invoke)
    assert any(f == field and line == 4 and message in m for f, line, m in found), found


def test_a_url_call_is_stored_as_before_so_its_spec_hash_stays() -> None:
    (task,) = load_one("kind: Task\nmetadata: {name: a}\nspec: {invoke: 'https://x.test/a'}\n")
    stored = task.spec.model_dump(mode="json", by_alias=True, exclude_none=True)["invoke"]
    assert set(stored) == {"url", "method", "headers", "query", "timeout", "followRedirects"}


def test_the_schemas_know_the_lambda_forms() -> None:
    schema = json_schemas()["task.schema.json"]
    invoke = schema["$defs"]["Invoke"]["properties"]
    assert {"lambda", "qualifier", "payload", "invocationType", "region", "roleArn", "externalId", "sessionName", "auth"} <= set(invoke)  # fmt: skip
    assert invoke["invocationType"]["anyOf"][0]["enum"] == ["RequestResponse", "Event", "DryRun"]
    assert "required" not in schema["$defs"]["Invoke"], "url or lambda: one of them"
    step = json_schemas()["taskset.schema.json"]["$defs"]["Step"]["properties"]
    assert "lambda" in step and "function" in step["retryOn"]["anyOf"][0]["items"]["enum"]
