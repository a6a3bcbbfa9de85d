"""The embedded store's keeper: the state folder, and SecantusDB run as a child process.

`StateDir` is the state folder, held by one live lambdaop at a time (an flock).
`EmbeddedServer` starts `secantusd-py` on 127.0.0.1 with its data under
`<state>/db`, reads its port from its log, stops a server left behind by a
lambdaop that died, and stops it on exit (Linux ends it even when lambdaop is
killed with -9). No MongoDB client here: `store` is the only module that
talks to the server. Called by runtime and the CLI.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateDirLocked, StoreUnavailable

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the embedded server if lambdaop dies (even by kill -9)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class StateDir:
    """The state folder, held by one live lambdaop process at a time (an flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / "lambdaop.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateDirLocked(
                f"state folder {self.path} is in use by a running lambdaop (pid {holder}); "
                "stop it first or pass --state-dir with another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def held_elsewhere(self) -> bool:
        """Whether a live process holds the folder (without taking it)."""
        try:
            self.acquire()
        except StateDirLocked:
            return True
        self.release()
        return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _server_binary() -> str:
    beside = Path(sys.executable).with_name("secantusd-py")
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if not found:
        raise StoreUnavailable(
            "the embedded store needs the `secantusd-py` program (PyPI package SecantusDB); "
            "install lambdaop with pip, or set LAMBDAOP_MONGODB_URI"
        )
    return found


@dataclass
class EmbeddedServer:
    """SecantusDB as a child process on 127.0.0.1, data under `<state>/db`."""

    state_dir: Path
    oplog_retention_seconds: int = 600
    oplog_max_entries: int = 20000
    start_timeout: float = 60.0
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None
    _log_file: Any = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> str:
        data = self.state_dir / "db"
        data.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        log_path = self.state_dir / "secantusd.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - held for the child's lifetime
        cmd = [
            _server_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--storage-path",
            str(data),
            "--sync-on-commit",
            "--oplog-retention-seconds",
            str(self.oplog_retention_seconds),
            "--oplog-max-entries",
            str(self.oplog_max_entries),
            "--log-level",
            "INFO",  # the port is read from its "listening on" line
        ]
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_parent_death_signal,
            cwd=str(self.state_dir),
        )
        (self.state_dir / "secantusd.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_bytes()[offset:].decode(errors="replace")[-2000:]
                raise StoreUnavailable(f"the embedded store exited at start:\n{tail}")
            text = log_path.read_bytes()[offset:].decode(errors="replace")
            match = _LISTENING.search(text)
            if match:
                self.port = int(match.group(2))
                # lets `lambdaop user ...` reach the store while serve holds the folder
                (self.state_dir / "store.uri").write_text(self.uri)
                return self.uri
            time.sleep(0.05)
        self.stop()
        raise StoreUnavailable(f"the embedded store did not start within {self.start_timeout:.0f}s")

    def _stop_leftover(self) -> None:
        """A server left by a lambdaop that died holds the data folder: end it."""
        pid_file = self.state_dir / "secantusd.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (ValueError, OSError):
            return
        if "secantusd" not in cmdline or str(self.state_dir / "db") not in cmdline:
            return
        log.warning("stopping the embedded store left running by an earlier lambdaop (pid %s)", pid)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        for name in ("secantusd.pid", "store.uri"):
            with contextlib.suppress(OSError):
                (self.state_dir / name).unlink()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
