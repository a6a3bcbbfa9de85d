"""AWS for the invoker: credentials, endpoints and SigV4 from botocore; the bytes go the invoker's way.

Called by invoker (one `Aws` per invoker; its botocore session is made on the first AWS
call). botocore does three things here and nothing else: it finds credentials (the
standard chain), resolves endpoints, and computes SigV4 signatures. The request itself goes over the invoker's own
http.client path, so the outbound policy, the pinned address, the one deadline and the
1 MiB cap hold for AWS calls as for any call.

- botocore sees the invoker's `env` mapping, never os.environ (only the entry point reads
  the environment): `session_for(env)` builds a session whose config chain (region,
  profile, config and credentials files, AWS_ENDPOINT_URL*, IMDS settings) reads the
  mapping, and a credential resolver in botocore's order whose providers that read the
  environment (keys, web identity, ECS/EKS container credentials, EC2 instance metadata)
  are given the mapping. Shared files, SSO and credential processes come from the files
  the mapping names (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE).
- Endpoints are cached per service and region; the default credentials once found, and
  assumed roles per (role, externalId, sessionName, region), at most `ROLES_KEPT`.
  Refreshable credentials renew themselves ahead of expiry. The session is used under
  one lock (botocore sessions are not thread-safe).
- AssumeRole (a spec's `roleArn`) goes to STS through the invoker as well (`send`), so the
  outbound policy covers it; the default chain's own sources (instance metadata,
  container endpoints, SSO, web identity) are reached by botocore as the environment
  configures them.
- Signatures take their time from the invoker's clock. Nothing here logs, stores or
  answers a secret: errors carry AWS's code and message, and botocore logs at WARNING
  and above only (its DEBUG lines print bodies, and an STS answer holds a secret key).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from botocore import UNSIGNED
from botocore import credentials as bc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse, HeadersDict
from botocore.config import Config
from botocore.configprovider import (
    BOTOCORE_DEFAUT_SESSION_VARIABLES,
    ConfigChainFactory,
    ConfiguredEndpointProvider,
    ConfigValueStore,
)
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError
from botocore.session import Session
from botocore.utils import InstanceMetadataFetcher, resolve_imds_endpoint_mode

from lambdaop.core.clock import Clock
from lambdaop.engine.outcomes import Failure
from lambdaop.spec import Invoke, function_url_region

log = logging.getLogger(__name__)

API = "2015-03-31"
ROLES_KEPT = 256
STS_TIMEOUT = 10.0  # seconds for one AssumeRole call (it is not part of any one call's deadline)
EXPECTED = {"RequestResponse": 200, "Event": 202, "DryRun": 204}
CLIENT_CONTEXT_MAX = 3583  # bytes of base64, as the Invoke API allows
_WEB_IDENTITY = {"web_identity_token_file": "AWS_WEB_IDENTITY_TOKEN_FILE", "role_arn": "AWS_ROLE_ARN", "role_session_name": "AWS_ROLE_SESSION_NAME"}  # fmt: skip

# (method, url, headers, body) -> (status, body, truncated, headers): the invoker's own sending path
Sender = Callable[[str, str, dict[str, str], bytes], tuple[int, bytes, bool, dict[str, str]]]


class AwsFailed(Exception):
    """An AWS call cannot be made or was refused before it was sent; `failure` says of what kind."""

    def __init__(self, message: str, failure: Failure = Failure.CONFIG) -> None:
        super().__init__(message)
        self.failure = failure


class Aws:
    """Region, endpoints and credentials for AWS calls, from one botocore session (cached)."""

    def __init__(self, env: Mapping[str, str], send: Sender, clock: Clock) -> None:
        self._env = env
        self._send = send
        self._clock = clock
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._endpoints: dict[tuple[str, str], str] = {}
        self._roles: OrderedDict[tuple[str, str | None, str, str], Any] = OrderedDict()
        self._found: str | None = None  # how the default credentials were found (logged once)

    def _botocore(self) -> Session:
        if self._session is None:
            self._session = session_for(self._env)
        return self._session

    def region(self, inv: Invoke) -> str:
        """The spec's region, else the ARN's or the Function URL's, else the environment's."""
        found = inv.region or (
            inv.function()[2] if inv.lambda_ is not None else function_url_region(inv.url or "")
        )
        if found:
            return found
        with self._lock, _translated("reading the AWS configuration"):
            found = self._botocore().get_config_variable("region") or self._env.get("AWS_REGION")
        if not found:
            raise AwsFailed("no AWS region: give the function's ARN or `region`, or set AWS_DEFAULT_REGION (or a profile's region)")  # fmt: skip
        return str(found)

    def endpoint(self, service: str, region: str) -> str:
        """https://lambda.REGION.amazonaws.com (FIPS, dual-stack, .cn as configured), or the
        environment's override: AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, the profile's."""
        key = (service, region)
        with self._lock:
            if key not in self._endpoints:
                with _translated(f"finding the {service} endpoint in {region}"):
                    session = self._botocore()
                    client = session.create_client(
                        service, region_name=region, endpoint_url=self._configured(service),
                        config=Config(signature_version=UNSIGNED, ignore_configured_endpoint_urls=True),
                    )  # fmt: skip
                    self._endpoints[key] = client.meta.endpoint_url
            return self._endpoints[key]

    def _configured(self, service: str) -> str | None:
        session = self._botocore()
        if session.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        provider = ConfiguredEndpointProvider(
            full_config=session.full_config, scoped_config=session.get_scoped_config(),
            client_name=service, environ=self._env,
        )  # fmt: skip
        url = provider.provide()
        return str(url) if url else None

    def invoke(
        self, inv: Invoke, key: str, attempt: int, fill: Callable[[Any], Any]
    ) -> tuple[str, dict[str, str], bytes]:
        """The Invoke API call to sign: POST …/functions/NAME/invocations, its headers and the event.

        The event is `payload` as JSON (`{}` when there is none; `fill` puts in the fromEnv
        secrets), or the `body` a failure notification gets. The Idempotency-Key goes in
        the ClientContext's `custom` (Lambda sees no HTTP headers, and hands a ClientContext
        to RequestResponse calls only): {"custom": {"idempotencyKey": …, "attempt": N}}.
        """
        name, qualifier, _ = inv.function()
        url = f"{self.endpoint('lambda', self.region(inv)).rstrip('/')}/{API}/functions/{_encoded(name)}/invocations"
        if qualifier is not None:
            url += f"?Qualifier={_encoded(qualifier)}"
        headers: dict[str, str] = {"X-Amz-Invocation-Type": inv.invocation}
        if inv.invocation == "RequestResponse":
            custom = {"custom": {"idempotencyKey": key, "attempt": attempt}}
            context = base64.b64encode(json.dumps(custom, separators=(",", ":")).encode()).decode()
            if len(context) > CLIENT_CONTEXT_MAX:
                raise AwsFailed(f"the client context is over {CLIENT_CONTEXT_MAX} bytes")
            headers["X-Amz-Client-Context"] = context
        event = inv.payload if inv.body is None else inv.body
        return url, headers, json.dumps(fill({} if event is None else event), separators=(",", ":")).encode()

    def sign(
        self, inv: Invoke, method: str, url: str, headers: dict[str, str], body: bytes | None, external_id: str | None
    ) -> dict[str, str]:  # fmt: skip
        """Every header to send, signed for service `lambda` with the credentials this call uses."""
        region = self.region(inv)
        creds = self.credentials(inv, region, external_id)
        return signed(method, url, headers, body or b"", creds, region, self._clock.now())

    def credentials(self, inv: Invoke, region: str, external_id: str | None) -> Any:
        """The default chain's credentials, or the spec's role assumed with them (frozen for one call)."""
        with self._lock, _translated("finding AWS credentials"):
            creds = self._botocore().get_credentials()
            if creds is None:
                raise AwsFailed("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role (ECS task role, EKS IRSA or Pod Identity, EC2 instance profile)")  # fmt: skip
            if self._found is None:
                self._found = str(creds.method)
                log.info("AWS credentials found (%s)", self._found)
            if inv.roleArn is not None:
                creds = self._role(creds, inv.roleArn, external_id, inv.sessionName or "lambdaop", region)
        with _translated(f"assuming {inv.roleArn}" if inv.roleArn else "refreshing AWS credentials"):
            return creds.get_frozen_credentials()

    def _role(
        self, source: Any, role_arn: str, external_id: str | None, session_name: str, region: str
    ) -> Any:
        key = (role_arn, external_id, session_name, region)
        creds = self._roles.get(key)
        if creds is None:
            extra = {"RoleSessionName": session_name} | ({"ExternalId": external_id} if external_id else {})
            fetcher = bc.AssumeRoleCredentialFetcher(
                client_creator=functools.partial(self._sts, region), source_credentials=source,
                role_arn=role_arn, extra_args=extra,
            )  # fmt: skip
            creds = bc.DeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method="assume-role"
            )
            self._roles[key] = creds
            while len(self._roles) > ROLES_KEPT:
                self._roles.popitem(last=False)
        self._roles.move_to_end(key)
        return creds

    def _sts(self, region: str, service: str, **kwargs: Any) -> Any:
        """An STS client (the fetcher asks for one with the source credentials) that sends the invoker's way."""
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, ignore_configured_endpoint_urls=True)
        with self._lock:
            client = self._botocore().create_client(
                service, region_name=region, endpoint_url=self._configured(service), config=config, **kwargs
            )
        client.meta.events.register("before-send", self._route)
        return client

    def _route(self, request: Any, **kwargs: Any) -> AWSResponse:
        """botocore's request, sent by the invoker (the policy, a pinned address, a deadline)."""
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        headers.setdefault("Host", host_header(request.url))
        body = request.body.read() if hasattr(request.body, "read") else request.body
        body = body.encode() if isinstance(body, str) else body or b""
        status, raw, _, answer = self._send(request.method, request.url, headers, body)
        return AWSResponse(request.url, status, HeadersDict(answer), _Raw(raw))


class _Raw:
    """What botocore reads an answer's body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """botocore's errors as AwsFailed, in words (AWS's code and message; never a secret)."""
    try:
        yield
    except ClientError as exc:
        error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 400)
        raise AwsFailed(f"{doing}: status {status}, {error.get('Code', '?')}: {error.get('Message', '')}"[:1000], Failure.of_status(status)) from None  # fmt: skip
    except (AwsConnectionError, HTTPClientError) as exc:
        raise AwsFailed(f"{doing}: {exc}"[:1000], Failure.CONNECTION) from None
    except BotoCoreError as exc:
        raise AwsFailed(f"{doing}: {exc}"[:1000]) from None


def _encoded(value: str) -> str:
    """Percent-encoding as SigV4 and botocore do it: unreserved characters stay, the rest is %XX."""
    return quote(value, safe="-_.~")


def host_header(url: str) -> str:
    """The Host value sent and signed: the name (IPv6 in brackets), with the port unless it is the default."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    return host if parts.port in (None, 443 if parts.scheme == "https" else 80) else f"{host}:{parts.port}"


def canonical_url(url: str) -> str:
    """A URL to sign as it will be sent: the query re-encoded as SigV4 canonicalises it (%20, never +)."""
    parts = urlsplit(url)
    query = "&".join(
        f"{_encoded(k)}={_encoded(v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, parts.netloc, quote(parts.path or "/", safe="/-_.~%"), query, ""))


def signed(
    method: str, url: str, headers: Mapping[str, str], body: bytes, creds: Any, region: str, now: dt.datetime
) -> dict[str, str]:
    """The headers with SigV4 added (X-Amz-Date, X-Amz-Security-Token, Authorization), dated `now`.

    Every header given is signed (but User-Agent and the others botocore leaves out), so
    send them unchanged; Host is added when missing, as `host_header` makes it.
    """
    out = dict(headers)
    if "host" not in {k.lower() for k in out}:
        out["Host"] = host_header(url)
    out["X-Amz-Date"] = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if creds.token:
        out["X-Amz-Security-Token"] = creds.token
    request = AWSRequest(method=method, url=url, data=body, headers=out)
    request.context["timestamp"] = out["X-Amz-Date"]
    auth = SigV4Auth(bc.Credentials(creds.access_key, creds.secret_key, creds.token), "lambda", region)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    names = auth.signed_headers(auth.headers_to_sign(request))
    out["Authorization"] = f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={names}, Signature={signature}"  # fmt: skip
    return out


def failure_of(
    inv: Invoke, status: int, body: bytes, headers: Mapping[str, str]
) -> tuple[str, Failure] | None:
    """What AWS's answer means, when it is a failure the plain judging would not name (else None).

    Invoke: a function error (200 with X-Amz-Function-Error) is its own kind, `function`, with
    the payload's errorType and errorMessage; an API error names AWS's code and message; a 2xx
    other than RequestResponse 200, Event 202, DryRun 204 is a `body` failure. A Function
    URL's answer is the function's own, unless AWS refused it (x-amzn-ErrorType).
    """
    ok = 200 <= status < 300
    if inv.lambda_ is None:
        return None if ok or "x-amzn-errortype" not in headers else (f"status {status}, {aws_error(headers, body)}", Failure.of_status(status))  # fmt: skip
    if ok and headers.get("x-amz-function-error"):
        return function_error(headers["x-amz-function-error"], body), Failure.FUNCTION
    if not ok:
        return f"status {status}, {aws_error(headers, body)}", Failure.of_status(status)
    expected = EXPECTED[inv.invocation]
    if status != expected and not (inv.successWhen and inv.successWhen.status):
        return f"status {status}, where an {inv.invocation} call answers {expected}", Failure.BODY
    return None


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def function_error(kind: str, body: bytes) -> str:
    """`function error (Handled): ValueError: bad input`; errorType and errorMessage may be missing."""
    doc = _document(body)
    parts = [str(doc[k])[:1000] for k in ("errorType", "errorMessage") if doc.get(k)]
    return ": ".join([f"function error ({kind[:40]})", *parts])


def aws_error(headers: Mapping[str, str], body: bytes) -> str:
    """AWS's error code and message, found as botocore finds them (JSON, or XML from some emulators)."""
    doc = _document(body)
    code = headers.get("x-amzn-errortype") or doc.get("__type") or doc.get("code") or doc.get("Code")
    message = doc.get("message") or doc.get("Message") or ""
    if not code and body.lstrip().startswith(b"<"):
        found = {m[0]: m[1] for m in re.findall(rb"<(Code|Message)>([^<]*)</\1>", body[:8192])}
        code, message = found.get(b"Code", b"").decode(errors="replace"), found.get(b"Message", b"").decode(errors="replace")  # fmt: skip
    text = ": ".join(p for p in (str(code or "").split(":", 1)[0].rsplit("#", 1)[-1], str(message)) if p)
    text = (text or "no error details")[:1000] + (
        f" ({doc['Reason']})" if isinstance(doc.get("Reason"), str) else ""
    )
    request = headers.get("x-amzn-requestid")
    return text + (f"; request id {request[:100]}" if request else "")


def session_for(env: Mapping[str, str]) -> Session:
    """A botocore session that reads `env` where botocore would read os.environ."""
    logging.getLogger("botocore").setLevel(logging.WARNING)
    session = Session()
    chain = ConfigChainFactory(session=session, environ=env)
    session.register_component("config_store", ConfigValueStore(mapping={
        name: chain.create_config_chain(instance_name=name, env_var_names=var, config_property_names=prop, default=default, conversion_func=convert)  # fmt: skip
        for name, (prop, var, default, convert) in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()
    }))  # fmt: skip
    session.lazy_register_component("credential_provider", lambda: credential_chain(session, env))
    return session


def credential_chain(session: Session, env: Mapping[str, str]) -> Any:
    """botocore's default chain, in its order, with `env` for the environment: keys, assume-role
    and web identity profiles, SSO, shared files, credential processes, container, instance
    metadata. (The two boto2-era files, ~/.boto and AWS_CREDENTIAL_FILE, are left out.)"""
    profile = session.get_config_variable("profile") or "default"
    region = session.get_config_variable("region")
    cache: dict[str, Any] = {}
    keys, container = bc.EnvProvider(environ=env), bc.ContainerProvider(environ=env)
    instance = bc.InstanceMetadataProvider(iam_role_fetcher=InstanceMetadataFetcher(
        timeout=session.get_config_variable("metadata_service_timeout"),
        num_attempts=session.get_config_variable("metadata_service_num_attempts"),
        user_agent=session.user_agent(), env=env,
        config={
            "ec2_metadata_service_endpoint": session.get_config_variable("ec2_metadata_service_endpoint"),
            "ec2_metadata_service_endpoint_mode": resolve_imds_endpoint_mode(session),
            "ec2_credential_refresh_window": 15 * 60,
            "ec2_metadata_v1_disabled": session.get_config_variable("ec2_metadata_v1_disabled"),
        },
    ))  # fmt: skip

    def creator(service: str, **kwargs: Any) -> Any:  # STS for web identity: its endpoint from `env` too
        if "endpoint_url" not in kwargs and not session.get_config_variable(
            "ignore_configured_endpoint_urls"
        ):
            url = ConfiguredEndpointProvider(
                full_config=session.full_config, scoped_config=session.get_scoped_config(),
                client_name=service, environ=env,
            ).provide()  # fmt: skip
            if url:
                kwargs["endpoint_url"] = url
        return session.create_client(service, **{"region_name": region, **kwargs})

    def web_identity_config() -> dict[
        str, Any
    ]:  # AWS_WEB_IDENTITY_TOKEN_FILE & co. from env, over the profile
        full = session.full_config
        own = {**full.get("profiles", {}).get(profile, {}), **{k: env[v] for k, v in _WEB_IDENTITY.items() if v in env}}  # fmt: skip
        return {**full, "profiles": {**full.get("profiles", {}), profile: own}}

    builder = bc.ProfileProviderBuilder(session, cache=cache, region_name=region)
    profiles = [
        bc.AssumeRoleWithWebIdentityProvider(load_config=web_identity_config, client_creator=creator, profile_name=profile, cache=cache, disable_env_vars=True)  # fmt: skip
        if p.METHOD == "assume-role-with-web-identity" else p
        for p in builder.providers(profile_name=profile)
    ]  # fmt: skip
    assume_role = bc.AssumeRoleProvider(
        load_config=lambda: session.full_config, client_creator=creator, cache=cache, profile_name=profile,
        credential_sourcer=bc.CanonicalNameCredentialSourcer([keys, container, instance]),
        profile_provider_builder=builder,
    )  # fmt: skip
    return bc.CredentialResolver(providers=[keys, assume_role, *profiles, container, instance])
