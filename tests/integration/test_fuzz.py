"""Generated requests against the real app on waitress: never a 5xx, and the service keeps answering.

URL-shaped values are drawn only from loopback addresses, so nothing generated
here ever calls out of the machine.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdaop.api import fields, seed

ROUTES = [
    ("POST", "/scheduler/schedule"),
    ("POST", "/scheduler/modify"),
    ("POST", "/scheduler/cancel"),
    ("POST", "/orchestrator/orchestrate"),
    ("POST", "/orchestrator/cancel"),
    ("POST", "/orchestrator/modify"),
    ("GET", "/scheduler/retrieve-tasks"),
    ("GET", "/orchestrator/retrieve-tasks"),
    ("GET", "/tasks"),
    ("GET", "/tasksets"),
    ("GET", "/tasks/{id}"),
    ("GET", "/tasksets/{id}"),
    ("POST", "/specs"),
    ("DELETE", "/specs/{kind}/{name}"),
    ("POST", "/auth/login"),
    ("GET", "/auth/me"),
    ("PUT", "/scheduler/schedule"),
]
FIELDS = sorted(
    {
        *seed.URL, *seed.NAME, *fields.AT, *fields.DATE, *fields.TIME, *fields.ZONE, *fields.DELAY, *seed.RETRIES,
        *seed.RETRY_DELAY, *seed.TASK_ID, *seed.TASKS, *seed.CHECK_URL, *seed.FALLBACK_URL, *seed.INITIAL_DELAY,
        *seed.CHECK_DELAY, *seed.CHECK_RETRIES, *seed.CHECK_RETRY_DELAY, *seed.INVOKE_EXTRAS, "labels", "password",
    }
)  # fmt: skip
SAFE_URLS = ["http://127.0.0.1:9/x", "https://127.0.0.1:9/y", "ftp://127.0.0.1/z", "127.0.0.1", "http://", ""]
URLISH = set(seed.URL + seed.CHECK_URL + seed.FALLBACK_URL)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["2026-11-28T09:00:00Z", "2026-11-28T09:00", "30s", "-5", "1e9", "All", "2026-13-45", "25:99"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(FIELDS) | st.text(min_size=1, max_size=10), max_size=6, unique=True))
    out = {}
    for key in keys:
        if key in URLISH:
            out[key] = draw(st.sampled_from(SAFE_URLS))
        elif key in seed.TASKS:
            out[key] = draw(st.lists(st.sampled_from(SAFE_URLS), max_size=3) | st.sampled_from(SAFE_URLS))
        else:
            out[key] = draw(values)
    return out


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    method, path = draw(st.sampled_from(ROUTES))
    path = path.format(
        id=draw(st.sampled_from(["x", "6b09af07f2d2750bae606b48", "%00", "..", "a" * 300])),
        kind=draw(st.sampled_from(["Task", "TaskSet", "tasks", "Job"])),
        name=draw(st.text(alphabet="abc-_.%", min_size=1, max_size=20)),
    )
    body = draw(bodies())
    encoding = draw(st.sampled_from(["json", "form", "yaml", "raw", "none"]))
    headers: dict[str, str] = {}
    data: bytes | None = None
    if encoding == "json":
        headers["Content-Type"] = "application/json"
        data = json.dumps(body, default=str).encode()
    elif encoding == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urlencode(
            {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in body.items()}
        ).encode()
    elif encoding == "yaml":
        headers["Content-Type"] = draw(st.sampled_from(["application/yaml", "text/plain"]))
        data = draw(
            st.sampled_from(
                [
                    "kind: Task\nmetadata: {name: a}\nspec: {invoke: 'http://127.0.0.1:9/x', after: 1h}\n",
                    "{{{",
                    "- 1",
                    "kind: TaskSet\n",
                    "",
                ]
            )
        )
        data = (data + draw(st.text(max_size=40))).encode()
    elif encoding == "raw":
        headers["Content-Type"] = draw(
            st.sampled_from(
                [
                    "application/json",
                    "text/html",
                    "multipart/form-data",
                    "",
                    "application/x-www-form-urlencoded",
                ]
            )
        )
        data = draw(st.binary(max_size=64))
    params = {
        k: str(v)
        for k, v in draw(
            st.dictionaries(st.sampled_from([*seed.STATE, "limit", "cursor", "zzz"]), scalars, max_size=3)
        ).items()
    }
    return {"method": method, "path": path, "headers": headers, "data": data, "params": params}  # fmt: skip


def test_generated_requests_never_get_a_5xx(make_runtime) -> None:
    runtime = make_runtime()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    seen: dict[int, int] = {}

    @settings(max_examples=1100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests_())
    def check(req: dict[str, Any]) -> None:
        r = session.request(
            req["method"],
            runtime.url + req["path"],
            headers=req["headers"],
            data=req["data"],
            params=req["params"],
            timeout=30,
        )
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (req, r.status_code, r.text[:500])
        if r.headers.get("Content-Type", "").startswith("application/json") and r.status_code >= 400:
            assert {"error", "message", "details"} <= set(r.json())

    check()
    assert sum(seen.values()) >= 1000
    assert requests.get(runtime.url + "/healthz", timeout=10).json() == {"ok": True}
    print("statuses:", dict(sorted(seen.items())))
