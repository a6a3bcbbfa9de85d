"""The embedded store's keeper: the state folder, and SecantusDB run as a child process.

`StateDir` is the state folder, held by one live lambdaop at a time (an flock).
`EmbeddedServer` starts `secantusd-py` on 127.0.0.1 with its data under
`<state>/db`, reads its port from its log, stops a server left behind by a
lambdaop that died, and stops it on exit (Linux ends it even when lambdaop is
killed with -9). It runs with authentication: its credential is made at the
first start and kept in `<state>/store.secret` (mode 0600; the folder is
0700), so no other local user or process can reach the data. The folder is
always taken by its absolute path, and a database nested by earlier versions
(`.lambdaop/.lambdaop/db`) is moved where it belongs. No MongoDB client here:
`store` is the only module that talks to the server (it creates the user).
Called by runtime and the CLI.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lambdaop.core.errors import StateDirLocked, StoreUnavailable

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"listening on ([0-9.]+):(\d+)")


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the embedded server if lambdaop dies (even by kill -9)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def private_folder(path: Path) -> Path:
    """The folder by its absolute path, made if need be, readable by its owner only."""
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """A file only its owner may read (written whole, then renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class StateDir:
    """The state folder, held by one live lambdaop process at a time (an flock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self._fd: int | None = None

    def acquire(self) -> None:
        private_folder(self.path)
        lock_path = self.path / "lambdaop.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
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


STORE_USER = "lambdaop"


@dataclass
class EmbeddedServer:
    """SecantusDB as a child process on 127.0.0.1, data under `<state>/db`."""

    state_dir: Path
    cache_size: str = "128M"  # the storage engine's cache, the bulk of the server's RSS
    start_timeout: float = 60.0
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None
    auth: bool = False
    _log_file: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).expanduser().resolve()

    @property
    def secret_file(self) -> Path:
        return self.state_dir / "store.secret"

    def credential(self) -> tuple[str, str] | None:
        """The store's user and password, once made (`new_credential`)."""
        try:
            data = json.loads(self.secret_file.read_text())
            return str(data["user"]), str(data["password"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def new_credential(self) -> tuple[str, str]:
        """A fresh random credential, kept (0600) only once `save_credential` confirms it works."""
        password = secrets.token_urlsafe(32)
        write_private(
            self.state_dir / "store.secret.new", json.dumps({"user": STORE_USER, "password": password})
        )
        return STORE_USER, password

    def save_credential(self) -> None:
        os.replace(self.state_dir / "store.secret.new", self.secret_file)

    @property
    def uri(self) -> str:
        """How to reach it: with the credential when it runs with authentication."""
        credential = self.credential() if self.auth else None
        if credential is None:
            return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        user, password = credential
        return (
            f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/"
            "?directConnection=true&authSource=admin&authMechanism=SCRAM-SHA-256"
        )

    @property
    def anonymous_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def _migrate_nested(self, data: Path) -> None:
        """Earlier versions ran the server inside the folder with its relative path again, so
        `./.lambdaop` held its database in `.lambdaop/.lambdaop/db`: move such a database home."""
        if (data / "WiredTiger").exists():
            return
        for found in sorted(self.state_dir.glob("**/db/WiredTiger")):
            nested = found.parent
            if nested != data and self.state_dir in nested.parents:
                log.warning("moving the database an earlier version nested in %s to %s", nested, data)
                if data.exists():
                    data.rmdir()
                shutil.move(str(nested), str(data))
                return

    def start(self, auth: bool = True, port: int | None = None) -> str:
        """Start the server (on `port`, or on a free one) and answer its URI."""
        private_folder(self.state_dir)
        data = self.state_dir / "db"
        self._migrate_nested(data)
        data.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        self.auth = auth
        log_path = self.state_dir / "secantusd.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        if self._log_file is not None:  # a restart after the server died
            self._log_file.close()
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - held for the child's lifetime
        cmd = [
            _server_binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port or 0),
            "--storage-path",
            str(data),
            "--sync-on-commit",
            # lambdaop reads no change streams: no oplog at all (less disk, RSS and work per write)
            "--standalone",
            "--cache-size",
            self.cache_size,
            "--config",
            str(self._empty_config()),  # never a stray secantusd.toml of the cwd or $HOME
            "--log-level",
            "INFO",  # the port is read from its "listening on" line
            *(["--auth"] if auth else []),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECANTUS_")}
        env["MALLOC_ARENA_MAX"] = "2"  # a threaded server's heap stays near what it uses
        self.process = subprocess.Popen(
            cmd,
            env=env,
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
                # lets `lambdaop user ...` reach the store while serve holds the folder (0600: it holds the credential)
                write_private(self.state_dir / "store.uri", self.uri)
                return self.uri
            time.sleep(0.05)
        self.stop()
        raise StoreUnavailable(f"the embedded store did not start within {self.start_timeout:.0f}s")

    def _empty_config(self) -> Path:
        path = self.state_dir / "secantusd.toml"
        if not path.exists():
            path.write_text("# lambdaop starts the embedded store with its options on the command line\n")
        return path

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

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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
