"""The MongoDB implementation of the store contract (a real replica set, or the embedded server).

`MongoStore` is made of one part per group of collections (objects and lists,
leases, the commit path, processes and counters, users, places of limit keys), sharing one client
(`base`). `connect` answers a ready store with its indexes in place;
`start_embedded` starts the embedded SecantusDB server with its credential.
The only code in lambdaop that imports pymongo.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure

from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.ids import OBJECT_ID, new_id
from lambdaop.store.mongo import directory
from lambdaop.store.mongo.base import BASE_SLOT, chunks
from lambdaop.store.mongo.commit import Commits
from lambdaop.store.mongo.leases import Leases
from lambdaop.store.mongo.objects import Objects, listing_doc, name_doc
from lambdaop.store.mongo.places import Places
from lambdaop.store.mongo.processes import Processes
from lambdaop.store.mongo.runs import Runs
from lambdaop.store.mongo.users import UserDocs

__all__ = ["OBJECT_ID", "MongoStore", "connect", "new_id", "start_embedded"]


class MongoStore(Objects, Runs, Leases, Commits, Processes, UserDocs, Places):
    """Every MongoDB query lambdaop makes. Thread-safe (pymongo's client is)."""

    def ensure_indexes(self, now: dt.datetime | None = None) -> None:
        objects = self.objects
        # lists page newest first on _id within an equality prefix (filter keys in index order)
        objects.create_index(
            [("owner", ASCENDING), ("kind", ASCENDING), ("state", ASCENDING), ("_id", DESCENDING)],
            name="by_state",
        )
        self.names.create_index([("w", ASCENDING), ("k", ASCENDING), ("n", ASCENDING)], name="by_name")
        self.listing.create_index([("kind", ASCENDING), ("_id", DESCENDING)], name="by_kind")
        label_index = [("w", ASCENDING), ("kind", ASCENDING), ("l", ASCENDING), ("_id", DESCENDING)]
        if any(i["name"] == "by_label" and i.get("sparse") for i in self.listing.list_indexes()):
            self.listing.drop_index("by_label")  # the embedded server reads a sparse one ten times slower
        self.listing.create_index(label_index, name="by_label")
        objects.create_index([("due", ASCENDING)], name="due", sparse=True)
        objects.create_index([("paused", ASCENDING)], name="paused", sparse=True)  # only while suspended
        self.attempts.create_index([("o", ASCENDING), ("_id", ASCENDING)], name="by_object")
        self.counters.create_index([("p", ASCENDING), ("s", ASCENDING)], name="by_prefix_state")
        self.directory.create_index([("p", ASCENDING), ("t", ASCENDING)], name="by_prefix_time")
        self.sessions.create_index([("expires", ASCENDING)], name="expires", expireAfterSeconds=0)
        self.runs.create_index([("expires", ASCENDING)], name="expires", expireAfterSeconds=0)
        self.runs.create_index(
            [("owner", ASCENDING), ("result", ASCENDING), ("_id", DESCENDING)], name="by_result"
        )  # lists read a range of _id behind owner and result
        self.limits.create_index([("expires", ASCENDING)], name="expires", expireAfterSeconds=0)
        self._migrate(now or dt.datetime(1970, 1, 1, tzinfo=dt.UTC))

    def _migrate(self, now: dt.datetime) -> None:
        """Bring a database written by an earlier version up to date (idempotent)."""
        names = {i["name"] for i in self.objects.list_indexes()}
        if "lease_until" in names:
            # calls claimed by the earlier engine were in flight: they become due again now
            for doc in self.objects.find({"lease_until": {"$gt": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}}):
                self.objects.update_one(
                    {"_id": doc["_id"]},
                    {
                        "$set": {"due": now, "progress.in_flight": False, "progress.due": now},
                        "$unset": {"lease_owner": "", "lease_until": ""},
                        "$inc": {"fence": 1},
                    },
                )
            self.objects.drop_index("lease_until")
        if "key" in names:  # names and the everybody list moved to their own insert-only collections
            for doc in self.objects.find({"_id": {"$gt": ""}}, {"owner": 1, "kind": 1, "name": 1}):
                with contextlib.suppress(DuplicateKeyError):
                    self.names.insert_one(name_doc(doc))
                with contextlib.suppress(DuplicateKeyError):
                    self.listing.insert_one({"_id": doc["_id"], "kind": doc["kind"]})
        for retired in ("by_owner", "by_folder", "key", "by_kind"):
            if retired in names:
                self.objects.drop_index(retired)
        if "ids" in {i["name"] for i in self.leases.list_indexes()}:  # an earlier lease layout
            self.leases.drop_index("ids")
        if "by_prefix" in {i["name"] for i in self.counters.list_indexes()}:
            self.counters.drop_index("by_prefix")
        version = (self.db["meta"].find_one({"_id": "layout"}) or {}).get("version", 0)
        if version < 2:  # names searchable by prefix, the listing by owner and labels
            self._migrate_lists()
            self.db["meta"].update_one({"_id": "layout"}, {"$set": {"version": 2}}, upsert=True)
        if version < 3:  # the directory that sizes the lists' windows
            self.directory.delete_many({})
            entries = [{"_id": d["_id"], "kind": d["kind"], "owner": d["w"]} for d in self.listing.find({}, {"kind": 1, "w": 1})]  # fmt: skip
            for start in range(0, len(entries), 5000):
                self.directory.bulk_write(directory.updates(entries[start : start + 5000], BASE_SLOT), ordered=False)  # fmt: skip
            self.db["meta"].update_one({"_id": "layout"}, {"$set": {"version": 3}}, upsert=True)
        if version < 4:  # suspended objects are in the paused index (one scan, once)
            for doc in self.objects.find({"progress.suspended": True}, {"updated": 1}):
                self.objects.update_one({"_id": doc["_id"]}, {"$set": {"paused": doc.get("updated") or now}})
            self.db["meta"].update_one({"_id": "layout"}, {"$set": {"version": 4}}, upsert=True)
        for doc in self.counters.find({"p": {"$exists": False}}):
            parts = str(doc["_id"]).split("/")
            if len(parts) == 3:
                self.counters.update_one(
                    {"_id": doc["_id"]},
                    {"$set": {"p": f"{parts[0]}/{parts[1]}", "s": parts[2], "slot": BASE_SLOT}},
                )

    def _migrate_lists(self) -> None:
        """Names and listing entries of an earlier layout get the fields the list indexes read."""
        names = [d for d in self.names.find({}, {"_id": 1, "w": 1}) if "w" not in d]
        for part in chunks([d["_id"] for d in names], 1000):
            for key in part:
                owner, kind, name = key.split("\x1f", 2)
                self.names.update_one({"_id": key}, {"$set": {"w": owner, "k": kind, "n": name}})
        listed = [d["_id"] for d in self.listing.find({}, {"_id": 1, "w": 1}) if "w" not in d]
        for part in chunks(listed):
            for doc in self.objects.find({"_id": {"$in": part}}, {"owner": 1, "kind": 1, "labels": 1}):
                self.listing.replace_one({"_id": doc["_id"]}, listing_doc(doc))


def start_embedded(server: EmbeddedServer) -> str:
    """Start the embedded server with authentication; at its first start (or on data an earlier
    version kept without it) make its credential first: the user is created while the server
    runs without authentication for a moment, on a random port only this process knows."""
    if server.credential() is None:
        server.start(auth=False)
        try:
            user, password = server.new_credential()
            client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
                server.anonymous_uri, retryWrites=False, serverSelectionTimeoutMS=10000
            )
            try:
                try:
                    client.admin.command("createUser", user, pwd=password, roles=["root"])
                except OperationFailure as exc:
                    if exc.code != 51003:  # the user exists (a start interrupted before): new password
                        raise
                    client.admin.command("updateUser", user, pwd=password)
            finally:
                client.close()
            server.save_credential()
        finally:
            server.stop()
    return server.start(auth=True)


def connect(
    uri: str,
    database: str = "lambdaop",
    embedded: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> MongoStore:
    """A ready store on `uri` with its indexes in place."""
    store = MongoStore(uri, database, embedded=embedded, username=username, password=password)
    try:
        store.wait_ready()
        store.ensure_indexes()
    except Exception:
        store.close()
        raise
    return store
