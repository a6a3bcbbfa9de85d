"""The original system's clients, unchanged: their requests replayed as they send them (HTML forms
and JSON), checking the answers and the calls that reach a local endpoint (query, order, timing).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from helpers import wait_until
from lambdaop.runtime.runtime import Runtime
from lambdaop.tools.demo import DemoLambda


class Client:
    """What the original frontends and scripts do: form posts and JSON, a bearer token."""

    def __init__(self, runtime: Runtime) -> None:
        self.url = runtime.url
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {runtime.admin_token}"

    def form(self, path: str, fields: dict[str, Any]) -> requests.Response:
        return self.s.post(self.url + path, data=fields, timeout=30)

    def json(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.s.post(self.url + path, json=body, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.s.get(self.url + path, timeout=30)

    def final(self, path: str) -> dict[str, Any]:
        return wait_until(lambda: (b := self.get(path).json())["state"] in ("completed", "success", "failed", "cancelled") and b, timeout=30)  # fmt: skip


@pytest.fixture
def client(make_runtime: Any) -> Client:
    return Client(make_runtime())


def queries(demo: DemoLambda, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(c.query) for c in demo.calls(path)]


def test_the_schedule_form_with_parameter_rows(client: Client, demo: DemoLambda) -> None:
    """checkboxN=on, keyN, valueN: only ticked rows count, numbers may skip."""
    r = client.form(
        "/scheduler/schedule",
        {
            "taskName": "Nightly report (EU)",
            "taskURL": demo.url + "/ok",
            "at": str(int(time.time() * 1000) + 300),  # epoch milliseconds, as the form sends them
            "checkbox0": "on",
            "key0": "region",
            "value0": "eu",
            "key1": "ignored",
            "value1": "unticked",
            "checkbox3": "on",
            "key3": "mode",
            "value3": "full",
        },  # fmt: skip
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["displayName"] == "Nightly report (EU)" and body["name"] == f"Nightly-report-EU-{body['id']}"
    assert body["spec"]["invoke"]["query"] == {"region": "eu", "mode": "full"}
    assert client.final(f"/scheduler/retrieve-tasks/{body['id']}")["state"] == "completed"
    assert queries(demo, "/ok") == [{"region": ["eu"], "mode": ["full"]}]


def test_the_same_label_twice_and_a_missing_one(client: Client, demo: DemoLambda) -> None:
    first = client.json("/scheduler/schedule", {"name": "my task", "url": demo.url + "/ok?a", "delay": 3_600_000}).json()  # fmt: skip
    second = client.json("/scheduler/schedule", {"name": "my task", "url": demo.url + "/ok?b", "delay": 3_600_000})  # fmt: skip
    assert second.status_code == 201, "a name is a label on the original routes"
    assert second.json()["displayName"] == first["displayName"] == "my task"
    assert second.json()["name"] != first["name"]
    unnamed = client.json("/scheduler/schedule", {"url": demo.url + "/ok?c", "delay": 3_600_000}).json()
    assert unnamed["name"] == f"task-{unnamed['id']}" and unnamed["taskId"] == unnamed["id"]


def test_json_params_go_to_the_query_string(client: Client, demo: DemoLambda) -> None:
    for field in ("params", "parameters", "queryParams"):
        r = client.json("/scheduler/schedule", {"url": demo.url + f"/ok?via={field}", field: {"user": "42", "dry": True}})  # fmt: skip
        assert r.status_code == 201, r.text
        client.final(f"/tasks/{r.json()['id']}")
    got = sorted((q["via"][0], q["user"][0], q["dry"][0]) for q in queries(demo, "/ok"))
    assert got == [("parameters", "42", "true"), ("params", "42", "true"), ("queryParams", "42", "true")]


def test_the_typed_two_task_client(client: Client, demo: DemoLambda) -> None:
    r = client.json(
        "/orchestrator/orchestrate",
        {
            "title": "release",
            "firstTaskURL": demo.url + "/ok?t1",
            "secondTaskURL": demo.url + "/ok?t2",
            "initialDelayInMS": 200,
            "conditionCheckTaskURL": demo.url + "/flaky/gate?fails=1",  # 500 once, then 200
            "conditionCheckDelayInMS": 300,
            "conditionCheckRetries": 2,
            "timeDelayBetweenRetriesInMS": 200,
            "fallbackTaskURL": demo.url + "/ok?fallback",
        },
    )
    assert r.status_code == 201, r.text
    oid = r.json()["taskSetId"]
    done = client.final(f"/orchestrator/retrieve-tasks/{oid}")
    assert done["state"] == "success", "a finished set reads success on the original routes"
    assert client.get(f"/tasksets/{oid}").json()["state"] == "completed"
    calls = demo.calls_snapshot()
    assert [c.path + (f"?{c.query}" if c.path == "/ok" else "") for c in calls] == [
        "/ok?t1", "/flaky/gate", "/flaky/gate", "/ok?t2",
    ]  # fmt: skip
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.2, gaps  # the check's delay, then its retry delay
    listed = client.form("/orchestrator/retrieve-tasks", {"taskInstance": "success"}).json()["taskSets"]
    assert [t["id"] for t in listed] == [oid]


def test_three_tasks_in_order_with_parameters_for_each(client: Client, demo: DemoLambda) -> None:
    r = client.form(
        "/orchestrator/orchestrate",
        {
            "firstTaskURL": demo.url + "/ok?n=1",
            "secondTaskURL": demo.url + "/ok?n=2",
            "thirdTaskURL": demo.url + "/ok?n=3",
            "checkbox0": "on",
            "key0": "env",
            "value0": "prod",
        },  # fmt: skip
    )
    assert r.status_code == 201, r.text
    assert client.final(f"/orchestrator/retrieve-tasks/{r.json()['id']}")["state"] == "success"
    assert [(q["n"][0], q["env"][0]) for q in queries(demo, "/ok")] == [
        ("1", "prod"),
        ("2", "prod"),
        ("3", "prod"),
    ]


def test_a_failing_task_ends_the_set_without_the_fallback_as_the_original_did(client: Client, demo: DemoLambda) -> None:  # fmt: skip
    r = client.json("/orchestrator/orchestrate", {"tasks": [demo.url + "/fail", demo.url + "/ok?never"], "fallbackUrl": demo.url + "/ok?fallback"})  # fmt: skip
    done = client.final(f"/orchestrator/retrieve-tasks/{r.json()['id']}")
    assert done["state"] == "failed"
    assert [c.path for c in demo.calls_snapshot()] == ["/fail"], "no fallback after a failed task"
    demo.reset()
    r = client.json(
        "/orchestrator/orchestrate",
        {"tasks": [demo.url + "/ok?t1", demo.url + "/ok?t2"], "conditionCheckUrl": demo.url + "/fail",
         "timeDelayForConditionCheck": 0, "conditionCheckRetries": 1, "timeDelayBetweenRetries": 100,
         "fallbackUrl": demo.url + "/ok?fallback"},
    )  # fmt: skip
    assert client.final(f"/orchestrator/retrieve-tasks/{r.json()['id']}")["state"] == "failed"
    assert [c.query or c.path for c in demo.calls_snapshot()] == ["t1", "/fail", "/fail", "fallback"], "fallback once the check gave up"  # fmt: skip


def test_lists_by_post_and_ids_with_spaces(client: Client, demo: DemoLambda) -> None:
    oid = client.json("/scheduler/schedule", {"url": demo.url + "/ok", "delay": 3_600_000}).json()["id"]
    listed = client.form("/scheduler/retrieve-tasks", {"taskInstance": "Scheduled"}).json()["tasks"]
    assert [t["id"] for t in listed] == [oid]
    assert client.get(f"/scheduler/retrieve-tasks/{oid}").json()["id"] == oid
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    assert client.form("/scheduler/modify", {"taskId": f"  {oid} ", "at": later}).json()["modified"] is True
    assert client.form("/scheduler/cancel", {"Taskid": f" {oid}"}).json()["cancelled"] is True


def test_sign_in_with_username_and_unknown_fields_still_refused(client: Client, make_runtime: Any) -> None:
    r = client.json("/scheduler/schedule", {"url": "http://127.0.0.1:9/x", "colour": "blue"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "colour"
    r = client.form("/scheduler/schedule", {"url": "http://127.0.0.1:9/x", "checkbox2": "on", "value2": "v"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "key2"


def test_a_time_without_an_offset_is_read_in_the_servers_zone(make_runtime: Any, demo: DemoLambda) -> None:
    """The original server read such a time in its own local time (here --timezone Asia/Kolkata)."""
    client = Client(make_runtime(timezone="Asia/Kolkata"))
    r = client.json("/scheduler/schedule", {"url": demo.url + "/ok", "dateTime": "2030-12-01T12:22"})
    assert r.status_code == 201, r.text
    assert r.json()["due"] == "2030-12-01T06:52:00.000Z"
    r = client.form("/scheduler/schedule", {"url": demo.url + "/ok", "scheduledTime": "2030-12-01 12:22", "timezone": "Europe/Berlin"})  # fmt: skip
    assert r.status_code == 201 and r.json()["due"] == "2030-12-01T11:22:00.000Z", "or in the request's zone"
    oid = r.json()["id"]
    r = client.json("/scheduler/modify", {"taskId": oid, "dateTime": "2030-12-02T08:00"})
    assert r.status_code == 200 and r.json()["task"]["due"] == "2030-12-02T02:30:00.000Z"


@pytest.mark.parametrize(
    "written, due",
    [
        ("Sat Nov 28 2026 09:00:00 GMT+0000 (Coordinated Universal Time)", "2026-11-28T09:00:00.000Z"),
        ("Sat Nov 28 2026 10:00:00 GMT+0100 (Central European Standard Time)", "2026-11-28T09:00:00.000Z"),
        ("Sat, 28 Nov 2026 09:00:00 GMT", "2026-11-28T09:00:00.000Z"),  # Date.toUTCString()
    ],
)
def test_javascript_date_strings(client: Client, demo: DemoLambda, written: str, due: str) -> None:
    r = client.json("/scheduler/schedule", {"url": demo.url + "/ok", "dateTime": written})
    assert r.status_code == 201, r.text
    assert r.json()["due"] == due


def test_a_multipart_form(client: Client, demo: DemoLambda) -> None:
    """What a browser's FormData sends."""
    fields = {"taskName": (None, "from FormData"), "taskURL": (None, demo.url + "/ok"), "delay": (None, "3600000"),
              "checkbox0": (None, "on"), "key0": (None, "region"), "value0": (None, "eu")}  # fmt: skip
    r = client.s.post(client.url + "/scheduler/schedule", files=fields, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["displayName"] == "from FormData" and r.json()["spec"]["invoke"]["query"] == {
        "region": "eu"
    }
    r = client.s.post(client.url + "/orchestrator/orchestrate", timeout=30,
                      files=[("taskUrls[]", (None, demo.url + "/ok?a")), ("taskUrls[]", (None, demo.url + "/ok?b"))])  # fmt: skip
    assert r.status_code == 201, r.text
    assert [t["url"] for t in r.json()["spec"]["tasks"]] == [demo.url + "/ok?a", demo.url + "/ok?b"]
    r = client.s.post(client.url + "/scheduler/schedule", files={"url": ("x.txt", b"http://a/b")}, timeout=30)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "url", "a file is not a field"


def test_php_and_jquery_style_lists_and_objects_in_forms(client: Client, demo: DemoLambda) -> None:
    r = client.s.post(client.url + "/orchestrator/orchestrate", timeout=30,
                      data=f"taskUrls[]={demo.url}/ok?one&taskUrls[]={demo.url}/ok?two&initialDelay=3600000",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert [t["url"] for t in r.json()["spec"]["tasks"]] == [demo.url + "/ok?one", demo.url + "/ok?two"]
    r = client.form("/scheduler/schedule", {"url": demo.url + "/ok", "delay": "3600000", "params[region]": "eu", "params[mode]": "full"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["invoke"]["query"] == {"region": "eu", "mode": "full"}
    r = client.form("/orchestrator/orchestrate", {"tasks[0][url]": demo.url + "/ok?x", "tasks[0][method]": "POST", "tasks[1][url]": demo.url + "/ok?y", "delay": "3600000"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert [(t["url"], t["method"]) for t in r.json()["spec"]["tasks"]] == [(demo.url + "/ok?x", "POST"), (demo.url + "/ok?y", "GET")]  # fmt: skip


def test_lists_by_page_number(client: Client, demo: DemoLambda) -> None:
    ids = [client.json("/scheduler/schedule", {"url": demo.url + "/ok", "delay": 3_600_000}).json()["id"] for _ in range(5)]  # fmt: skip
    newest = list(reversed(ids))
    pages = [client.get(f"/scheduler/retrieve-tasks?taskState=scheduled&limit=2&page={n}").json() for n in (1, 2, 3, 4)]  # fmt: skip
    assert [[t["id"] for t in p["tasks"]] for p in pages] == [newest[:2], newest[2:4], newest[4:], []]
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    by_form = client.form("/scheduler/retrieve-tasks", {"taskInstance": "scheduled", "limit": "2", "page": "2"}).json()  # fmt: skip
    assert [t["id"] for t in by_form["tasks"]] == newest[2:4]
    r = client.get("/scheduler/retrieve-tasks?page=0")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "page"
    r = client.get(f"/scheduler/retrieve-tasks?page=2&cursor={ids[0]}")
    assert r.status_code == 422 and "not both" in r.json()["details"][0]["message"]
