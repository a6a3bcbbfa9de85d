"""The folder is the source of truth: an object deleted while its file still has it comes back, and
`diff -f` previews a change of a specs repository. A real watcher, the real store, a real endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import wait_until
from integration.specfolder import condition, entry, run_cli, stored, task
from lambdaop.tools.demo import DemoLambda


def test_a_forced_delete_of_an_object_its_file_still_has_is_applied_again(
    make_runtime, demo: DemoLambda, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "pulse.yaml"
    path.write_text(task("pulse", f"{demo.url}/ok?pulse", "after: 1h"))
    runtime = make_runtime(specs_dir=specs)  # resync every minute: the object's change alone heals it
    wait_until(lambda: condition(path, "pulse", "Ready").get("status") == "True", timeout=20, what="applied")
    first = stored(runtime, "pulse")
    code, out, err = run_cli(runtime, capsys, "delete", "task", "pulse", "--force")
    assert code == 0 and "cancelled, marked pruned" in out, (code, out, err)
    back = wait_until(lambda: (doc := stored(runtime, "pulse"))["generation"] == 2 and not doc.get("pruned") and doc, timeout=30, what="the file to apply it again")  # fmt: skip
    assert back["_id"] == first["_id"] and back["state"] == "scheduled"
    assert back["manager"] == first["manager"] and back["manager"].startswith("folder:")

    def ready_again() -> dict[str, Any] | None:  # one read of the status file: it is rewritten as it goes
        document = entry(path, "pulse")
        ready = next((c for c in document.get("conditions", []) if c["type"] == "Ready"), {})
        return ready if ready.get("status") == "True" and document.get("observedGeneration") == 2 else None

    ready = wait_until(ready_again, timeout=20, what="the status of generation 2")
    assert "generation 2 of pulse.yaml is applied" in ready["message"] and "applied again" in ready["message"]
    assert entry(path, "pulse")["state"] == "scheduled" and "pruned" not in entry(path, "pulse")
    wait_until(lambda: not runtime.folder.retry, timeout=10, what="the folder to converge")
    path.unlink()  # what the message says to do to delete it for good: the folder prunes it, and keeps it so
    wait_until(lambda: stored(runtime, "pulse").get("pruned"), timeout=20, what="pruned with its file")
    runtime.folder.resync()
    doc = stored(runtime, "pulse")
    assert doc.get("pruned") and doc["generation"] == 2 and doc["state"] == "cancelled"
    assert not demo.calls("/ok")


def test_diff_of_a_folder_managed_document_previews_its_change(
    make_runtime, demo: DemoLambda, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs, repo = tmp_path / "specs", tmp_path / "repo"  # the folder, and a checkout with a change to come
    specs.mkdir()
    repo.mkdir()
    path = specs / "hello.yaml"
    path.write_text(task("hello", f"{demo.url}/ok?v1", "after: 1h"))
    runtime = make_runtime(specs_dir=specs)
    wait_until(lambda: condition(path, "hello", "Ready").get("status") == "True", timeout=20, what="applied")
    code, out, err = run_cli(runtime, capsys, "diff", "-f", str(path))
    assert (code, out) == (0, "") and "would be refused" not in err, (code, out, err)
    edited = repo / "hello.yaml"
    edited.write_text(task("hello", f"{demo.url}/ok?v2", "after: 2h"))
    code, out, err = run_cli(runtime, capsys, "diff", "-f", str(edited))
    assert code == 1 and "would be refused" not in err, (code, out, err)
    header = out.splitlines()[0]
    assert header.startswith(f"diff Task/hello ({edited}:1): would be rescheduled"), header
    assert "managed by the specs folder" in header and str(path) in header, header
    assert "which applies it" in header and "--force" in header and "force=true" not in header, header
    assert f"-  url: {demo.url}/ok?v1" in out and f"+  url: {demo.url}/ok?v2" in out, out
    bad = repo / "bad.yaml"
    bad.write_text(task("bad", "ftp://example.com/x"))
    assert run_cli(runtime, capsys, "diff", "-f", str(bad))[0] == 2, "an error is still 2"
    answer = requests.post(runtime.url + "/specs?dryRun=true", data=edited.read_bytes(), headers={"Authorization": f"Bearer {runtime.admin_token}", "Content-Type": "application/yaml"}, timeout=10).json()  # fmt: skip
    (result,) = answer["results"]
    assert (result["action"], result["change"]) == ("refused", "rescheduled"), result
    assert result["current"]["invoke"]["url"].endswith("v1") and result["desired"]["invoke"]["url"].endswith(
        "v2"
    )
    doc = stored(runtime, "hello")
    assert doc["generation"] == 1 and doc["spec"]["invoke"]["url"].endswith("v1"), "diff changes nothing"
