"""The command line against a running server: what a person on call reads, and what scripts get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import wait_until
from lambdaop.cli.main import main
from lambdaop.runtime.runtime import Runtime
from lambdaop.tools.demo import DemoLambda

README = Path(__file__).resolve().parents[2] / "README.md"


class Cli:
    def __init__(self, runtime: Runtime, capsys: Any) -> None:
        self.runtime, self.capsys = runtime, capsys
        self.common = ["--server", runtime.url, "--token", runtime.admin_token or ""]

    def __call__(self, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, *self.common])
        out, err = self.capsys.readouterr()
        return (
            code,
            out,
            "\n".join(ln for ln in err.splitlines() if not ln[:4].isdigit()),
        )  # the service's log aside

    def apply(self, text: str) -> dict[str, Any]:
        r = requests.post(self.runtime.url + "/specs", data=text, timeout=30,
                          headers={"Authorization": f"Bearer {self.runtime.admin_token}", "Content-Type": "application/yaml"})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json()["results"][0])


@pytest.fixture
def cli(make_runtime: Any, capsys: Any) -> Cli:
    return Cli(make_runtime(env={"KEY": "k"}), capsys)


def spec(name: str, demo: DemoLambda, extra: str = "  after: 1h\n") -> str:
    return (
        f"kind: Task\nmetadata: {{name: {name}, labels: {{team: ops}}}}\nspec:\n"
        f"  invoke: {{url: '{demo.url}/ok', method: POST, headers: {{x-api-key: {{fromEnv: KEY}}}}}}\n"
        f"{extra}  retries: 2\n"
    )


def test_describe_is_a_summary_to_read(cli: Cli, demo: DemoLambda) -> None:
    done = cli.apply(spec("report", demo, "  after: 0s\n"))
    wait_until(lambda: cli.runtime.store.get(done["id"])["state"] == "completed")  # type: ignore[index]
    code, out, _ = cli("describe", "task", "report")
    assert code == 0 and not out.lstrip().startswith("{"), "not raw JSON"
    for line in ("Name:", "State:", "Managed by:", "Calls to:", "Spec:", "Last calls (1 of 1):"):
        assert line in out, (line, out)
    assert f"POST {demo.url}/ok" in out and "ok 200" in out and "team=ops" in out
    code, out, _ = cli("describe", "task", "report", "-o", "json")
    assert json.loads(out)["attempts"][0]["status"] == 200, "everything, for machines"


def test_get_o_yaml_is_a_spec_document_apply_takes_back_unchanged(
    cli: Cli, demo: DemoLambda, tmp_path: Path
) -> None:
    cli.apply(spec("nightly", demo))
    code, out, _ = cli("get", "task", "nightly", "-o", "yaml")
    assert code == 0
    assert out.startswith("apiVersion: lambdaop/v1\nkind: Task\nmetadata:\n  name: nightly\n"), out
    assert "{" not in out.split("status:")[0].replace("{fromEnv", ""), "block style"
    body = out.split("spec:\n", 1)[1]
    assert body.startswith("  invoke:\n    url: "), "in the order a spec is written"
    assert "method: GET" not in out and "timeout: 30s" not in out, "defaults left out"
    assert "\nstatus:\n  id: " in out and "  state: scheduled\n" in out
    (tmp_path / "nightly.yaml").write_text(out)
    code, out, _ = cli("apply", "-f", str(tmp_path / "nightly.yaml"))
    assert code == 0 and out.strip().endswith("Task/nightly unchanged"), out
    code, out, _ = cli("get", "tasks", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "nightly", "json: the same document"


def test_masked_secrets_are_said_and_refused_on_apply(cli: Cli, demo: DemoLambda, tmp_path: Path) -> None:
    cli.apply(f"kind: Task\nmetadata: {{name: keyed}}\nspec:\n  invoke: {{url: '{demo.url}/ok', headers: {{x-api-key: s3cret}}}}\n  after: 1h\n")  # fmt: skip
    code, out, err = cli("get", "task", "keyed", "-o", "yaml")
    assert "s3cret" not in out and "'***'" in out and "spec.invoke.headers.x-api-key" in err
    (tmp_path / "keyed.yaml").write_text(out)
    code, _, err = cli("apply", "-f", str(tmp_path / "keyed.yaml"))
    assert code == 1 and "what lambdaop shows in place of a secret" in err
    assert cli.runtime.store.get(cli.runtime.store.find_by_name("admin", "Task", "keyed")["_id"])["spec"]["invoke"]["headers"] == {"x-api-key": "s3cret"}  # type: ignore[index]  # fmt: skip


def test_get_shows_suspended_objects_and_names_every_verb_accepts(cli: Cli, demo: DemoLambda) -> None:
    beat = cli.apply(
        spec("heartbeat-of-a-rather-long-name-indeed", demo, "  schedule: {cron: '0 3 1 1 *'}\n")
    )
    cli.runtime.service.suspend(beat["id"], "admin")
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {cli.runtime.admin_token}"
    once = s.post(cli.runtime.url + "/scheduler/schedule", json={"url": demo.url + "/ok", "name": "UI once task", "delay": 3_600_000}, timeout=30).json()  # fmt: skip
    code, out, _ = cli("get", "tasks")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "heartbeat-of-a-rather-long-name-indeed" in rows, "names are shown whole"
    assert rows["heartbeat-of-a-rather-long-name-indeed"].split()[1] == "scheduled,suspended"
    shown = next(n for n in rows if n.startswith("UI-once-task-"))
    assert shown == once["name"]
    for verb in ("describe", "get"):
        assert cli(verb, "task", shown)[0] == 0, f"{verb} takes the name get shows"
    code, out, _ = cli("get", "tasks", "-o", "wide")
    assert "UI once task" in out, "the display name, in wide"
    code, out, _ = cli("get", "tasks", "-o", "name")
    assert sorted(out.split()) == sorted(
        [f"task/{once['name']}", "task/heartbeat-of-a-rather-long-name-indeed"]
    )
    assert cli("cancel", "task", f"task/{once['name']}")[0] == 0, "and what -o name prints"
    code, _, err = cli("describe", "task", "UI once task")
    assert code == 1 and "`lambdaop get tasks` lists the names this accepts" in err


def test_a_closed_pipe_ends_quietly(cli: Cli, demo: DemoLambda) -> None:
    cli.apply(spec("piped", demo))
    env = {**os.environ, "LAMBDAOP_SERVER": cli.runtime.url, "LAMBDAOP_TOKEN": cli.runtime.admin_token or ""}
    proc = subprocess.Popen([sys.executable, "-m", "lambdaop.cli", "get", "tasks"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head` does once it has what it wants
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and err == "", err


def test_mistakes_are_said_once_with_a_guess(cli: Cli, demo: DemoLambda, tmp_path: Path) -> None:
    cli.apply(spec("one", demo))
    code, _, err = cli("modify", "task", "one", "--at", "tomorrow")
    assert code == 1 and err.count("got 'tomorrow'") == 1, err
    assert (
        cli("gett", "tasks")[2] == "lambdaop: 'gett' is not a verb; did you mean get? (see `lambdaop --help`)"
    )
    code, _, err = cli("get", "tsks")
    assert code == 2 and "did you mean tasks?" in err and "argument KIND" not in err
    assert "did you mean --limit?" in cli("get", "tasks", "--limt", "3")[2]
    code, _, err = cli("validate", str(tmp_path / "nosuch") + "/")
    assert code == 2 and err == f"lambdaop: {tmp_path / 'nosuch'}: no such file or folder"
    notes = tmp_path / "NOTES.md"
    notes.write_text(README.read_text())
    code, _, err = cli("apply", "-f", str(notes))
    assert code == 1 and "is it a spec file?" in err and "<" not in err, err
    code, _, err = cli("validate", str(notes))
    assert code == 1 and "YAML syntax error" in err and "<" not in err, err


def test_a_server_that_is_not_lambdaop_is_named_so(cli: Cli, demo: DemoLambda, capsys: Any) -> None:
    capsys.readouterr()
    code = main(["get", "tasks", "--server", demo.url, "--token", "x"])
    err = "\n".join(ln for ln in capsys.readouterr().err.splitlines() if not ln[:4].isdigit())
    assert code == 2 and err.startswith(
        f"lambdaop: {demo.url} is not a lambdaop server: GET /tasks answered 404"
    ), err


def test_the_readme_says_the_exit_codes_the_cli_gives() -> None:
    text = README.read_text()
    assert "a usage mistake" in text and "exit status 2" in text
    assert main(["no-such-verb"]) == 2
