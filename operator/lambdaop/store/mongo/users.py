"""Users, their API tokens and web sessions (MongoDB)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from lambdaop.core.errors import Conflict
from lambdaop.store.contract import Doc
from lambdaop.store.mongo.base import Base


class UserDocs(Base):
    def get_user(self, name: str) -> Doc | None:
        return self.users.find_one({"_id": name})

    def insert_user(self, doc: Doc) -> None:
        try:
            self.users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"user {doc['_id']!r} already exists") from None

    def delete_user(self, name: str) -> bool:
        return self.users.delete_one({"_id": name}).deleted_count == 1

    def list_users(self, limit: int = 1000) -> list[Doc]:
        return list(
            self.users.find({"_id": {"$gt": ""}}, {"password": 0}).sort("_id", ASCENDING).limit(limit)
        )

    def any_user(self) -> bool:
        return self.users.find_one({"_id": {"$gt": ""}}, {"_id": 1}) is not None

    def set_user(self, name: str, values: Mapping[str, Any]) -> bool:
        return self.users.update_one({"_id": name}, {"$set": dict(values)}).matched_count == 1

    def add_token(self, name: str, entry: Doc) -> bool:
        return self.users.update_one({"_id": name}, {"$push": {"tokens": entry}}).matched_count == 1

    def remove_tokens(self, name: str, hashes: list[str]) -> None:
        self.users.update_one({"_id": name}, {"$pull": {"tokens": {"hash": {"$in": hashes}}}})

    def touch_token(self, name: str, digest: str, at: dt.datetime) -> None:
        self.users.update_one({"_id": name, "tokens.hash": digest}, {"$set": {"tokens.$.last_used": at}})

    def insert_session(self, doc: Doc) -> None:
        self.sessions.insert_one(doc)

    def find_session(self, digest: str) -> Doc | None:
        return self.sessions.find_one({"_id": digest})

    def delete_session(self, digest: str) -> None:
        self.sessions.delete_one({"_id": digest})

    def delete_sessions_of(self, name: str) -> None:
        self.sessions.delete_many({"user": name})
