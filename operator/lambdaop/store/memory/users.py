"""The in-memory store's users, their tokens and web sessions, and the settings of the whole service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from lambdaop.core.errors import Conflict
from lambdaop.store.contract import (
    Doc,
)
from lambdaop.store.memory.base import (
    Tables,
    _bson,
    _copy,
    _limit,
)


class MemoryUsers(Tables):
    def get_user(self, name: str) -> Doc | None:
        return _copy(self._users.get(name))

    def insert_user(self, doc: Doc) -> None:
        if doc["_id"] in self._users:
            raise Conflict(f"user {doc['_id']!r} already exists")
        self._users[doc["_id"]] = _bson(doc)

    def delete_user(self, name: str) -> bool:
        return self._users.pop(name, None) is not None

    def list_users(self, limit: int = 1000) -> list[Doc]:
        names = _limit(sorted(n for n in self._users if isinstance(n, str) and n > ""), limit)
        return [_copy(self._users[n], ("password",)) for n in names]

    def any_user(self) -> bool:
        return any(isinstance(n, str) and n > "" for n in self._users)

    def set_user(self, name: str, values: Mapping[str, Any]) -> bool:
        if not values or any(not k or "." in k for k in values):
            raise ValueError(f"cannot set {list(values)}: no field, or a field inside another")
        if name in self._users:
            self._users[name] = {**self._users[name], **_bson(values)}
        return name in self._users

    def add_token(self, name: str, entry: Doc) -> bool:
        user = self._users.get(name)
        if user is not None and not isinstance(user.get("tokens", []), list):
            raise TypeError("the field 'tokens' must be an array")
        if user is not None:
            self._users[name] = {**user, "tokens": [*user.get("tokens", []), _bson(entry)]}
        return user is not None

    def remove_tokens(self, name: str, hashes: list[str]) -> None:
        user = self._users.get(name)
        if user is not None and isinstance(user.get("tokens"), list):
            kept = [t for t in user["tokens"] if not (isinstance(t, dict) and t.get("hash") in hashes)]
            self._users[name] = {**user, "tokens": kept}

    def touch_token(self, name: str, digest: str, at: dt.datetime) -> None:
        user = self._users.get(name) or {}
        tokens: list[Any] = user["tokens"] if isinstance(user.get("tokens"), list) else []
        for i, token in enumerate(tokens):
            if isinstance(token, dict) and token.get("hash") == digest:
                self._users[name] = {**user, "tokens": [*tokens[:i], {**token, "last_used": _bson(at)}, *tokens[i + 1 :]]}  # fmt: skip
                return

    def insert_session(self, doc: Doc) -> None:
        if doc["_id"] in self._sessions:
            raise Conflict(f"session {doc['_id']!r} already exists")
        self._sessions[doc["_id"]] = _bson(doc)

    def find_session(self, digest: str) -> Doc | None:
        return _copy(self._sessions.get(digest))

    def delete_session(self, digest: str) -> None:
        self._sessions.pop(digest, None)

    def delete_sessions_of(self, name: str) -> None:
        for digest in [d for d, s in self._sessions.items() if s.get("user") == name]:
            del self._sessions[digest]

    def get_setting(self, name: str) -> Doc | None:
        return _copy(self._settings.get(name))

    def put_setting(self, name: str, value: Doc | None) -> None:
        if value is None:
            self._settings.pop(name, None)
        else:
            self._settings[name] = _bson(value)
