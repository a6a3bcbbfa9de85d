"""TaskSets with named steps end to end: outputs feed later steps, at a real loopback endpoint.

Each test applies specs through the real service (or the REST API, or a watched
folder of a `serve` process that is killed), runs them on the real embedded
store and checks what the demo endpoint received.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import requests

from helpers import final, serve, stored_objects, wait_until
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def sent(demo: DemoLambda, path: str) -> list[Any]:
    """The JSON bodies the endpoint received at `path`, in order."""
    return [json.loads(c.body) if c.body else None for c in demo.calls(path)]


RELEASE = """\
kind: TaskSet
metadata: {name: release, labels: {team: web}}
spec:
  steps:
    - name: build
      invoke: URL/json?id=art-7&size=12
    - name: deploy
      invoke:
        url: URL/echo
        method: POST
        body: {artifact: "${{ steps.build.output.id }}", run: "${{ run.number }}", by: "${{ object.labels.team }}"}
      retries: 1
      retryDelay: 100ms
    - name: verify
      invoke:
        url: "URL/json?artifact=${{ steps.deploy.output.body.artifact }}"
        headers: {x-build-status: "${{ steps.build.status }}"}
"""


def test_the_second_step_sends_the_id_the_first_returned(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    token = runtime.admin_token
    r = requests.post(
        runtime.url + "/specs",
        data=RELEASE.replace("URL", demo.url),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    oid = r.json()["results"][0]["id"]
    doc = final(runtime, oid)
    assert doc["state"] == "completed", doc.get("progress")
    assert sent(demo, "/echo") == [{"artifact": "art-7", "run": 1, "by": "web"}]
    (verify,) = [c for c in demo.calls("/json") if "artifact" in c.query]
    assert verify.query == "artifact=art-7" and verify.headers["x-build-status"] == "200"
    assert [(a["step"], a["ok"]) for a in doc["attempts"]] == [
        ("step:build", True),
        ("step:deploy", True),
        ("step:verify", True),
    ]
    assert doc["attempts"][2]["url"] == f"{demo.url}/json?artifact=art-7", "the history shows the URL sent"
    shown = requests.get(
        f"{runtime.url}/tasksets/{oid}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()
    assert shown["outputs"]["build"]["output"] == {"id": "art-7", "size": "12"}
    assert shown["outputs"]["deploy"]["status"] == 200 and shown["outputs"]["deploy"]["attempts"] == 1


def test_a_reference_to_a_missing_step_is_a_422_naming_the_line(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    text = RELEASE.replace("URL", demo.url).replace("steps.build.output.id", "steps.bild.output.id")
    r = requests.post(
        runtime.url + "/specs",
        data=text,
        headers={"Authorization": f"Bearer {runtime.admin_token}", "Content-Type": "application/yaml"},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    (detail,) = r.json()["details"]
    assert (detail["line"], detail["field"]) == (11, "spec.steps[1].invoke.body.artifact")
    assert (
        "names step 'bild', which does not exist (the steps are build, deploy, verify)" in detail["message"]
    )
    later = RELEASE.replace("URL", demo.url).replace("steps.build.output.id", "steps.verify.output.id")
    r = requests.post(
        runtime.url + "/specs",
        data=later,
        headers={"Authorization": f"Bearer {runtime.admin_token}", "Content-Type": "application/yaml"},
        timeout=30,
    )
    assert r.status_code == 422 and "which comes later" in r.json()["details"][0]["message"]
    assert demo.calls() == [], "nothing was applied"


def test_a_whole_string_expression_keeps_its_json_type(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: typed}}
spec:
  steps:
    - name: one
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{n: 5, list: [1, 2], flag: true}}}}
    - name: two
      invoke:
        url: '{demo.url}/echo'
        method: POST
        body:
          n: "${{{{ steps.one.output.body.n }}}}"
          list: "${{{{ steps.one.output.body.list }}}}"
          flag: "${{{{ steps.one.output.body.flag }}}}"
          text: "n=${{{{ steps.one.output.body.n }}}} of ${{{{ length(steps.one.output.body.list) }}}}"
          missing: "${{{{ steps.one.output.body.nothing }}}}"
          nested: ["${{{{ steps.one.attempts }}}}", {{deep: "${{{{ steps.one.ok }}}}"}}]
""",
    )
    assert final(runtime, oid)["state"] == "completed"
    assert sent(demo, "/echo")[1] == {
        "n": 5,
        "list": [1, 2],
        "flag": True,
        "text": "n=5 of 2",
        "missing": None,
        "nested": [1, {"deep": True}],
    }


def test_secrets_from_the_environment_never_reach_the_history(make_runtime, demo: DemoLambda) -> None:
    secret = "s3cr3t-value-42"
    runtime = make_runtime(env={"DEMO_KEY": secret})
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: keyed}}
spec:
  steps:
    - name: login
      invoke: {{url: '{demo.url}/echo', headers: {{x-api-key: {{fromEnv: DEMO_KEY}}}}}}
    - name: use
      invoke:
        url: '{demo.url}/echo'
        method: POST
        body: {{seen: "${{{{ steps.login.output.headers }}}}"}}
""",
    )
    doc = final(runtime, oid)
    assert doc["state"] == "completed"
    assert demo.calls("/echo")[0].headers["x-api-key"] == secret, "the endpoint got the key"
    assert secret not in json.dumps(doc, default=str), "neither the output nor the excerpt keeps it"
    assert json.loads(doc["outputs"]["login"]["output"])["headers"]["x-api-key"] == "[redacted]"
    assert sent(demo, "/echo")[1]["seen"]["x-api-key"] == "[redacted]", "a later step cannot read it either"


def test_outputs_are_kept_in_the_store_across_a_restart(make_runtime, demo: DemoLambda) -> None:
    first = make_runtime()
    oid = apply(
        first,
        f"""\
kind: TaskSet
metadata: {{name: restart}}
spec:
  steps:
    - name: build
      invoke: '{demo.url}/json?id=kept-9'
      conditionCheck: {{invoke: '{demo.url}/ok?check', delay: 3s}}
    - name: deploy
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{artifact: "${{{{ steps.build.output.id }}}}"}}}}
""",
    )
    wait_until(lambda: (first.store.get(oid) or {}).get("outputs"), 20, what="the build output stored")
    first.stop()
    assert not demo.calls("/echo")
    second = make_runtime()
    doc = final(second, oid, timeout=30)
    assert doc["state"] == "completed"
    assert sent(demo, "/echo") == [{"artifact": "kept-9"}]
    assert [a["step"] for a in doc["attempts"]] == ["step:build", "check:build", "step:deploy"]


def test_a_step_that_fails_runs_the_fallback_which_reads_the_outputs(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: falls}}
spec:
  steps:
    - name: build
      invoke: '{demo.url}/json?id=art-3'
    - name: deploy
      invoke: '{demo.url}/code/503'
      retries: 1
      retryDelay: 100ms
  fallback:
    invoke:
      url: '{demo.url}/echo'
      method: POST
      body: {{undo: "${{{{ steps.build.output.id }}}}", code: "${{{{ steps.deploy.status }}}}", tries: "${{{{ steps.deploy.attempts }}}}"}}
""",
    )
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    assert doc["progress"]["reason"] == "step deploy failed after 2 attempt(s): status 503"
    assert doc["progress"]["failed_step"] == "step:deploy"
    assert sent(demo, "/echo") == [{"undo": "art-3", "code": 503, "tries": 2}]


def test_an_expression_that_cannot_be_filled_in_fails_the_step(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: nowhere}}
spec:
  steps:
    - name: find
      invoke: '{demo.url}/json?where=nowhere'
    - name: go
      invoke: "${{{{ steps.find.output.where }}}}"
  fallback:
    invoke: '{demo.url}/ok?fallback'
""",
    )
    doc = final(runtime, oid)
    assert doc["state"] == "failed"
    last = doc["attempts"][1]
    assert last["step"] == "step:go" and last["status"] is None
    assert last["error"].startswith(
        "spec.steps[1].invoke.url, once filled in: expected an http:// or https:// URL"
    )
    assert [c.query for c in demo.calls("/ok")] == ["fallback"]


def test_any_answer_can_be_kept_even_keys_the_store_refuses(make_runtime, demo: DemoLambda) -> None:
    runtime = make_runtime()
    oid = apply(
        runtime,
        f"""\
kind: TaskSet
metadata: {{name: odd}}
spec:
  steps:
    - name: one
      invoke: '{demo.url}/json?%24set=1&a.b=2'
    - name: two
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{got: "${{{{ steps.one.output }}}}"}}}}
""",
    )
    doc = final(runtime, oid)
    assert doc["state"] == "completed", doc["progress"]
    assert sent(demo, "/echo") == [{"got": {"$set": "1", "a.b": "2"}}]


def test_kill_9_between_steps_the_restart_sends_the_stored_output(tmp_path: Path, demo: DemoLambda) -> None:
    state, specs, log = tmp_path / "state", tmp_path / "specs", tmp_path / "serve.log"
    specs.mkdir()
    (specs / "set.yaml").write_text(
        f"""\
kind: TaskSet
metadata: {{name: killed}}
spec:
  steps:
    - name: build
      invoke: '{demo.url}/json?id=after-kill'
    - name: wait
      invoke: '{demo.url}/sleep?ms=2500'
    - name: deploy
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{artifact: "${{{{ steps.build.output.id }}}}"}}}}
"""
    )
    first = serve(state, specs, log)
    try:
        demo.wait_for(1, "/sleep", timeout=30)  # build's output is stored: the next step has left
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = serve(state, specs, log)
    try:
        demo.wait_for(1, "/echo", timeout=40)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert sent(demo, "/echo") == [{"artifact": "after-kill"}], log.read_text()[-3000:]
    assert len(demo.calls("/json")) == 1, "build is not called again: its output came from the store"
    (doc,) = stored_objects(state)
    assert doc["state"] == "completed"
