"""Trust inside the service: the store's credential, the state folder, users, sessions, tokens,
what other users see, and who manages an object. Real store, real HTTP, real processes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import stat
import statistics
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest
import requests
from pymongo.errors import OperationFailure

from helpers import wait_until
from lambdaop.cli.main import main
from lambdaop.core.errors import Unauthorized
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import MongoStore, start_embedded
from lambdaop.tools.demo import DemoLambda


def session(runtime: Runtime, token: str | None) -> requests.Session:
    s = requests.Session()
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def test_the_embedded_store_refuses_connections_without_its_credential(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "state")
    start_embedded(server)
    try:
        anonymous: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.anonymous_uri, serverSelectionTimeoutMS=5000)  # fmt: skip
        with pytest.raises(OperationFailure):
            anonymous.lambdaop.app.insert_one({"_id": "mallory", "admin": True, "tokens": []})
        anonymous.close()
        secret = server.secret_file
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "state" / "store.uri").stat().st_mode) == 0o600
        store = MongoStore(server.uri, embedded=True)
        store.users.insert_one({"_id": "ok"})
        store.close()
    finally:
        server.stop()


def test_the_admin_token_goes_to_a_file_once_and_never_to_the_log(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    with Runtime(Config(state_dir=state, specs_dir=None, port=0)) as runtime:
        token = (state / "admin.token").read_text().strip()
        assert token == runtime.admin_token and token.startswith("admin.")
        assert stat.S_IMODE((state / "admin.token").stat().st_mode) == 0o600
        assert session(runtime, token).get(runtime.url + "/auth/me", timeout=10).json() == {"name": "admin", "admin": True}  # fmt: skip
    assert token not in caplog.text and token.split(".", 1)[1] not in caplog.text
    with Runtime(Config(state_dir=state, specs_dir=None, port=0)) as again:
        assert again.admin_token is None


def test_a_relative_and_an_absolute_state_folder_are_the_same_store(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with Runtime(Config(state_dir=Path(".lambdaop"), specs_dir=None, port=0)) as first:
        first.users.add("carol")
    with Runtime(Config(state_dir=tmp_path / ".lambdaop", specs_dir=None, port=0)) as second:
        assert second.store.get_user("carol") is not None
    assert (tmp_path / ".lambdaop" / "db").is_dir() and not (tmp_path / ".lambdaop" / ".lambdaop").exists()


def test_a_database_nested_by_an_earlier_version_is_moved_home(tmp_path: Path) -> None:
    state = tmp_path / ".lambdaop"
    with Runtime(Config(state_dir=state, specs_dir=None, port=0)) as first:
        first.users.add("erin")
    nested = state / ".lambdaop" / "db"
    nested.parent.mkdir()
    shutil.move(str(state / "db"), str(nested))  # where an earlier version put it
    with Runtime(Config(state_dir=state, specs_dir=None, port=0)) as second:
        assert second.store.get_user("erin") is not None
    assert (state / "db" / "WiredTiger").exists() and not nested.exists()


@pytest.fixture
def admin(make_runtime: Any) -> tuple[Runtime, requests.Session]:
    runtime = make_runtime()
    return runtime, session(runtime, runtime.admin_token)


def test_signing_in_never_revokes_a_token_and_sessions_end(admin: Any) -> None:
    runtime, s = admin
    ci_token = s.post(runtime.url + "/users", json={"name": "ci"}, timeout=10).json()["token"]
    runtime.users.set_password("ci", "correct horse")
    sessions = [
        requests.post(
            runtime.url + "/auth/login", json={"username": "ci", "password": "correct horse"}, timeout=10
        ).json()["token"]  # fmt: skip
        for _ in range(55)
    ]
    assert all(t.startswith("s.") for t in sessions)
    assert session(runtime, ci_token).get(runtime.url + "/auth/me", timeout=10).status_code == 200, "the 51st sign-in left the CI token alone"  # fmt: skip
    web = session(runtime, sessions[-1])
    assert web.get(runtime.url + "/auth/me", timeout=10).json()["name"] == "ci"
    assert web.post(runtime.url + "/auth/logout", timeout=10).status_code == 200
    runtime.users._cache.clear()
    assert web.get(runtime.url + "/auth/me", timeout=10).status_code == 401


def test_failed_sign_ins_are_limited_per_user_and_address(admin: Any) -> None:
    runtime, s = admin
    runtime.users.set_password("admin", "the right one")
    answers = [
        requests.post(
            runtime.url + "/auth/login", json={"name": "admin", "password": f"wrong {i}"}, timeout=10
        )
        for i in range(30)
    ]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    assert answers[29].status_code == 429 and int(answers[29].headers["Retry-After"]) >= 1
    right = requests.post(
        runtime.url + "/auth/login", json={"name": "admin", "password": "the right one"}, timeout=10
    )
    assert right.status_code == 429, "even the right password waits out the block"


def test_sign_in_takes_the_same_time_whether_or_not_the_user_exists(admin: Any) -> None:
    runtime, _ = admin
    runtime.users.set_password("admin", "the right one")

    def took(name: str) -> float:
        t0 = time.perf_counter()
        with contextlib.suppress(Unauthorized):
            runtime.users.login(name, "wrong password")
        runtime.users.guard.succeeded([f"user:{name}"])  # keep the limit out of the timing
        return time.perf_counter() - t0

    pairs = [(took("admin"), took("nobody-like-this")) for _ in range(9)]  # interleaved: the same load
    known, unknown = statistics.median(k for k, _ in pairs), statistics.median(u for _, u in pairs)
    assert 0.5 < known / unknown < 2.0, f"{known * 1000:.1f} ms vs {unknown * 1000:.1f} ms"


def test_tokens_are_listed_revoked_and_users_removed_by_admins_only(admin: Any, capsys: Any) -> None:
    runtime, s = admin
    bob_token = s.post(runtime.url + "/users", json={"name": "bob"}, timeout=10).json()["token"]
    bob = session(runtime, bob_token)
    assert bob.get(runtime.url + "/users", timeout=10).status_code == 403
    assert (
        bob.post(runtime.url + "/users", json={"name": "eve", "admin": True}, timeout=10).status_code == 403
    )
    second = bob.post(runtime.url + "/users/bob/tokens", json={"expiresIn": "30d"}, timeout=10).json()[
        "token"
    ]
    listed = bob.get(runtime.url + "/users/bob/tokens", timeout=10).json()["tokens"]
    assert len(listed) == 2 and listed[1]["expires"] and all(len(t["prefix"]) == 8 for t in listed)
    prefix = second.split(".", 1)[1][:8]
    assert bob.delete(runtime.url + f"/users/bob/tokens/{prefix}", timeout=10).json() == {"revoked": 1}
    assert session(runtime, second).get(runtime.url + "/auth/me", timeout=10).status_code == 401
    assert bob.get(runtime.url + "/users/admin/tokens", timeout=10).status_code == 403
    assert s.delete(runtime.url + "/users/bob", timeout=10).json() == {"removed": "bob"}
    assert bob.get(runtime.url + "/auth/me", timeout=10).status_code == 401


def test_other_users_see_no_secrets_and_owners_see_theirs_masked(admin: Any, demo: DemoLambda) -> None:
    runtime, s = admin
    bob = session(runtime, s.post(runtime.url + "/users", json={"name": "bob"}, timeout=10).json()["token"])
    host = demo.url.removeprefix("http://")
    secret_url = f"http://user:hunter2@{host}/ok?api_key=k3y"
    created = s.post(
        runtime.url + "/scheduler/schedule",
        json={"url": secret_url, "headers": {"Authorization": "Bearer xyz-secret", "X-Trace": "visible"}, "body": {"card": "4111"}},
        timeout=10,
    ).json()  # fmt: skip
    oid = created["id"]
    wait_until(lambda: s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()["state"] == "completed")
    for path in ("/scheduler/retrieve-tasks?taskState=All", "/tasks?taskState=All", "/scheduler/retrieve-tasks?taskInstance=all"):  # fmt: skip
        (seen,) = [t for t in bob.get(runtime.url + path, timeout=10).json()["tasks"] if t["id"] == oid]
        assert seen["redacted"] and set(seen) <= {"id", "kind", "name", "displayName", "owner", "state", "generation", "created", "updated", "due", "started", "finished", "calls", "attempt", "inFlight", "taskId", "suspended", "redacted"}  # fmt: skip
        text = repr(seen)
        assert "hunter2" not in text and "k3y" not in text and "xyz-secret" not in text and "4111" not in text
    assert bob.get(runtime.url + f"/tasks/{oid}", timeout=10).status_code == 404
    mine = s.get(runtime.url + f"/tasks/{oid}", timeout=10).json()
    assert mine["spec"]["invoke"]["headers"] == {"Authorization": "***", "X-Trace": "visible"}
    assert mine["url"] == f"http://user:***@{host}/ok?api_key=k3y"
    assert "hunter2" not in repr(mine) and "xyz-secret" not in repr(mine)


def test_a_folder_managed_object_changes_through_the_api_only_when_forced(make_runtime, demo: DemoLambda, tmp_path: Path, capsys: Any) -> None:  # fmt: skip
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "jobs.yaml").write_text(
        f"kind: Task\nmetadata: {{name: nightly}}\nspec: {{invoke: '{demo.url}/ok', after: 1h}}\n"
    )
    runtime = make_runtime(specs_dir=specs)
    s = session(runtime, runtime.admin_token)
    wait_until(lambda: runtime.store.find_by_name("admin", "Task", "nightly"))
    changed = f"kind: Task\nmetadata: {{name: nightly}}\nspec: {{invoke: '{demo.url}/ok?v2', after: 2h}}\n"
    r = s.post(runtime.url + "/specs", data=changed, headers={"Content-Type": "application/yaml"}, timeout=10)
    assert r.status_code == 409 and "jobs.yaml" in r.json()["message"] + repr(r.json()["details"])
    path = tmp_path / "changed.yaml"
    path.write_text(changed)
    assert main(["apply", "-f", str(path), "--server", runtime.url, "--token", runtime.admin_token]) == 1
    assert "managed by the specs folder" in capsys.readouterr().err
    assert s.delete(runtime.url + "/specs/Task/nightly", timeout=10).status_code == 409
    r = s.post(
        runtime.url + "/specs?force=true",
        data=changed,
        headers={"Content-Type": "application/yaml"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["results"][0]["action"] == "rescheduled"
    doc = runtime.store.find_by_name("admin", "Task", "nightly")
    assert doc is not None and doc["manager"] == "api:admin"
    (specs / "jobs.yaml").unlink()  # the folder no longer prunes what the API took over
    status_gone = specs / "jobs.status.yaml"
    wait_until(lambda: not status_gone.exists(), timeout=10)
    time.sleep(1.0)
    doc = runtime.store.find_by_name("admin", "Task", "nightly")
    assert doc is not None and doc["state"] == "scheduled" and not doc.get("pruned")
    assert doc["due"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=90)
