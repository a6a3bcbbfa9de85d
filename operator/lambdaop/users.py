"""Users, API tokens and passwords.

A token is `NAME.SECRET`; only its SHA-256 is stored, so the user is found by
`_id` and the token compared in constant time. Passwords are scrypt hashes.
Called by the API (authenticate, login), the CLI (`lambdaop user ...`) and
runtime (the first `admin`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from .clock import Clock
from .errors import Conflict, NotFound, Problem, SpecInvalid, Unauthorized
from .store import Store

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKENS_KEPT = 50
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored) and bool(digest)


class Users:
    def __init__(self, store: Store, clock: Clock, cache_seconds: float = 30.0) -> None:
        self.store = store
        self.clock = clock
        self._cache: dict[str, tuple[User, float]] = {}
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()

    def add(self, name: str, admin: bool = False) -> str:
        """Create a user; answers its first API token (shown once, never stored)."""
        if not NAME.match(name):
            raise SpecInvalid(
                "invalid user name", [Problem("use 1-64 letters, digits, '_' or '-'", field="name")]
            )
        token = self._new_token(name)
        self.store.insert_user(
            {"_id": name, "admin": admin, "tokens": [_token_hash(token)], "created": self.clock.now()}
        )
        return token

    def issue_token(self, name: str) -> str:
        if self.store.get_user(name) is None:
            raise NotFound(f"no user {name!r}")
        token = self._new_token(name)
        self.store.update_user(
            name, {"$push": {"tokens": {"$each": [_token_hash(token)], "$slice": -TOKENS_KEPT}}}
        )
        return token

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise SpecInvalid("weak password", [Problem("use at least 8 characters", field="password")])
        if not self.store.update_user(name, {"$set": {"password": hash_password(password)}}):
            raise NotFound(f"no user {name!r}")

    def login(self, name: str, password: str) -> str:
        doc = self.store.get_user(name) if NAME.match(name or "") else None
        if doc is None or not check_password(password, doc.get("password", "")):
            raise Unauthorized("unknown user or wrong password")
        return self.issue_token(name)

    def authenticate(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("this route needs `Authorization: Bearer <token>`")
        digest = _token_hash(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        name = token.split(".", 1)[0]
        doc = self.store.get_user(name) if NAME.match(name) else None
        if doc is None or not any(hmac.compare_digest(digest, h) for h in doc.get("tokens", [])):
            raise Unauthorized("the token is not valid")
        user = User(name, bool(doc.get("admin")))
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[digest] = (user, now + self._cache_seconds)
        return user

    def list(self) -> list[dict[str, object]]:
        return [
            {"name": d["_id"], "admin": bool(d.get("admin")), "created": d.get("created")}
            for d in self.store.list_users()
        ]

    def ensure_admin(self) -> str | None:
        """On first start with no users: create `admin` and answer its token (else None)."""
        if self.store.any_user():
            return None
        try:
            return self.add("admin", admin=True)
        except Conflict:
            return None

    @staticmethod
    def _new_token(name: str) -> str:
        return f"{name}.{secrets.token_urlsafe(32)}"
