"""GitOps that converges: every edit of the folder applies or says why, and what was refused is
applied later without the file being touched. A real watcher, the real store, real endpoints."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from helpers import wait_until
from integration.specfolder import condition, entry, hits, run_cli, stored, task, wait_hits
from lambdaop.cli.main import main
from lambdaop.loop.outbound import Policy
from lambdaop.tools.demo import DemoLambda


def test_a_recurring_task_is_suspended_resumed_and_moved_by_editing_its_file(
    make_runtime, demo: DemoLambda, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "pulse.yaml"
    path.write_text(task("pulse", f"{demo.url}/ok?v1", "schedule: {every: 2s}"))
    runtime = make_runtime(specs_dir=specs)
    wait_hits(demo, "/ok", "v1", 2)  # runs every 2 s
    edited = time.time()
    path.write_text(task("pulse", f"{demo.url}/ok?v1", "schedule: {every: 2s}", "suspended: true"))
    wait_until(lambda: stored(runtime, "pulse")["progress"]["suspended"], timeout=10, what="suspended")
    time.sleep(5)  # watching for calls that should not come (the runs were every 2 s)
    late = [c for c in hits(demo, "/ok", "v1") if c.at > edited + 3]
    assert not late, f"{len(late)} call(s) more than 3 s after the edit to suspended: true"
    assert condition(path, "pulse", "Ready")["status"] == "True"
    path.write_text(task("pulse", f"{demo.url}/ok?v2", "schedule: {every: 2s}"))
    first_v2 = min(c.at for c in wait_hits(demo, "/ok", "v2"))
    assert not [c for c in hits(demo, "/ok", "v1") if c.at > first_v2], "the old URL after the new one"
    doc = stored(runtime, "pulse")
    assert doc["generation"] == 3 and not doc["progress"]["suspended"]
    wait_until(lambda: entry(path, "pulse").get("observedGeneration") == 3, timeout=10)


def test_edits_racing_runs_are_never_lost(make_runtime, demo: DemoLambda, tmp_path: Path) -> None:
    """100 edits of a Task that runs every second, each made once the edit before it is applied,
    at a varying point of the run's cycle: waiting, claimed, in flight, writing its result.
    Edits closer together than the watcher's step (200 ms) are seen as one; waiting for each
    proves that none is lost, and calls never go back to an older edit."""
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "busy.yaml"
    count = 100
    path.write_text(task("busy", f"{demo.url}/sleep?ms=150&e=0", "schedule: {every: 1s}"))
    runtime = make_runtime(specs_dir=specs)
    demo.wait_for(1, "/sleep", timeout=20)
    for i in range(1, count + 1):
        path.write_text(task("busy", f"{demo.url}/sleep?ms=150&e={i}", "schedule: {every: 1s}"))
        wait_until(lambda i=i: stored(runtime, "busy")["generation"] == i + 1, timeout=20, what=f"generation {i + 1} (edit {i}) to run")  # fmt: skip
        time.sleep((i % 5) * 0.07)  # no wait for anything: it moves the next edit through the run's cycle
    doc = stored(runtime, "busy")
    assert doc["generation"] == count + 1 and "pending" not in doc
    assert doc["spec"]["invoke"]["url"].endswith(f"e={count}")
    wait_hits(demo, "/sleep", f"ms=150&e={count}")
    wait_until(lambda: condition(path, "busy", "Ready").get("status") == "True" and entry(path, "busy").get("observedGeneration") == count + 1, timeout=20, what="the report of the last edit")  # fmt: skip
    edits = [int(c.query.rsplit("e=", 1)[1]) for c in sorted(demo.calls("/sleep"), key=lambda c: c.at)]
    assert edits == sorted(edits), f"a call of an older edit after a newer one: {edits}"
    first = min(c.at for c in hits(demo, "/sleep", f"ms=150&e={count}"))
    stray = [
        (c.query, round(c.at - first, 3))
        for c in demo.calls("/sleep")
        if c.at > first and not c.query.endswith(f"e={count}")
    ]
    assert not stray, stray


def test_an_edit_during_a_call_applies_after_it_without_touching_the_file(
    make_runtime, demo: DemoLambda, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "slow.yaml"
    path.write_text(task("slow", f"{demo.url}/sleep?ms=2500"))
    runtime = make_runtime(specs_dir=specs)
    demo.wait_for(1, "/sleep", timeout=10)  # its call is out for 2.5 s
    path.write_text(task("slow", f"{demo.url}/ok?after-the-call"))
    reconciling = wait_until(lambda: condition(path, "slow", "Reconciling").get("status") == "True" and condition(path, "slow", "Reconciling"), timeout=10)  # fmt: skip
    assert (
        reconciling["reason"] == "RunInProgress"
        and "generation 2 applies when this run ends" in reconciling["message"]
    )
    assert entry(path, "slow")["generation"] == 2 and entry(path, "slow")["observedGeneration"] == 1
    (call,) = wait_hits(demo, "/ok", "after-the-call", timeout=15)
    assert call.at > demo.calls("/sleep")[0].at + 2.4, "the edit waited for the call going on"
    wait_until(lambda: condition(path, "slow", "Ready").get("status") == "True", timeout=10)
    assert runtime.folder.applies == 2, "applied at start and at the one edit: the rest converged by itself"


def test_a_refusal_of_a_held_object_is_applied_later_without_touching_the_file(
    make_runtime, demo: DemoLambda, tmp_path: Path
) -> None:
    import datetime as dt

    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "held.yaml"
    path.write_text(task("held", f"{demo.url}/ok?first", "after: 10s"))
    folder = make_runtime(specs_dir=specs, resync=dt.timedelta(seconds=1), lease=dt.timedelta(seconds=2))
    other = make_runtime(
        claim_window=dt.timedelta(seconds=30), lease=dt.timedelta(seconds=2)
    )  # holds it at once
    wait_until(
        lambda: folder.store.holders([stored(folder, "held")["_id"]]), timeout=10, what="the other claim"
    )
    path.write_text(task("held", f"{demo.url}/ok?second", "after: 10s"))
    retrying = wait_until(lambda: condition(path, "held", "Reconciling").get("reason") == "Retrying" and condition(path, "held", "Reconciling"), timeout=10)  # fmt: skip
    assert "held by another lambdaop process" in retrying["message"]
    other.stop()  # its lease lapses; the folder's resync applies the edit
    wait_until(lambda: stored(folder, "held")["spec"]["invoke"]["url"].endswith("second"), timeout=20)
    wait_until(lambda: condition(path, "held", "Ready").get("status") == "True", timeout=10)


def test_a_target_the_policy_refuses_is_reported_logged_once_and_counted(
    make_runtime, demo: DemoLambda, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import datetime as dt

    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "inside.yaml"
    path.write_text(task("inside", f"{demo.url}/ok?never"))
    caplog.set_level(logging.ERROR)
    runtime = make_runtime(specs_dir=specs, allow_hosts=Policy(), resync=dt.timedelta(seconds=1))
    ready = wait_until(lambda: condition(path, "inside", "Ready"), timeout=10)
    assert ready["status"] == "False" and ready["reason"] == "OutboundPolicy"
    assert "a loopback address" in ready["message"] and "--allow-hosts 127.0.0.1" in ready["message"]
    assert condition(path, "inside", "Stalled")["status"] == "True"
    assert entry(path, "inside")["state"] != "unknown"
    time.sleep(2.5)  # two resyncs: nothing more is logged or counted
    lines = [r for r in caplog.records if "inside.yaml" in r.getMessage() and "loopback" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    metrics = requests.get(runtime.url + "/metrics", headers={"Authorization": f"Bearer {runtime.admin_token}"}, timeout=10).text  # fmt: skip
    assert "lambdaop_folder_apply_errors_total 1.0" in metrics
    assert runtime.store.find_by_name("admin", "Task", "inside") is None and not hits(demo, "/ok", "never")


def test_force_delete_and_diff_say_what_they_do(
    make_runtime, demo: DemoLambda, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    pulse, hello = specs / "pulse.yaml", specs / "hello.yaml"
    pulse.write_text(task("pulse", f"{demo.url}/ok?pulse", "after: 1h"))
    hello.write_text(task("hello", f"{demo.url}/ok?hello", "after: 1h"))
    runtime = make_runtime(specs_dir=specs)
    mine = tmp_path / "mine.yaml"
    mine.write_text(task("pulse", f"{demo.url}/ok?pulse", "after: 1h"))
    code, out, err = run_cli(runtime, capsys, "apply", "-f", str(mine))
    assert code == 1 and "managed by the specs folder" in err and "pulse.yaml" in err and "--force" in err
    assert "force=true" not in err
    assert err.count("managed by the specs folder") == 1, (
        f"said once, not in the headline and its detail: {err}"
    )
    code, out, err = run_cli(runtime, capsys, "apply", "-f", str(mine), "--force")
    assert code == 0 and "taken over from the specs folder (pulse.yaml)" in out, out
    wait_until(lambda: condition(pulse, "pulse", "Stalled").get("reason") == "ManagedElsewhere", timeout=10)
    assert "api:admin" in condition(pulse, "pulse", "Stalled")["message"]
    code, out, err = run_cli(runtime, capsys, "delete", "task", "hello")
    assert code == 1 and "hello.yaml" in err and "--force" in err, err
    assert not stored(runtime, "hello").get("pruned")
    code, out, err = run_cli(runtime, capsys, "diff", "-f", str(mine))
    assert (code, out) == (0, ""), (code, out, err)
    mine.write_text(task("pulse", f"{demo.url}/ok?moved", "after: 2h"))
    code, out, err = run_cli(runtime, capsys, "diff", "-f", str(mine))
    assert code == 1 and "would be rescheduled" in out
    assert f"-  url: {demo.url}/ok?pulse" in out and f"+  url: {demo.url}/ok?moved" in out, out
    code, out, err = run_cli(runtime, capsys, "diff", "-f", str(hello))
    assert (code, out) == (0, "") and "would be refused" not in err, (code, out, err)  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text(task("bad", "ftp://example.com/x"))
    assert run_cli(runtime, capsys, "diff", "-f", str(bad))[0] == 2
    assert stored(runtime, "pulse")["spec"]["invoke"]["url"].endswith("?pulse"), "diff changes nothing"
    hello.unlink()  # pruned with its file; another manager may then take the name without force
    wait_until(lambda: stored(runtime, "hello").get("pruned"), timeout=10)
    again = tmp_path / "hello.yaml"
    again.write_text(task("hello", f"{demo.url}/ok?hello-api", "after: 1h"))
    code, out, err = run_cli(runtime, capsys, "apply", "-f", str(again))
    assert code == 0 and "hello restarted" in out, (out, err)


def test_a_git_checkout_of_a_thousand_files_applies_as_one_batch(
    make_runtime, demo: DemoLambda, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=specs, check=True, capture_output=True)  # fmt: skip

    git("init", "-q", "-b", "main")
    for version in (1, 2):
        for i in range(1000):
            (specs / f"s{i:04}.yaml").write_text(
                task(f"s{i}", f"{demo.url}/ok?v{version}&i={i}", "after: 1h")
            )
        git("add", "-A")
        git("commit", "-q", "-m", f"v{version}")
    git("checkout", "-q", "HEAD~1")
    runtime = make_runtime(specs_dir=specs)
    assert runtime.store.counts("admin", "Task").get("scheduled") == 1000
    before = runtime.folder.batches
    git("checkout", "-q", "main")
    wait_until(lambda: stored(runtime, "s999")["generation"] == 2 and stored(runtime, "s0")["generation"] == 2, timeout=60)  # fmt: skip
    wait_until(
        lambda: all(stored(runtime, f"s{i}")["generation"] == 2 for i in range(0, 1000, 37)), timeout=30
    )
    assert runtime.folder.batches == before + 1, "one checkout, one batch"


def test_a_symlinked_folder_swapped_at_once_is_followed(
    make_runtime, demo: DemoLambda, tmp_path: Path
) -> None:
    first, second = tmp_path / "release-1", tmp_path / "release-2"
    first.mkdir()
    second.mkdir()
    (first / "job.yaml").write_text(task("job", f"{demo.url}/ok?r1", "after: 1h"))
    (second / "job.yaml").write_text(task("job", f"{demo.url}/ok?r2", "after: 1h"))
    (second / "extra.yaml").write_text(task("extra", f"{demo.url}/ok?extra", "after: 1h"))
    link = tmp_path / "specs"
    link.symlink_to(first)
    runtime = make_runtime(specs_dir=link)
    assert stored(runtime, "job")["spec"]["invoke"]["url"].endswith("r1")
    staged = tmp_path / "specs.new"
    staged.symlink_to(second)
    os.replace(staged, link)  # the atomic swap a ConfigMap or a deploy tool makes
    wait_until(lambda: stored(runtime, "job")["spec"]["invoke"]["url"].endswith("r2"), timeout=20)
    wait_until(lambda: runtime.store.find_by_name("admin", "Task", "extra"), timeout=10)
    wait_until(lambda: (link / "job.status.yaml").exists(), timeout=10)


def test_a_resync_of_an_unchanged_converged_folder_writes_nothing(
    make_runtime, demo: DemoLambda, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    specs = tmp_path / "specs"
    (specs / "team").mkdir(parents=True)
    files = [specs / "pair.yaml", specs / "team" / "one.yaml"]
    files[0].write_text(task("first", f"{demo.url}/ok?first", "after: 1h") + "---\n" + task("second", f"{demo.url}/ok?second", "after: 1h"))  # fmt: skip
    files[1].write_text(task("third", f"{demo.url}/ok?third", "after: 1h"))
    runtime = make_runtime(specs_dir=specs, resync=dt.timedelta(seconds=1))
    names = {files[0]: ("first", "second"), files[1]: ("third",)}
    wait_until(lambda: all(condition(path, name, "Ready").get("status") == "True" for path, these in names.items() for name in these), timeout=20, what="the folder to converge")  # fmt: skip
    resyncs: list[float] = []
    resync = runtime.folder.resync

    def counted() -> None:  # a spy: neither the watcher nor the folder counts its resyncs
        resync()
        resyncs.append(time.monotonic())

    monkeypatch.setattr(runtime.folder, "resync", counted)
    wait_until(lambda: resyncs, timeout=10, what="a resync")
    runtime.status.flush()
    reports = [path.with_name(path.stem + ".status.yaml") for path in files]
    before = [(report.stat().st_mtime_ns, report.read_text()) for report in reports]
    commits, written, applies = runtime.writer.batches, runtime.status.writes, runtime.folder.applies
    wait_until(lambda: len(resyncs) >= 4, timeout=20, what="three more resyncs")
    runtime.status.flush()
    assert runtime.writer.batches == commits, f"{runtime.writer.batches - commits} store commit(s)"
    assert (runtime.status.writes, runtime.folder.applies) == (written, applies)
    assert [(report.stat().st_mtime_ns, report.read_text()) for report in reports] == before
    assert not demo.calls("/ok")


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """The folder made read-only, as a Kubernetes ConfigMap is mounted: chmod 0555 where that
    stops writes; where it does not (root), a read-only bind mount of the folder onto itself.
    Answers how; skips where neither stops a write."""

    def writable() -> bool:
        probe = folder / ".probe"
        try:
            probe.write_text("")
        except OSError:
            return False
        probe.unlink()
        return True

    folder.chmod(0o555)
    mounted = False
    try:
        if not writable():
            yield "chmod 0555"
            return
        with contextlib.suppress(OSError):  # no mount command: mounted stays False
            mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode == 0  # fmt: skip
        if not mounted or writable():
            pytest.skip("neither chmod nor a read-only bind mount stops writes here")
        yield "a read-only bind mount"
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True, capture_output=True)
        folder.chmod(0o755)


def test_a_read_only_folder_logs_its_status_error_once(
    make_runtime, demo: DemoLambda, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "pulse.yaml"
    path.write_text(task("pulse", f"{demo.url}/ok?ro", "schedule: {every: 1s}"))
    report = specs / "pulse.status.yaml"
    caplog.set_level(logging.INFO, logger="lambdaop.app.status")
    with read_only(specs) as how:
        runtime = make_runtime(specs_dir=specs)
        wait_hits(demo, "/ok", "ro", 4)  # each run changes what the report says
        wait_until(lambda: runtime.status.failures >= 3, timeout=20, what="the report tried three times")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and "pulse.status.yaml" in r.getMessage()]  # fmt: skip
        assert len(errors) == 1, (how, [r.getMessage() for r in errors])
        assert "cannot write the status file" in errors[0].getMessage()
        assert not report.exists() and not [p.name for p in specs.iterdir() if p.name != "pulse.yaml"]
        metrics = requests.get(runtime.url + "/metrics", headers={"Authorization": f"Bearer {runtime.admin_token}"}, timeout=10).text  # fmt: skip
        (line,) = [m for m in metrics.splitlines() if m.startswith("lambdaop_status_write_failures_total ")]
        assert float(line.split()[1]) >= 3, "the failed writes are on /metrics"
    wait_until(
        lambda: entry(path, "pulse").get("state"), timeout=20, what="the report, once it can be written"
    )
    assert any("written again" in r.getMessage() for r in caplog.records), "its recovery is said"
    assert not [p.name for p in specs.iterdir() if p.name.endswith(".tmp")]


def test_an_editors_save_by_rename_is_applied(make_runtime, demo: DemoLambda, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "job.yaml"
    path.write_text(task("job", f"{demo.url}/ok?v1", "after: 1h"))
    runtime = make_runtime(specs_dir=specs)
    for version in (2, 3):  # write a temporary file beside it, then rename it over the spec
        saved = specs / "job.yaml.tmp"
        saved.write_text(task("job", f"{demo.url}/ok?v{version}", "after: 1h"))
        os.replace(saved, path)
        wait_until(lambda v=version: stored(runtime, "job")["generation"] == v, timeout=20, what=f"save {version}")  # fmt: skip
        doc = stored(runtime, "job")
        assert doc["spec"]["invoke"]["url"].endswith(f"v{version}") and not doc.get("pruned")
        wait_until(lambda v=version: entry(path, "job").get("observedGeneration") == v, timeout=20)
    assert sorted(p.name for p in specs.iterdir()) == ["job.status.yaml", "job.yaml"]
    assert runtime.store.counts("admin", "Task") == {"scheduled": 1}


def test_the_walkthrough_validate_step_passes_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's step, run where the walkthrough put the examples: a specs/ folder of a
    scratch directory (never the checkout's own, which a running `serve` may watch)."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    step = next(line.strip() for line in readme.splitlines() if "lambdaop validate" in line and "specs/" in line and "invalid" not in line)  # fmt: skip
    argv = step.split("#")[0].split("lambdaop", 1)[1].split()
    assert argv[0] == "validate", step
    (tmp_path / "specs").mkdir()
    for example in sorted((root / "examples" / "specs").glob("*.yaml")):
        shutil.copy(example, tmp_path / "specs" / example.name)
    here = Path.cwd()
    try:
        os.chdir(tmp_path)
        code = main(argv)
    finally:
        os.chdir(here)
    assert code == 0, capsys.readouterr().err


def test_the_walkthrough_invalid_example_prints_what_the_readme_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text().splitlines()
    start = next(
        i for i, line in enumerate(readme) if "lambdaop validate examples/specs/invalid.yaml.example" in line
    )
    shown = []
    for line in readme[start + 1 :]:
        if not line.strip().startswith("# "):
            break
        shown.append(line.strip()[2:])
    here = Path.cwd()
    try:
        os.chdir(root)
        code = main(["validate", "examples/specs/invalid.yaml.example"])
    finally:
        os.chdir(here)
    assert code == 1
    assert capsys.readouterr().err.splitlines() == shown
