"""Effective configuration, built by the entry point (the only code that reads the environment)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaop.loop.outbound import SECURE, Policy
from lambdaop.spec import format_duration


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path(".lambdaop")
    specs_dir: Path | None = Path("specs")
    specs_owner: str = "admin"
    mongodb_uri: str | None = None
    database: str = "lambdaop"
    host: str = "127.0.0.1"
    port: int = 8080
    serve_api: bool = True
    watch: bool = True
    status_interval: float = 1.0
    resync: dt.timedelta = dt.timedelta(minutes=1)  # the specs folder is read again this often
    api_threads: int = 8
    timezone: str = "UTC"
    workers: int = 16
    lease: dt.timedelta = dt.timedelta(seconds=30)
    claim_window: dt.timedelta | None = (
        None  # how far ahead work is claimed: 2s on a shared store, 15s embedded
    )
    liveness: dt.timedelta = dt.timedelta(
        seconds=60
    )  # /healthz fails after this long without progress while work is due
    allow_hosts: Policy = SECURE
    on_failure: str | None = None  # where failed runs are reported when a spec names no onFailure
    metrics_public: bool = False  # /metrics without a token
    public_url: str | None = (
        None  # where callers reach the API (callback URLs start with it); default: the API's address
    )
    callback_secret: str | None = field(
        default=None, repr=False
    )  # signs callback URLs; default: a key in the state folder
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> dict[str, Any]:
        """What is logged once at start (never secrets: the URI's password is masked)."""
        uri = self.mongodb_uri
        if uri and "@" in uri:
            scheme, _, rest = uri.partition("://")
            uri = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return {
            "store": uri or f"embedded (SecantusDB under {self.state_dir / 'db'})",
            "state_dir": str(self.state_dir),
            "specs_dir": str(self.specs_dir) if self.specs_dir else None,
            "specs_owner": self.specs_owner,
            "resync": format_duration(self.resync),
            "workers": self.workers,
            "api_threads": self.api_threads,
            "lease": format_duration(self.lease),
            "claim_window": format_duration(self.claim_window)
            if self.claim_window
            else ("15s" if not self.mongodb_uri else "2s"),
            "api": f"http://{self.host}:{self.port}" if self.serve_api else None,
            "timezone": self.timezone,
            "outbound": self.allow_hosts.describe(),
            "on_failure": self.on_failure,
            "public_url": self.public_url,
            "callback_secret": "given" if self.callback_secret else "a key in the state folder",
        }
