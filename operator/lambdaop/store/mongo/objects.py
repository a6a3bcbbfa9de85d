"""Reading objects, their names, the lists and the call history (MongoDB)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from pymongo import DESCENDING

from lambdaop.store.contract import ATTEMPTS_KEPT, STATES, Doc
from lambdaop.store.mongo.base import Base, chunks

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def name_key(owner: str, kind: str, name: str) -> str:
    return f"{owner}\x1f{kind}\x1f{name}"


def name_doc(doc: Doc) -> Doc:
    return {"_id": name_key(doc["owner"], doc["kind"], doc["name"]), "o": doc["_id"], "owner": doc["owner"]}


class Objects(Base):
    def get(self, object_id: str) -> Doc | None:
        if not isinstance(object_id, str) or not OBJECT_ID.match(object_id):
            return None  # not an id lambdaop ever made
        return self.objects.find_one({"_id": object_id})

    def fetch(self, ids: Iterable[str], due: tuple[dt.datetime, dt.datetime] | None = None) -> list[Doc]:
        """Whole objects by id (the loop's read after a claim), without a legacy history array.

        With `due` (the first and last due time of the ids), they are read as that range of the
        due index, one read however many they are; those not in it are read by id.
        """
        ids = list(dict.fromkeys(ids))
        out: list[Doc] = []
        if due is not None and len(ids) > 1:
            want = set(ids)
            rng = {"$gte": due[0], "$lte": due[1]}
            out = [d for d in self.objects.find({"due": rng}) if d["_id"] in want]
            got = {d["_id"] for d in out}
            ids = [i for i in ids if i not in got]
        for part in chunks(ids):  # no projection: the embedded server deep-copies a projected document
            out += self.objects.find({"_id": {"$in": part}})
        for doc in out:
            doc.pop("attempts", None)
        return out

    def find_by_name(self, owner: str, kind: str, name: str) -> Doc | None:
        entry = self.names.find_one({"_id": name_key(owner, kind, name)})
        return self.objects.find_one({"_id": entry["o"]}) if entry else None

    def find_by_names(self, owner: str, kind: str, names: list[str]) -> dict[str, Doc]:
        """Objects of one owner and kind by name, in bounded chunks."""
        found: dict[str, Doc] = {}
        for part in chunks(names):
            keys = [name_key(owner, kind, n) for n in part]
            ids = [e["o"] for e in self.names.find({"_id": {"$in": keys}}, {"o": 1})]
            for doc in self.fetch(ids):
                found[doc["name"]] = doc
        return found

    def objects_from_folder(self, folder: str, owners: Iterable[str]) -> list[Doc]:
        """Every object these owners applied from a specs folder (start-up convergence)."""
        fields = {
            "owner": 1, "kind": 1, "name": 1, "source": 1, "annotations": 1, "pruned": 1, "state": 1, "manager": 1,
        }  # fmt: skip
        out = []
        for owner in sorted(set(owners)):
            ids = [e["o"] for e in self.names.find({"owner": owner}, {"o": 1})]
            for part in chunks(ids):
                for doc in self.objects.find({"_id": {"$in": part}}, fields):
                    if (doc.get("source") or {}).get("folder") == folder:
                        out.append(doc)
        return out

    def history(self, object_id: str, limit: int = ATTEMPTS_KEPT) -> list[Doc]:
        """An object's newest calls, oldest first."""
        newest = list(self.attempts.find({"o": object_id}, {"o": 0}).sort("_id", DESCENDING).limit(limit))
        newest.reverse()
        return newest

    def prune_history(self, object_ids: Iterable[str], keep: int = ATTEMPTS_KEPT) -> int:
        """Delete all but the newest `keep` calls of each object; answers how many went."""
        removed = 0
        for oid in object_ids:
            old = list(
                self.attempts.find({"o": oid}, {"_id": 1}).sort("_id", DESCENDING).skip(keep).limit(5000)
            )
            for part in chunks([d["_id"] for d in old]):
                with self._txn() as s:
                    removed += self.attempts.delete_many({"_id": {"$in": part}}, session=s).deleted_count
        return removed

    def list_objects(
        self, kind: str, owner: str | None, state: str | None, before: str | None, limit: int
    ) -> list[Doc]:
        """Newest first, one page; `before` is the last id of the previous page.

        One owner's objects in every state are the newest of one bounded page per state.
        """
        if owner is not None and state is None:
            merged = [d for s in STATES for d in self.list_objects(kind, owner, s, before, limit)]
            return sorted(merged, key=lambda d: d["_id"], reverse=True)[:limit]
        if owner is None:  # everybody's: the insert-only listing, newest first
            if state is not None:
                raise ValueError("a state filter needs an owner")
            flt: dict[str, Any] = {"kind": kind}
            if before:
                flt["_id"] = {"$lt": before}
            ids = [d["_id"] for d in self.listing.find(flt, {"_id": 1}).sort("_id", DESCENDING).limit(limit)]
            return sorted(self.fetch(ids), key=lambda d: d["_id"], reverse=True)
        flt = {"owner": owner, "kind": kind, "state": state}
        if before:
            flt["_id"] = {"$lt": before}
        return list(self.objects.find(flt, {"attempts": 0}).sort("_id", DESCENDING).limit(limit))
