"""The REST API on waitress with the real store: seed clients, users, errors, specs, CLI verbs."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from falcon import inspect

from helpers import wait_until
from lambdaop.api.openapi import openapi_document
from lambdaop.cli.main import main
from lambdaop.core.errors import StateDirLocked
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.tools.demo import DemoLambda


class Api:
    def __init__(self, runtime: Runtime, token: str) -> None:
        self.runtime = runtime
        self.url = runtime.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.session.delete(self.url + path, timeout=30, **kw)

    def final(self, path: str, timeout: float = 20) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = self.get(path).json()
            return body if body["state"] in ("completed", "failed", "cancelled") else None

        return wait_until(done, timeout, what=path)


@pytest.fixture
def api(make_runtime) -> Api:
    runtime = make_runtime()
    assert runtime.admin_token
    return Api(runtime, runtime.admin_token)


@pytest.fixture
def bob(api: Api) -> Api:
    return Api(api.runtime, api.runtime.users.add("bob"))


def iso_in(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


# ----- clients as each earlier implementation sent them


def test_t1_html_form_with_date_and_time_fields(api: Api, demo: DemoLambda) -> None:
    now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    form = {
        "URL": demo.url + "/flaky/t1?fails=1",
        "datefield": now.strftime("%Y-%m-%d"),
        "timefield": now.strftime("%H:%M"),  # this minute, in Kolkata: due now
        "timezone": "Asia/Kolkata",
        "retriesCount": "2",
        "timeDelayBetweenRetries": "200",
    }
    r = api.post("/scheduler/schedule", data=form)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["taskId"] == body["id"] and body["state"] == "scheduled"
    expected = now.replace(second=0, microsecond=0).astimezone(dt.UTC)
    assert dt.datetime.fromisoformat(body["due"].replace("Z", "+00:00")) == expected
    assert body["spec"]["retries"] == 2 and body["spec"]["retryDelay"] == "200ms"
    done = api.final(f"/tasks/{body['id']}")
    assert done["state"] == "completed" and [a["status"] for a in done["attempts"]] == [500, 200]


def test_t8_json_orchestration(api: Api, demo: DemoLambda) -> None:
    r = api.post(
        "/orchestrator/orchestrate",
        json={
            "taskUrls": [demo.url + "/ok?t1", demo.url + "/ok?t2"],
            "conditionCheckTaskUrl": demo.url + "/flaky/check?fails=1",
            "initialDelay": 100,
            "timeDelayForConditionCheck": 100,
            "conditionCheckRetries": 2,
            "timeDelayBetweenRetries": 100,
            "fallbackTaskUrl": demo.url + "/ok?fallback",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["taskSetId"] == body["id"]
    done = api.final(f"/tasksets/{body['id']}")
    assert done["state"] == "completed"
    assert [a["step"] for a in done["attempts"]] == ["task:0", "check:0", "check:0", "task:1"]


def test_comma_separated_tasks_and_plain_url_at(api: Api, demo: DemoLambda) -> None:
    r = api.post("/orchestrator/orchestrate", data={"tasksURL": f"{demo.url}/ok?a, {demo.url}/ok?b"})
    assert r.status_code == 201, r.text
    assert api.final(f"/tasksets/{r.json()['id']}")["state"] == "completed"
    r = api.post(
        "/scheduler/schedule", json={"url": demo.url + "/ok?plain", "at": iso_in(0.3), "name": "plain"}
    )
    assert r.status_code == 201 and r.json()["displayName"] == "plain"
    assert r.json()["name"] == f"plain-{r.json()['id']}", "a label; the object's name is made unique"
    assert api.final(f"/tasks/{r.json()['id']}")["state"] == "completed"
    assert {c.query for c in demo.calls("/ok")} == {"a", "b", "plain"}


def test_invalid_requests_name_every_field(api: Api) -> None:
    r = api.post(
        "/scheduler/schedule", json={"url": "ftp://x", "bogus": 1, "retries": -1, "at": "next tuesday"}
    )
    assert r.status_code == 422
    fields = {d["field"]: d["message"] for d in r.json()["details"]}
    assert set(fields) == {"url", "bogus", "retries", "at"}, fields
    assert "ISO 8601" in fields["at"] and "http" in fields["url"]
    r = api.post("/scheduler/schedule", json={})
    assert [d["field"] for d in r.json()["details"]] == ["url"], "a missing URL is said once"
    r = api.post("/orchestrator/orchestrate", json={"tasks": [], "conditionCheckUrl": "nope"})
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["details"]} == {"tasks", "conditionCheckUrl"}


# ----- modify and cancel in every state


def test_modify_and_cancel_answers(api: Api, demo: DemoLambda) -> None:
    later = api.post("/scheduler/schedule", json={"url": demo.url + "/ok?later", "delay": 3_600_000}).json()[
        "id"
    ]
    r = api.post("/scheduler/modify", json={"taskId": later, "at": iso_in(7200)})
    assert r.status_code == 200 and r.json()["modified"] is True
    r = api.post("/scheduler/modify", data={"task_id": later, "delay": "200"})
    assert r.status_code == 200
    done = api.final(f"/tasks/{later}")
    assert done["state"] == "completed"
    r = api.post("/scheduler/modify", json={"id": later, "delay": 1000})
    assert r.status_code == 409 and r.json()["modified"] is False and "completed" in r.json()["reason"]
    r = api.post("/scheduler/cancel", json={"Taskid": later})
    assert r.status_code == 409 and r.json() | {"cancelled": False} == r.json() and r.json()["reason"]
    other = api.post("/scheduler/schedule", json={"url": demo.url + "/ok?never", "delay": 3_600_000}).json()[
        "id"
    ]
    r = api.post("/scheduler/cancel", data={"taskId": other})
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert api.get(f"/tasks/{other}").json()["state"] == "cancelled"
    assert api.post("/scheduler/cancel", json={"taskId": "nope"}).status_code == 404
    assert api.post("/scheduler/modify", json={"taskId": "nope", "delay": 5}).status_code == 404
    ts = api.post(
        "/orchestrator/orchestrate", json={"tasks": [demo.url + "/ok"], "initialDelay": 3_600_000}
    ).json()
    assert api.post("/scheduler/cancel", json={"taskId": ts["id"]}).status_code == 404, "not a Task"
    r = api.post("/orchestrator/modify", json={"taskId": ts["id"], "delay": 7_200_000})
    assert r.status_code == 200 and r.json()["modified"] is True and r.json()["taskSet"]["id"] == ts["id"]
    assert api.post("/scheduler/modify", json={"taskId": ts["id"], "delay": 5}).status_code == 404, (
        "not a Task"
    )
    assert api.post("/orchestrator/cancel", json={"taskId": ts["id"]}).json()["cancelled"] is True
    r = api.post("/orchestrator/modify", json={"taskId": ts["id"], "delay": 5})
    assert r.status_code == 409 and "cancelled" in r.json()["reason"]


def test_concurrent_cancels_racing_the_due_time(api: Api, demo: DemoLambda) -> None:
    """200 cancels from 0.5 s before the due time to 0.1 s after: true and never called, or false and called."""
    due = time.time() + 4.0
    at = dt.datetime.fromtimestamp(due, dt.UTC).isoformat()
    specs = "---\n".join(
        f"kind: Task\nmetadata: {{name: r{i}}}\nspec: {{invoke: '{demo.url}/ok?i={i}', at: '{at}'}}\n"
        for i in range(200)
    )
    applied = api.post("/specs", data=specs, headers={"Content-Type": "application/yaml"}).json()["results"]
    ids = [r["id"] for r in sorted(applied, key=lambda r: int(r["name"][1:]))]
    assert time.time() < due - 0.6, "the Tasks were created in time for the race"
    answers: dict[str, int] = {}
    barrier = threading.Barrier(200)

    def cancel(i: int, oid: str) -> None:
        session = requests.Session()
        session.headers.update(api.session.headers)
        barrier.wait()
        time.sleep(max(0.0, due - 0.5 + i * 0.003 - time.time()))  # 0.5 s before to 0.1 s after
        answers[oid] = session.post(
            api.url + "/scheduler/cancel", json={"taskId": oid}, timeout=30
        ).status_code

    threads = [threading.Thread(target=cancel, args=(i, oid)) for i, oid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    states = {}
    for oid in ids:
        states[oid] = api.final(f"/tasks/{oid}")["state"]
    called = {c.query for c in demo.calls("/ok")}
    for i, oid in enumerate(ids):
        was_called = f"i={i}" in called
        assert was_called != (states[oid] == "cancelled"), (oid, states[oid], was_called)
        assert answers[oid] == (200 if states[oid] == "cancelled" else 409)
    cancelled = sum(answers[o] == 200 for o in ids)
    print(f"{cancelled} cancelled, {200 - cancelled} called")


# ----- users


def test_users_see_only_their_own_objects(api: Api, bob: Api, demo: DemoLambda) -> None:
    mine = api.post("/scheduler/schedule", json={"url": demo.url + "/ok", "delay": 3_600_000}).json()["id"]
    theirs = bob.post(
        "/orchestrator/orchestrate", json={"tasks": [demo.url + "/ok"], "initialDelay": 3_600_000}
    ).json()["id"]
    bobs_task = bob.post("/scheduler/schedule", json={"url": demo.url + "/ok", "delay": 3_600_000}).json()[
        "id"
    ]
    for path in (f"/tasks/{mine}",):
        assert bob.get(path).status_code == 404
    assert api.get(f"/tasksets/{theirs}").status_code == 404
    assert bob.post("/scheduler/cancel", json={"taskId": mine}).status_code == 404
    assert bob.post("/scheduler/modify", json={"taskId": mine, "delay": 5}).status_code == 404
    assert api.post("/orchestrator/cancel", json={"taskId": theirs}).status_code == 404
    assert [t["id"] for t in api.get("/scheduler/retrieve-tasks?taskState=scheduled").json()["tasks"]] == [
        mine
    ]
    assert [t["id"] for t in bob.get("/scheduler/retrieve-tasks?taskState=scheduled").json()["tasks"]] == [
        bobs_task
    ]
    everybody = api.get("/scheduler/retrieve-tasks?taskState=All").json()
    assert {t["id"] for t in everybody["tasks"]} == {mine, bobs_task}
    assert everybody["counts"]["scheduled"] == 2
    assert api.get("/scheduler/retrieve-tasks").json()["counts"] == {"scheduled": 1}
    assert api.get(f"/tasks/{mine}").json()["state"] == "scheduled"


def test_tokens_and_login(api: Api) -> None:
    assert requests.get(api.url + "/tasks", timeout=10).status_code == 401
    r = requests.get(api.url + "/tasks", headers={"Authorization": "Bearer admin.wrong"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert requests.get(api.url + "/healthz", timeout=10).json() == {"ok": True}
    assert requests.get(api.url + "/readyz", timeout=10).status_code == 200
    api.runtime.users.set_password("admin", "correct horse")
    bad = requests.post(api.url + "/auth/login", json={"name": "admin", "password": "nope"}, timeout=10)
    assert bad.status_code == 401
    good = requests.post(
        api.url + "/auth/login", data={"name": "admin", "password": "correct horse"}, timeout=10
    )
    token = good.json()["token"]
    me = requests.get(api.url + "/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.json() == {"name": "admin", "admin": True}


# ----- errors


def test_error_statuses(api: Api) -> None:
    r = api.post("/scheduler/schedule", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = api.post(
        "/scheduler/schedule", data=b"x" * (1024 * 1024 + 10), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = api.post("/scheduler/schedule", data=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    r = api.get("/scheduler/retrieve-tasks?taskState=bogus")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "taskState"
    assert api.get("/tasks?limit=0").status_code == 422
    assert api.get("/no/such/route").status_code == 404
    assert set(api.get("/no/such/route").json()) == {"error", "message", "details"}
    assert api.get("/no/such/route").json()["message"] == (
        "no route /no/such/route: the routes are listed at /docs (and /openapi.json)"
    )


def test_a_json_body_sent_as_a_form_says_its_content_type_is_missing(api: Api) -> None:
    """`curl -d '{"url": …}'` sends JSON as application/x-www-form-urlencoded."""
    body = json.dumps({"url": "http://127.0.0.1:9/ok", "delay": 600_000})
    r = api.post(
        "/scheduler/schedule", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415, r.text
    assert r.json()["details"] == [] and "Content-Type: application/json" in r.json()["message"]
    assert body not in r.text, "the JSON text is not taken for a field name"
    r = api.post("/scheduler/schedule", data=body.encode(), headers={"Content-Type": ""})
    assert r.status_code == 201, "with no Content-Type at all, a JSON object is read as JSON"


def test_the_orchestrator_list_says_success_in_its_rows_and_its_counts(api: Api, demo: DemoLambda) -> None:
    oid = api.post("/orchestrator/orchestrate", json={"tasks": [demo.url + "/ok"]}).json()["id"]
    wait_until(lambda: api.get(f"/tasksets/{oid}").json()["state"] == "completed")
    body = api.get("/orchestrator/retrieve-tasks?taskState=success").json()
    assert [t["state"] for t in body["taskSets"]] == ["success"]
    assert body["counts"].get("success") == 1 and "completed" not in body["counts"], "one word in one answer"
    assert api.get("/tasksets").json()["counts"].get("completed") == 1


def test_modify_moves_the_time_in_the_spec_too(api: Api, demo: DemoLambda) -> None:
    task = api.post("/scheduler/schedule", json={"url": demo.url + "/ok", "delay": 3_600_000}).json()
    assert "after" in task["spec"]
    new = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).replace(microsecond=0)
    moved = api.post("/scheduler/modify", json={"taskId": task["id"], "at": new.isoformat()}).json()["task"]
    stored = api.get(f"/tasks/{task['id']}").json()
    for view in (moved, stored):
        assert view["spec"]["at"] == new.isoformat().replace("+00:00", "Z"), view["spec"]
        assert view["due"] == new.isoformat().replace("+00:00", ".000Z")
        assert "after" not in view["spec"]
    taskset = api.post("/orchestrator/orchestrate", json={"tasks": [demo.url + "/ok"], "initialDelay": 3_600_000}).json()  # fmt: skip
    api.post("/orchestrator/modify", json={"taskId": taskset["id"], "at": new.isoformat()})
    spec = api.get(f"/tasksets/{taskset['id']}").json()["spec"]
    assert spec["at"] == new.isoformat().replace("+00:00", "Z") and "initialDelay" not in spec


def test_a_failed_task_names_its_step_and_its_notification_says_post(api: Api, demo: DemoLambda) -> None:
    spec = (
        f"kind: Task\nmetadata: {{name: doomed}}\nspec:\n  invoke: {demo.url}/fail\n"
        f"  onFailure: {{invoke: {demo.url}/ok?alert}}\n"
    )
    oid = api.post("/specs", data=spec, headers={"Content-Type": "application/yaml"}).json()["results"][0][
        "id"
    ]
    done = api.final(f"/tasks/{oid}")
    assert done["state"] == "failed" and done["failedStep"] == "task"
    notify = done["spec"]["onFailure"]["invoke"]
    assert notify["url"] == f"{demo.url}/ok?alert"
    assert "method" not in notify, "no GET shown for a call that is always a JSON POST"


def test_the_api_reference_page_needs_no_token(api: Api) -> None:
    page = requests.get(api.url + "/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "/ui/vendor/redoc.standalone.js" in page.text and "/openapi.json" in page.text
    assert "https://" not in page.text.split("<body>")[1].split("-->")[1], "nothing from elsewhere"
    script = requests.get(api.url + "/ui/vendor/redoc.standalone.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000
    assert requests.get(api.url + "/ui/vendor/REDOC-LICENSE", timeout=10).text.startswith("The MIT License")
    assert api.get("/docs").status_code == 200, "with a token too"


# ----- specs


SPECS = """\
kind: Task
metadata: {name: one}
spec:
  invoke: URL/ok?one
  after: 1h
---
kind: TaskSet
metadata: {name: two}
spec:
  initialDelay: 1h
  tasks: [URL/ok?two]
"""


def test_apply_specs_update_and_delete(api: Api, demo: DemoLambda) -> None:
    text = SPECS.replace("URL", demo.url)
    headers = {"Content-Type": "application/yaml"}
    r = api.post("/specs", data=text, headers=headers)
    assert r.status_code == 200, r.text
    assert [(x["kind"], x["name"], x["action"]) for x in r.json()["results"]] == [
        ("Task", "one", "created"),
        ("TaskSet", "two", "created"),
    ]
    again = api.post("/specs", data=text, headers=headers).json()["results"]
    assert [x["action"] for x in again] == ["unchanged", "unchanged"]
    moved = api.post("/specs", data=text.replace("after: 1h", "after: 200ms"), headers=headers).json()[
        "results"
    ]
    assert [x["action"] for x in moved] == ["rescheduled", "unchanged"]
    task_id = moved[0]["id"]
    done = api.final(f"/tasks/{task_id}")
    assert done["state"] == "completed" and done["generation"] == 2
    r = api.delete("/specs/TaskSet/two")
    assert (
        r.status_code == 200 and r.json()["object"]["state"] == "cancelled" and r.json()["object"]["pruned"]
    )
    assert api.delete("/specs/Task/none").status_code == 404
    bad = api.post("/specs", data=text.replace("after: 1h", "after: -1h"), headers=headers)
    assert bad.status_code == 422
    (detail,) = bad.json()["details"]
    assert (detail["document"], detail["line"], detail["field"]) == (0, 5, "spec.after")
    dup = api.post("/specs", data=text + "---\n" + text.split("---\n")[0], headers=headers)
    assert (
        dup.status_code == 422 and "is defined more than once (document 1 (line 1)" in dup.json()["message"]
    )
    as_json = api.post(
        "/specs", json={"kind": "Task", "metadata": {"name": "j"}, "spec": {"invoke": demo.url + "/ok"}}
    )
    assert as_json.status_code == 200 and as_json.json()["results"][0]["action"] == "created"


def test_lists_page_newest_first(api: Api, demo: DemoLambda) -> None:
    ids = [
        api.post("/scheduler/schedule", json={"url": demo.url + "/ok", "delay": 3_600_000}).json()["id"]
        for _ in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, "taskState": "scheduled", **({"cursor": cursor} if cursor else {})}
        body = api.get("/scheduler/retrieve-tasks", params=params).json()
        seen += [t["id"] for t in body["tasks"]]
        cursor = body["next"]
        if not cursor:
            break
    assert seen == list(reversed(ids))


def test_lists_take_a_label_selector_and_a_name_prefix(api: Api, demo: DemoLambda) -> None:
    docs = [
        ("billing-nightly", "team: billing\n    env: prod"),
        ("billing-hourly", "team: billing\n    env: dev"),
        ("web-hourly", "team: web"),
    ]
    text = "---\n".join(
        f"kind: Task\nmetadata:\n  name: {n}\n  labels:\n    {lab}\nspec:\n  invoke: {demo.url}/ok\n  after: 1h\n"
        for n, lab in docs
    )
    assert api.post("/specs", data=text, headers={"Content-Type": "application/yaml"}).status_code == 200

    def names(**params: Any) -> list[str]:
        body = api.get("/tasks", params=params).json()
        return [t["name"] for t in body["tasks"]]

    assert names(labelSelector="team=billing") == ["billing-hourly", "billing-nightly"]
    assert names(labelSelector="team=billing,env!=dev") == ["billing-nightly"]
    assert names(labelSelector="team in (web)", state="scheduled") == ["web-hourly"]
    first = api.get("/tasks", params={"prefix": "billing-", "limit": 1}).json()
    assert [t["name"] for t in first["tasks"]] == ["billing-hourly"] and first[
        "next"
    ] == "name:billing-hourly"
    rest = api.get("/tasks", params={"prefix": "billing-", "limit": 1, "cursor": first["next"]}).json()
    assert [t["name"] for t in rest["tasks"]] == ["billing-nightly"]
    bad = api.get("/tasks", params={"labelSelector": "team=(billing"})
    assert bad.status_code == 422
    (problem,) = bad.json()["details"]
    assert problem["field"] == "labelSelector" and "key=value" in problem["message"]


# ----- OpenAPI


def test_openapi_covers_every_route(api: Api) -> None:
    document = requests.get(api.url + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    app = api.runtime.app
    routes = {r.path for r in inspect.inspect_routes(app)}
    assert routes <= set(document["paths"]), routes - set(document["paths"])
    for info in inspect.inspect_routes(app):
        methods = {m.method.lower() for m in info.methods if m.internal is False}
        documented = set(document["paths"].get(info.path, {}))
        assert methods <= documented, (info.path, methods - documented)
    assert document == json.loads(json.dumps(openapi_document()))
    from lambdaop.api.objects import LIST_PARAMS

    for path in ("/tasks", "/tasksets", "/scheduler/retrieve-tasks", "/orchestrator/retrieve-tasks"):
        named = {p["name"] for p in document["paths"][path]["get"]["parameters"]}
        assert set(LIST_PARAMS) <= named, (path, set(LIST_PARAMS) - named)


# ----- the Python client and CLI verbs


def test_cli_verbs(api: Api, demo: DemoLambda, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "a.yaml").write_text(SPECS.replace("URL", demo.url))
    token = api.session.headers["Authorization"].split()[1]
    common = ["--server", api.url, "--token", token]
    assert main(["apply", "-f", str(folder), *common]) == 0
    out = capsys.readouterr().out
    assert "Task/one created" in out and "TaskSet/two created" in out
    assert main(["get", "tasks", "--state", "scheduled", *common]) == 0
    listing = capsys.readouterr().out
    assert "one" in listing and "scheduled" in listing
    assert main(["get", "tasks", "-o", "wide", *common]) == 0
    task_id = capsys.readouterr().out.splitlines()[1].split()[0]
    assert main(["describe", "task", task_id, *common, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "one"
    assert main(["describe", "task", "one", "-o", "yaml", *common]) == 0, "by name too"
    assert "name: one" in capsys.readouterr().out
    assert main([*common, "modify", "task", "one", "--after", "2h"]) == 0, "global options before the verb"
    assert "Task/one now due" in capsys.readouterr().out
    assert main(["cancel", "task", "one", *common]) == 0
    assert "Task/one cancelled" in capsys.readouterr().out
    assert main(["cancel", "task", task_id, *common]) == 1
    assert "only a scheduled object" in capsys.readouterr().err
    assert main(["delete", "taskset", "two", *common]) == 0
    assert "TaskSet/two deleted" in capsys.readouterr().out
    assert main(["get", "tasks", "--server", api.url, "--token", "bad.token"]) == 1
    assert "the server refused the token" in capsys.readouterr().err


def test_user_commands_with_and_without_a_running_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    assert main(["user", "--state-dir", str(state), "add", "carol"]) == 0  # starts the embedded store itself
    out, err = capsys.readouterr()
    carol = out.strip()
    assert carol.startswith("carol.")
    assert "created user admin first; its API token is in" in err, "the first admin is never lost"
    assert (state / "admin.token").read_text().startswith("admin.")
    runtime = Runtime(Config(state_dir=state, specs_dir=None, port=0))  # the embedded store, held by serve
    runtime.start()
    try:
        assert runtime.admin_token is None, "an admin exists already"
        with pytest.raises(StateDirLocked, match="in use by a running lambdaop"):
            Runtime(Config(state_dir=state, specs_dir=None, port=0)).start()
        assert main(["user", "--state-dir", str(state), "add", "dave", "--admin"]) == 0
        dave = capsys.readouterr().out.strip()
        monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
        assert main(["user", "--state-dir", str(state), "passwd", "dave", "--password-stdin"]) == 0
        assert main(["user", "--state-dir", str(state), "list"]) == 0
        assert capsys.readouterr().out.splitlines()[-3:] == [
            "admin\tadmin\t1 token(s)",
            "carol\tuser\t1 token(s)",
            "dave\tadmin\t1 token(s)",
        ]
        for token in (carol, dave):
            me = requests.get(
                runtime.url + "/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert me.status_code == 200
        login = requests.post(
            runtime.url + "/auth/login", json={"username": "dave", "password": "s3cret-pass"}, timeout=10
        )
        assert login.status_code == 200 and login.json()["token"].startswith("s.")
        assert main(["user", "--state-dir", str(state), "add", "carol"]) == 2
        assert "already exists" in capsys.readouterr().err
    finally:
        runtime.stop()


def test_a_busy_port_is_a_clear_error_and_releases_everything(make_runtime, tmp_path: Path) -> None:
    import socket

    from lambdaop.core.errors import StartupFailed
    from lambdaop.store.embedded import StateDir

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupFailed, match=f"cannot listen on 127.0.0.1:{port}.*pass --port"):
            make_runtime(port=port)
    state = StateDir(tmp_path / "state0")
    state.acquire()  # the failed start let go of its state folder
    state.release()
