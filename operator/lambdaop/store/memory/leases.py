"""The in-memory store's leases, processes and counters (the loop's part of the contract)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from lambdaop.store.contract import (
    Due,
    Lease,
)
from lambdaop.store.memory.base import (
    BASE_SLOT,
    Tables,
    _before,
    _bson,
    _limit,
)


class MemoryLeases(Tables):
    def due_between(self, after: dt.datetime | None, until: dt.datetime, limit: int) -> list[Due]:
        after, until = _bson(after), _bson(until)
        found = [
            d for d in self._objects.values()
            if isinstance(d.get("due"), dt.datetime) and d["due"] <= until and (after is None or d["due"] > after)
        ]  # fmt: skip
        found.sort(key=lambda d: d["due"])
        return [Due(d["_id"], d["due"], d.get("fence", 0)) for d in _limit(found, limit)]

    def holders(self, ids: Iterable[str]) -> dict[str, Lease]:
        docs = [self._leases[i] for i in ids if i in self._leases]
        return {d["_id"]: Lease(d["_id"], str(d.get("owner")), d["until"], bool(d.get("guard"))) for d in docs}  # fmt: skip

    def claim(self, owner: str, until: dt.datetime, ids: list[str]) -> set[str]:
        held = [i for i in dict.fromkeys(ids) if i not in self._leases]  # a held object: left out
        for i in held:
            self._leases[i] = {"_id": i, "owner": owner, "until": _bson(until)}
        return set(held)

    def release(self, owner: str, ids: list[str]) -> None:
        for i in [i for i in dict.fromkeys(ids) if self._leased_by(i, owner)]:
            del self._leases[i]

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> set[str]:
        for i in [i for i in ids if self._leased_by(i, owner)]:
            self._leases[i] = {**self._leases[i], "until": _bson(until)}
        return {i for i in ids if not self._leased_by(i, owner)}

    def expired_leases(self, now: dt.datetime, limit: int = 5000) -> list[Lease]:
        now = _bson(now)
        expired = [i for i, d in self._leases.items() if _before(d.get("until"), now)]
        return list(self.holders(_limit(expired, limit)).values())

    def drop_leases(self, holder: str, ids: list[str], now: dt.datetime) -> set[str]:
        now = _bson(now)
        dropped = {i for i in ids if self._leased_by(i, holder) and _before(self._leases[i].get("until"), now)}  # fmt: skip
        for i in dropped:
            del self._leases[i]
        return dropped

    def drop_leases_of_others(self, owner: str) -> list[str]:
        ids = [i for i, d in self._leases.items() if d.get("owner") != owner]
        for i in ids:
            del self._leases[i]
        return ids

    def heartbeat(self, slot: str, until: dt.datetime, info: Mapping[str, Any]) -> None:
        self._processes[slot] = {**self._processes.get(slot, {"_id": slot}), **_bson({"until": until, **info})}  # fmt: skip

    def lapsed(self, now: dt.datetime) -> list[str]:
        now = _bson(now)
        found = [i for i, d in self._processes.items() if _before(d.get("until"), now)]
        return [str(i) for i in found if isinstance(self._processes[i].get("sessions"), list) and self._processes[i]["sessions"]]  # fmt: skip

    def stopped(self, processes: Iterable[str], now: dt.datetime) -> set[str]:
        now = _bson(now)
        return {p for p in processes if p not in self._processes or self._processes[p].get("until") is None or _before(self._processes[p]["until"], now)}  # fmt: skip

    def end_sessions_of(self, process: str, now: dt.datetime) -> bool:
        return False  # no transactions: no sessions a dead process could leave open

    def fold_slots(self, now: dt.datetime, keep: str, everyone_else: bool = False) -> int:
        if everyone_else:
            dead = {i for i in self._processes if i != keep}
            dead |= {d["slot"] for d in self._counters.values() if d.get("slot") and d["slot"] not in (keep, BASE_SLOT)}  # fmt: skip
        else:
            cutoff = _bson(now - dt.timedelta(minutes=2))
            dead = {i for i, d in self._processes.items() if _before(d.get("until"), cutoff)}
        for slot in sorted(dead - {keep, BASE_SLOT}):
            for d in [d for d in self._counters.values() if d.get("slot") == slot]:
                if d.get("n"):
                    self._count(f"{d['p']}/{d['s']}@{BASE_SLOT}", d["p"], d["s"], BASE_SLOT, d["n"])
                del self._counters[d["_id"]]
            self._processes.pop(slot, None)
        return len(dead - {keep, BASE_SLOT})
