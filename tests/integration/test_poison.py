"""Inputs that once crashed the service or stopped creations: each gets a clear 4xx and nothing stops.

Replays the findings of the "Trust, inside" review against the running service
(the API and the specs folder) and against `lambdaop validate` in a child
process, where memory is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import wait_until
from lambdaop.tools.demo import DemoLambda

NEST_BOMB = "a: " + "[" * 30000 + "]" * 30000


def alias_bomb(levels: int = 8) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


POISON = [
    {"url": "http://127.0.0.1:9/x", "headers": {"a\u0000b": "c"}},
    {"url": "http://127.0.0.1:9/x", "body": 100000000000000000000},
    {"url": "http://127.0.0.1:9/x", "body": {"$where": 1}},
    {"url": "http://127.0.0.1:9/x", "delay": 1e308},
    {"url": "http://127.0.0.1:9/x", "at": 1e20},
    {"url": "http://127.0.0.1:9/x", "retryDelay": "99999999999d"},
    {"url": "http://127.0.0.1:9/x", "at": "0001-01-01T00:00:00+14:00"},
    {"url": "http://127.0.0.1:9/x", "at": "9999-12-31T23:59:59-05:00"},
    {"url": "http://127.0.0.1:9/x", "delay": "Infinity"},
    {"url": "http://127.0.0.1:9/x", "retryDelay": "NaN"},
    {"url": "http://127.0.0.1:9/x", "datefield": "2026-11-28", "timefield": "09:00", "timezone": "A" * 300},
    {"url": "http://127.0.0.1:9/x", "name": "\ud800"},
    {"url": "http://127.0.0.1:9/x", "headers": {"x-ok": "a\r\nInjected: yes"}},
]


@pytest.fixture
def session(make_runtime) -> tuple[requests.Session, str]:
    runtime = make_runtime()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    return s, runtime.url


def test_poison_bodies_get_422_and_creation_keeps_working(session, demo: DemoLambda) -> None:
    s, url = session
    for body in POISON:
        t0 = time.monotonic()
        r = s.post(url + "/scheduler/schedule", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert r.json()["details"], r.text
        assert time.monotonic() - t0 < 5
    deep = b"[" * 100_000 + b"]" * 100_000
    r = s.post(
        url + "/scheduler/schedule", data=deep, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert r.status_code in (400, 413, 422), r.text
    r = s.post(
        url + "/scheduler/modify", json={"taskId": "6b09af07f2d2750bae606b48", "delay": "abc"}, timeout=30
    )
    assert r.status_code == 422, r.text
    r = s.post(url + "/scheduler/cancel", data='{"taskId": "\\ud800"}', headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert r.status_code == 422, r.text
    r = s.get(url + "/tasks?cursor=%ED%A0%80", timeout=30)
    assert r.status_code == 422, r.text
    # the writer survived: creations on both original routes still answer at once
    for _ in range(3):
        t0 = time.monotonic()
        r = s.post(url + "/scheduler/schedule", json={"url": demo.url + "/ok"}, timeout=30)
        assert r.status_code == 201 and time.monotonic() - t0 < 5, r.text
    r = s.post(url + "/orchestrator/orchestrate", json={"tasks": [demo.url + "/ok?s"]}, timeout=30)
    assert r.status_code == 201, r.text
    assert s.get(url + "/readyz", timeout=10).status_code == 200
    demo.wait_for(4, "/ok", timeout=30)


@pytest.mark.parametrize(
    "text", [NEST_BOMB, alias_bomb(8), alias_bomb(9)], ids=["nesting", "alias8", "alias9"]
)
def test_yaml_bombs_are_refused_through_the_api(session, text: str) -> None:
    s, url = session
    t0 = time.monotonic()
    r = s.post(url + "/specs?dryRun=true", data=text.encode(), headers={"Content-Type": "application/yaml"}, timeout=30)  # fmt: skip
    assert r.status_code == 422, r.text
    assert time.monotonic() - t0 < 1.0
    message = r.json()["details"][0]["message"]
    assert "nested deeper than" in message or "aliases expand" in message
    assert s.get(url + "/healthz", timeout=10).json() == {"ok": True}


def test_yaml_bombs_in_the_folder_are_reported_and_the_service_lives(make_runtime, demo: DemoLambda, tmp_path: Path) -> None:  # fmt: skip
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "nest.yaml").write_text(NEST_BOMB)
    (specs / "alias.yaml").write_text(alias_bomb(9))
    (specs / "good.yaml").write_text(
        f"kind: Task\nmetadata: {{name: good}}\nspec: {{invoke: '{demo.url}/ok'}}\n"
    )
    runtime = make_runtime(specs_dir=specs)
    demo.wait_for(1, "/ok")
    nest = wait_until(
        lambda: (specs / "nest.status.yaml").exists() and (specs / "nest.status.yaml").read_text()
    )
    assert "nested deeper than 32 levels" in nest
    alias = wait_until(
        lambda: (specs / "alias.status.yaml").exists() and (specs / "alias.status.yaml").read_text()
    )
    assert "aliases expand to more than" in alias
    assert requests.get(runtime.url + "/healthz", timeout=10).json() == {"ok": True}


@pytest.mark.parametrize("text", [NEST_BOMB, alias_bomb(9)], ids=["nesting", "alias9"])
def test_validate_refuses_bombs_quickly_in_little_memory(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    script = (  # VmHWM is this program's own peak (ru_maxrss may carry the forking parent's)
        "import re, sys, time\n"
        "from lambdaop.cli.main import main\n"
        "t0 = time.monotonic(); code = main(['validate', sys.argv[1]])\n"
        "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(code, time.monotonic() - t0, peak)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    code, seconds, rss_kb = out.stdout.split()
    assert code == "1" and float(seconds) < 1.0 and int(rss_kb) < 200 * 1024, out.stdout
    assert "bomb.yaml:1:" in out.stderr or "bomb.yaml:" in out.stderr
