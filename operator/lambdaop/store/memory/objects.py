"""The in-memory store's objects, their names and lists, counts and history (the contract's ObjectReads)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from lambdaop.core.labels import Selector
from lambdaop.store.contract import (
    ATTEMPTS_KEPT,
    RUN_RESULTS,
    Doc,
    DueEntry,
    Page,
    run_matches,
)
from lambdaop.store.ids import OBJECT_ID, floor
from lambdaop.store.memory.base import (
    FOLDER_FIELDS,
    Tables,
    _copy,
    _limit,
    _name_key,
)


class MemoryObjects(Tables):
    def get(self, object_id: str) -> Doc | None:
        if not isinstance(object_id, str) or not OBJECT_ID.match(object_id):
            return None  # not an id lambdaop ever made
        return _copy(self._objects.get(object_id))

    def fetch(self, ids: Iterable[str], due: tuple[dt.datetime, dt.datetime] | None = None) -> list[Doc]:
        return [_copy(self._objects[i], ("attempts",)) for i in dict.fromkeys(ids) if i in self._objects]

    def find_by_name(self, owner: str, kind: str, name: str) -> Doc | None:
        entry = self._names.get(_name_key(owner, kind, name))
        return _copy(self._objects.get(entry["o"])) if entry else None

    def find_by_names(self, owner: str, kind: str, names: list[str]) -> dict[str, Doc]:
        entries = [self._names.get(_name_key(owner, kind, n)) for n in names]
        return {doc["name"]: doc for doc in self.fetch(e["o"] for e in entries if e)}

    def objects_from_folder(self, folder: str, owners: Iterable[str]) -> list[Doc]:
        out = []
        for owner in sorted(set(owners)):
            for doc in [self._objects.get(e["o"]) for e in self._names.values() if e["owner"] == owner]:
                if doc is not None and (doc.get("source") or {}).get("folder") == folder:
                    out.append({k: _copy(v) for k, v in doc.items() if k in FOLDER_FIELDS})
        return out

    def list_objects(
        self,
        kind: str,
        owner: str | None,
        state: str | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        prefix: str | None = None,
    ) -> Page:
        def wanted(d: Doc) -> bool:
            return (state is None or d.get("state") == state) and (selector is None or selector.matches(d.get("labels")))  # fmt: skip

        if prefix is not None:
            if owner is None:
                raise ValueError("a name search needs an owner")
            entries = sorted(
                (e["n"], e["o"]) for e in self._names.values()
                if e["w"] == owner and e["k"] == kind and e["n"].startswith(prefix) and (before is None or e["n"] > before)
            )  # fmt: skip
            named = [
                (n, self._objects[o]) for n, o in entries if o in self._objects and wanted(self._objects[o])
            ]
            return Page([_copy(d, ("attempts",)) for _, d in named[:limit]], named[limit - 1][0] if len(named) > limit else None)  # fmt: skip
        if owner is None and state is not None:
            raise ValueError("a state filter needs an owner")
        listed = self._listing if owner is None else {i: d.get("kind") for i, d in self._objects.items() if d.get("owner") == owner}  # fmt: skip
        ids = sorted((i for i, k in listed.items() if k == kind and (not before or i < before)), reverse=True)
        docs = [d for d in (self._objects.get(i) for i in ids) if d is not None and wanted(d)]
        page = [_copy(d, ("attempts",)) for d in docs[:limit]]
        return Page(page, page[-1]["_id"] if len(docs) > limit else None)

    def upcoming(
        self,
        owner: str,
        after: dt.datetime,
        until: dt.datetime,
        limit: int,
        examine: int = 1000,
        widest: dt.timedelta | None = None,
        latest_first: bool = False,
    ) -> tuple[list[DueEntry], bool]:
        due = sorted(
            (d for d in self._objects.values() if d.get("owner") == owner and d.get("due") is not None and after < d["due"] <= until),
            key=lambda d: d["due"],
            reverse=latest_first,
        )  # fmt: skip
        out = [DueEntry(d["_id"], d["kind"], d["name"], d["due"], "schedule" in (d.get("spec") or {}), d.get("display")) for d in due[:limit]]  # fmt: skip
        return out, len(due) <= limit

    def paused(self, owner: str, now: dt.datetime, limit: int) -> tuple[list[Doc], bool]:
        found = sorted(
            (d for d in self._objects.values() if d.get("owner") == owner and d.get("paused") is not None),
            key=lambda d: (d["paused"], d["_id"]),
            reverse=True,
        )
        fields = ("_id", "owner", "kind", "name", "display", "progress", "paused")
        return [{k: _copy(d[k]) for k in fields if k in d} for d in found[:limit]], len(found) > limit

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in self._counters.values():
            if doc["p"] == f"{owner or '*'}/{kind}":
                out[doc["s"]] = out.get(doc["s"], 0) + int(doc.get("n", 0))
        return {k: max(0, v) for k, v in out.items()}

    def history(self, object_id: str, limit: int = ATTEMPTS_KEPT) -> list[Doc]:
        newest = _limit(self._attempts.get(object_id, [])[::-1], limit)
        return [_copy(r, ("o",)) for _, r in reversed(newest)]

    def prune_history(self, object_ids: Iterable[str], keep: int = ATTEMPTS_KEPT) -> int:
        if keep < 0:
            raise ValueError("skip must be >= 0")
        removed = 0
        for oid in object_ids:
            records = self._attempts.get(oid, [])
            old = {seq for seq, _ in _limit(records[::-1][keep:], 5000)}  # at most 5000 a pass
            if old:
                self._attempts[oid] = [(seq, r) for seq, r in records if seq not in old]
                removed += len(old)
        return removed

    def list_runs(
        self,
        owner: str,
        result: str | None,
        since: dt.datetime | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        kind: str | None = None,
        prefix: str | None = None,
    ) -> Page:
        results = [result] if result is not None else list(RUN_RESULTS)
        low = floor(since) if since is not None else ""
        found = []
        for key, doc in self._runs.items():
            who, done, rid = key.split("\x1f")
            if who == owner and done in results and low <= rid and (before is None or rid < before):
                found.append((rid, doc))
        found.sort(key=lambda pair: pair[0], reverse=True)
        matching = [(rid, doc) for rid, doc in found if run_matches(doc, selector, kind, prefix)]
        page = [{**_copy(doc), "id": rid} for rid, doc in matching[:limit]]
        return Page(page, page[-1]["id"] if len(matching) > limit else None)
