"""Requests generated from the OpenAPI document (schemathesis) against the running service.

Every route, valid and invalid bodies, at least 1,000 requests: never a 5xx, and a
valid request still succeeds afterwards. Calls may go only to 127.0.0.1 (and none
is sent anywhere else: the policy allows nothing but the allow-list).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from lambdaop.api.openapi import openapi_document
from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime

# POST /specs takes a whole spec document: the coverage phase's every boundary of its schema is
# about 5,000 requests (most of a minute); its examples and fuzzing phases still run, and the
# bounds of spec documents have tests of their own (test_fuzz, test_poison)
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {"include-path": "/specs", "include-method": "POST", "phases": {"coverage": {"enabled": False}}}
        ]
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
# the last test counts what the others sent: the module runs in one process (one pytest-xdist worker)
pytestmark = pytest.mark.xdist_group("schema_fuzz")
SEEN: dict[int, int] = {}


@pytest.fixture(scope="module")
def service(store_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = Config(
        state_dir=tmp_path_factory.mktemp("fuzz-state"),
        specs_dir=None,
        mongodb_uri=store_uri,
        database="schema_fuzz",
        port=0,
        allow_hosts=Policy.parse("127.0.0.1", public=False),
    )
    runtime = Runtime(config)
    runtime.start()
    yield runtime
    runtime.stop()


@schema.parametrize()
# pytest 9 names schemathesis' items by the function alone; a parameter gives each operation its own
# test id, which pytest-xdist needs to send every one of them to a worker
@pytest.mark.parametrize("who", ["admin"])
@settings(max_examples=45, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_generated_request_gets_a_5xx(case: Any, service: Runtime, who: str) -> None:
    token = {"admin": service.admin_token}[who]
    headers = {"Authorization": f"Bearer {token}"}
    if case.path == "/users/{name}" and case.method.upper() == "DELETE":
        case.path_parameters = {**(case.path_parameters or {}), "name": "not-admin-" + str(case.path_parameters.get("name", ""))[:20]}  # fmt: skip
    response = case.call(base_url=service.url, headers=headers, timeout=30)
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    assert response.status_code < 500, (case.method, case.path, response.text[:300])


def test_afterwards_at_least_1000_requests_ran_and_the_service_still_works(
    service: Runtime, tmp_path: Path
) -> None:
    assert sum(SEEN.values()) >= 1000, SEEN
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {service.admin_token}"
    r = s.post(service.url + "/scheduler/schedule", json={"url": "http://127.0.0.1:9/after-fuzz", "delay": 3_600_000}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text
    assert s.get(service.url + f"/tasks/{r.json()['id']}", timeout=30).status_code == 200
    assert requests.get(service.url + "/readyz", timeout=30).status_code == 200
    print("statuses:", dict(sorted(SEEN.items())))
