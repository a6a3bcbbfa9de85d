"""Users, API tokens, web sessions and passwords.

- An API token is `NAME.SECRET` (for scripts and CI); only its SHA-256 is
  stored, with a prefix to name it, when it was made and last used, and an
  optional expiry. Tokens are listed and revoked one by one; signing in
  never touches them.
- A web session is `s.SECRET`, made by signing in with a password and ending
  after `session_hours` (or at sign-out); kept in its own collection.
- Passwords are scrypt hashes. Signing in takes the same time whether or not
  the user exists, and failures are limited per user and per client address:
  from the 5th failure in a row each attempt waits twice as long as the last
  (answered 429 with Retry-After), up to 15 minutes.
- The first `admin` is made when no admin exists; its token goes once to
  `<state>/admin.token` (mode 0600), never to a log.

Called by the API (authenticate, login, user routes), the CLI (`lambdaop user
...`) and runtime.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdaop.core.clock import Clock
from lambdaop.core.errors import (
    Conflict,
    NotFound,
    Problem,
    SpecInvalid,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)
from lambdaop.store.contract import UserStore
from lambdaop.store.embedded import write_private

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_DUMMY = "scrypt$" + "00" * 16 + "$" + "00" * 32  # checked against when the user does not exist
LAST_USED_EVERY = 600.0  # seconds between writes of a token's last use


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_password(password, salt_bytes), stored) and bool(digest)


class LoginGuard:
    """Failed sign-ins per user and per client address, with an exponential wait from the 5th."""

    FREE = 4
    LONGEST = 900.0

    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures in a row, blocked until)
        self._lock = threading.Lock()

    def check(self, keys: list[str], now: float) -> None:
        with self._lock:
            wait = max((self._failures.get(k, (0, 0.0))[1] - now for k in keys), default=0.0)
        if wait > 0:
            raise TooManyRequests(
                f"too many failed sign-ins; try again in {int(wait) + 1}s", retry_after=int(wait) + 1
            )

    def failed(self, keys: list[str], now: float) -> None:
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            for key in keys:
                count = self._failures.get(key, (0, 0.0))[0] + 1
                until = now + min(2.0 ** (count - self.FREE), self.LONGEST) if count > self.FREE else 0.0
                self._failures[key] = (count, until)

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


class Users:
    def __init__(
        self,
        store: UserStore,
        clock: Clock,
        cache_seconds: float = 30.0,
        session_hours: float = 12.0,
        token_file: Path | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.session_hours = session_hours
        self.token_file = token_file
        self.guard = LoginGuard()
        self._cache: dict[str, tuple[User, float]] = {}
        self._cache_seconds = cache_seconds
        self.deadline = 0.8  # seconds a request waits for the store (answered within 1 s in all)
        self.store_down: Callable[[], bool] = lambda: False  # runtime tells it what the health monitor knows
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    # ----- users

    def add(self, name: str, admin: bool = False) -> str:
        """Create a user; answers its first API token (shown once, never stored)."""
        if not NAME.match(name):
            raise SpecInvalid(
                "invalid user name", [Problem("use 1-64 letters, digits, '_' or '-'", field="name")]
            )
        token, entry = self._new_token(name, None)
        self.store.insert_user({"_id": name, "admin": admin, "tokens": [entry], "created": self.clock.now()})
        return token

    def remove(self, name: str) -> None:
        """Remove a user: its tokens and sessions stop working at once (its objects stay)."""
        if not self.store.delete_user(name):
            raise NotFound(f"no user {name!r}")
        self.store.delete_sessions_of(name)
        self._forget(name)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"name": d["_id"], "admin": bool(d.get("admin")), "created": d.get("created"), "tokens": len(d.get("tokens", []))}
            for d in self.store.list_users()
        ]  # fmt: skip

    def ensure_admin(self) -> str | None:
        """When no admin exists: create `admin`, write its token to the token file, answer it (else None)."""
        if any(u["admin"] for u in self.listing()):
            return None
        try:
            token = self.add("admin", admin=True)
        except Conflict:  # a user named admin exists, without the right: give it the right and a token
            self.store.set_user("admin", {"admin": True})
            token = self.issue_token("admin")
        if self.token_file is not None:
            write_private(self.token_file, token + "\n")
        return token

    # ----- API tokens

    def issue_token(self, name: str, expires: dt.timedelta | None = None) -> str:
        if self.store.get_user(name) is None:
            raise NotFound(f"no user {name!r}")
        token, entry = self._new_token(name, expires)
        self.store.add_token(name, entry)
        return token

    def tokens(self, name: str) -> list[dict[str, Any]]:
        doc = self.store.get_user(name)
        if doc is None:
            raise NotFound(f"no user {name!r}")
        return [
            {"prefix": t.get("prefix"), "created": t.get("created"), "lastUsed": t.get("last_used"), "expires": t.get("expires")}
            for t in doc.get("tokens", [])
            if isinstance(t, dict)
        ]  # fmt: skip

    def revoke(self, name: str, prefix: str) -> int:
        """Revoke the user's tokens that start with this prefix (at least 6 characters); answers how many."""
        if len(prefix) < 6:
            raise SpecInvalid(
                "invalid prefix", [Problem("give at least 6 characters of the token", field="prefix")]
            )
        doc = self.store.get_user(name)
        if doc is None:
            raise NotFound(f"no user {name!r}")
        secret = prefix.split(".", 1)[1] if prefix.startswith(f"{name}.") else prefix
        gone = [
            t
            for t in doc.get("tokens", [])
            if isinstance(t, dict) and str(t.get("prefix", "")).startswith(secret[:8])
        ]
        if not gone:
            raise NotFound(f"no token of {name} starts with {prefix!r}")
        self.store.remove_tokens(name, [t["hash"] for t in gone])
        self._forget(name)
        return len(gone)

    def _new_token(self, name: str, expires: dt.timedelta | None) -> tuple[str, dict[str, Any]]:
        secret = secrets.token_urlsafe(32)
        token = f"{name}.{secret}"
        now = self.clock.now()
        entry: dict[str, Any] = {"hash": _digest(token), "prefix": secret[:8], "created": now}
        if expires is not None:
            entry["expires"] = now + expires
        return token, entry

    # ----- passwords and sessions

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise SpecInvalid("weak password", [Problem("use at least 8 characters", field="password")])
        if not self.store.set_user(name, {"password": hash_password(password)}):
            raise NotFound(f"no user {name!r}")

    def login(self, name: str, password: str, client: str = "") -> str:
        """Sign in with a password; answers a new web session token (API tokens are left alone)."""
        keys = [f"user:{name[:64]}"] + ([f"addr:{client}"] if client else [])
        now = self.clock.monotonic()
        self.guard.check(keys, now)
        with self.store.deadline(self.deadline):
            doc = self.store.get_user(name) if NAME.match(name or "") else None
        stored = (doc or {}).get("password") or _DUMMY
        ok = check_password(password, stored) and doc is not None and stored != _DUMMY  # same work either way
        if not ok:
            self.guard.failed(keys, now)
            raise Unauthorized("unknown user or wrong password")
        self.guard.succeeded(keys)
        token = f"s.{secrets.token_urlsafe(32)}"
        created = self.clock.now()
        self.store.insert_session(
            {"_id": _digest(token), "user": name, "created": created, "expires": created + dt.timedelta(hours=self.session_hours)}
        )  # fmt: skip
        return token

    def logout(self, token: str | None) -> None:
        if token and token.startswith("s."):
            self.store.delete_session(_digest(token))
            with self._lock:
                self._cache.pop(_digest(token), None)

    # ----- every request

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("this route needs `Authorization: Bearer <token>`")
        digest = _digest(token)
        now = self.clock.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        if self.store_down():
            raise StoreUnavailable("the store does not answer, so the token cannot be checked; try again")
        with self.store.deadline(self.deadline):  # a store that does not answer is a 503, never a hang
            user = self._session_user(digest) if token.startswith("s.") else self._token_user(token, digest)
        if user is None:
            raise Unauthorized("the token is not valid (revoked, expired or never issued)")
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[digest] = (user, now + self._cache_seconds)
        return user

    def _session_user(self, digest: str) -> User | None:
        session = self.store.find_session(digest)
        if session is None or session["expires"] <= self.clock.now():
            return None
        doc = self.store.get_user(session["user"])
        return User(doc["_id"], bool(doc.get("admin"))) if doc else None

    def _token_user(self, token: str, digest: str) -> User | None:
        name = token.split(".", 1)[0]
        doc = self.store.get_user(name) if NAME.match(name) else None
        if doc is None:
            return None
        now = self.clock.now()
        for entry in doc.get("tokens", []):
            stored = (
                entry.get("hash") if isinstance(entry, dict) else entry
            )  # earlier versions kept bare hashes
            if isinstance(stored, str) and hmac.compare_digest(digest, stored):
                if isinstance(entry, dict) and entry.get("expires") and entry["expires"] <= now:
                    return None
                self._touch(name, stored)
                return User(name, bool(doc.get("admin")))
        return None

    def _touch(self, name: str, digest: str) -> None:
        """Record a token's use, at most every ten minutes (it costs a write)."""
        now = self.clock.monotonic()
        with self._lock:
            if now - self._used.get(digest, -LAST_USED_EVERY) < LAST_USED_EVERY:
                return
            self._used[digest] = now
        self.store.touch_token(name, digest, self.clock.now())

    def _forget(self, name: str) -> None:
        """Drop cached answers for a user (a revoked token or removed user stops working at once)."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0].name != name}
