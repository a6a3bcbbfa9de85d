"""Processes and counters (MongoDB): heartbeats, ending a dead process's transactions, counter slots."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.errors import PyMongoError

from lambdaop.store.contract import Doc
from lambdaop.store.mongo.base import BASE_SLOT, Base, is_conflict

log = logging.getLogger("lambdaop.store")


class Processes(Base):
    def heartbeat(self, slot: str, until: dt.datetime, info: Mapping[str, Any]) -> None:
        self.processes.update_one({"_id": slot}, {"$set": {"until": until, **info}}, upsert=True)

    def lapsed(self, now: dt.datetime) -> list[str]:
        """Processes whose heartbeat stopped while they had transaction sessions."""
        query = {"until": {"$lt": now}, "sessions.0": {"$exists": True}}
        return [str(d["_id"]) for d in self.processes.find(query, {"_id": 1})]

    def stopped(self, processes: Iterable[str], now: dt.datetime) -> set[str]:
        asked = set(processes)
        alive = {d["_id"] for d in self.processes.find({"_id": {"$in": sorted(asked)}, "until": {"$gte": now}}, {"_id": 1})}  # fmt: skip
        return asked - alive

    def end_sessions_of(self, process: str, now: dt.datetime) -> bool:
        """Abort the open transactions of a process whose heartbeat stopped (it died inside one,
        holding what that transaction wrote); answers whether it did. Without this the store
        keeps them until its transaction lifetime (60 s by default) runs out."""
        doc = self.processes.find_one({"_id": process})
        if doc is None or doc.get("until", now) >= now or not doc.get("sessions"):
            return False
        with contextlib.suppress(PyMongoError):
            self.client.admin.command("killSessions", [{"id": s["id"]} for s in doc["sessions"]])
        self.processes.update_one({"_id": process}, {"$set": {"sessions": []}})
        log.warning("ended the open transactions of stopped process %s", process)
        return True

    def fold_slots(self, now: dt.datetime, keep: str, everyone_else: bool = False) -> int:
        """Fold the counter slots of processes gone for 2 minutes (or of everyone but `keep`) into slot 0.

        Answers how many slots were folded. A slot still written by an open
        transaction is left for a later pass.
        """
        if everyone_else:
            dead = {d["_id"] for d in self.processes.find({"_id": {"$ne": keep}}, {"_id": 1})}
            dead |= {d["slot"] for d in self.counters.find({"slot": {"$nin": [keep, BASE_SLOT]}}, {"slot": 1}) if d.get("slot")}  # fmt: skip
        else:
            cutoff = now - dt.timedelta(minutes=2)
            dead = {d["_id"] for d in self.processes.find({"until": {"$lt": cutoff}}, {"_id": 1})}
        folded = 0
        for slot in sorted(dead - {keep, BASE_SLOT}):
            try:
                with self._txn() as s:
                    docs = list(self.counters.find({"slot": slot}, session=s))
                    ops: list[Any] = [
                        UpdateOne(
                            {"_id": f"{d['p']}/{d['s']}@{BASE_SLOT}"},
                            {"$inc": {"n": d.get("n", 0)}, "$setOnInsert": {"p": d["p"], "s": d["s"], "slot": BASE_SLOT}},
                            upsert=True,
                        )
                        for d in docs
                        if d.get("n")
                    ]  # fmt: skip
                    ops += [DeleteOne({"_id": d["_id"]}) for d in docs]
                    if ops:
                        self.counters.bulk_write(ops, ordered=True, session=s)
                    self.processes.delete_one({"_id": slot}, session=s)
                folded += 1
            except PyMongoError as exc:
                if not is_conflict(exc):
                    raise
        return folded

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        """Objects per state, from the maintained counters (never a collection count)."""
        out: dict[str, int] = {}
        for doc in self.counters.find({"p": f"{owner or '*'}/{kind}"}, {"s": 1, "n": 1}):
            out[doc["s"]] = out.get(doc["s"], 0) + int(doc.get("n", 0))
        return {k: max(0, v) for k, v in out.items()}

    def get_setting(self, name: str) -> Doc | None:
        doc = self.settings.find_one({"_id": name})
        return {k: v for k, v in doc.items() if k != "_id"} if doc else None

    def put_setting(self, name: str, value: Doc | None) -> None:
        if value is None:
            self.settings.delete_one({"_id": name})
        else:
            self.settings.replace_one({"_id": name}, {**value, "_id": name}, upsert=True)
