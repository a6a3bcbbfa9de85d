"""Reading objects, their names, the lists and the call history (MongoDB)."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Iterator

from pymongo import DESCENDING

from lambdaop.core.labels import Selector, label_entries
from lambdaop.store.contract import ATTEMPTS_KEPT, STATES, Doc, Page
from lambdaop.store.ids import OBJECT_ID, floor_ms
from lambdaop.store.mongo import directory
from lambdaop.store.mongo.base import IN_CHUNK, Base, chunks

SMALL = 500  # entries a prefix may hold to be read in one go
OBJECTS_READ, ENTRIES_READ = 100, 200  # about how many whole objects, or listing entries, one read holds
LABEL_WIDEST = 5000  # of the owner's objects, a window of a label's entries spans at most
EXAMINED = 1000  # objects one page reads at most (a page ends early past it, with its `next`)


def name_key(owner: str, kind: str, name: str) -> str:
    return f"{owner}\x1f{kind}\x1f{name}"


def name_doc(doc: Doc) -> Doc:
    """The name of an object: unique per owner and kind (`_id`), searchable by prefix (w, k, n)."""
    owner, kind, name = doc["owner"], doc["kind"], doc["name"]
    return {
        "_id": name_key(owner, kind, name),
        "o": doc["_id"],
        "owner": owner,
        "w": owner,
        "k": kind,
        "n": name,
    }


def listing_doc(doc: Doc) -> Doc:
    """An object in the lists of everybody's objects and of labels (`l` only when it has labels)."""
    out: Doc = {"_id": doc["_id"], "kind": doc["kind"], "w": doc["owner"]}
    labels = label_entries(doc.get("labels"))
    if labels:
        out["l"] = labels
    return out


class Objects(Base):
    counts: Callable[[str | None, str], dict[str, int]]  # of the counters (processes.Processes)

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
            ids = [e["o"] for e in self.names.find({"w": owner}, {"o": 1})]
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
        self,
        kind: str,
        owner: str | None,
        state: str | None,
        before: str | None,
        limit: int,
        selector: Selector | None = None,
        prefix: str | None = None,
    ) -> Page:
        """One page (see the contract). Every read is a bounded range of an index: a window of ids
        (`newest`), or names from a prefix; objects a selector or state leaves out are read past, up
        to EXAMINED per page, after which the page ends early with its `next`."""
        if prefix is not None:
            return self._by_prefix(kind, owner, prefix, state, selector, before, limit)
        if owner is None and state is not None:
            raise ValueError("a state filter needs an owner")
        keep = (lambda d: True) if selector is None else (lambda d: selector.matches(d.get("labels")))
        values = selector.index_values() if selector is not None else None
        if owner is None:  # everybody's: the insert-only listing
            return self._examine(self._listing_ids(kind, before), None, keep, limit)
        if values is not None:  # the listing's label index holds the candidates
            sources = [self._label_ids(owner, kind, v, before) for v in values]
            return self._examine(_merge_newest(sources), state, keep, limit)
        counts = self.counts(owner, kind)
        states = [state] if state is not None else [s for s in STATES if counts.get(s)]
        sources = [self._state_docs(owner, kind, s, before, counts.get(s, 0)) for s in states]
        return self._take(_merge_newest(sources), keep, limit)

    # ----- the bounded reads behind the lists

    def _state_docs(self, owner: str, kind: str, state: str, before: str | None, known: int) -> Iterator[Doc]:
        def read(rng: dict[str, str], n: int) -> list[Doc]:
            flt = {"owner": owner, "kind": kind, "state": state, "_id": rng}
            return list(self.objects.find(flt).sort("_id", DESCENDING).limit(n))

        if known <= SMALL:  # a prefix this small is read at once
            return iter(read({"$lt": before or "~"}, SMALL))
        return self._windowed(read, owner, kind, before, OBJECTS_READ)

    def _listing_ids(self, kind: str, before: str | None) -> Iterator[Doc]:
        def read(rng: dict[str, str], n: int) -> list[Doc]:
            return list(
                self.listing.find({"kind": kind, "_id": rng}, {"_id": 1}).sort("_id", DESCENDING).limit(n)
            )

        return self._windowed(read, "*", kind, before, ENTRIES_READ)

    def _label_ids(self, who: str, kind: str, value: str, before: str | None) -> Iterator[Doc]:
        """A label's entries. A read of the label index costs what it finds, not what the window
        holds of the owner's other objects: a window that found few of the label makes the next
        four times wider (up to LABEL_WIDEST), one that found many makes it narrower."""
        width = [ENTRIES_READ]

        def read(rng: dict[str, str], n: int) -> list[Doc]:
            flt = {"w": who, "kind": kind, "l": value, "_id": rng}
            found = list(self.listing.find(flt, {"_id": 1}).sort("_id", DESCENDING).limit(n))
            if len(found) < ENTRIES_READ // 10:
                width[0] = min(width[0] * 4, LABEL_WIDEST)
            elif len(found) > ENTRIES_READ:
                width[0] = max(ENTRIES_READ, width[0] // 4)
            return found

        return self._windowed(read, who, kind, before, lambda: width[0])

    def _windowed(
        self,
        read: Callable[[dict[str, str], int], list[Doc]],
        who: str,
        kind: str,
        before: str | None,
        target: directory.Target,
    ) -> Iterator[Doc]:
        """Entries below `before`, newest first, read in windows of ids that the directory sizes to
        hold about `target` of who's objects of this kind each (whatever the filter leaves of them)."""
        top = directory.made_in(before) + 1 if before else int(time.time() * 1000) + 1000
        for lo, hi in directory.windows(self._directory_read, who, kind, top, target):
            yield from read({"$gte": floor_ms(lo), "$lt": min(before or "~", floor_ms(hi))}, EXAMINED)

    def _directory_read(self, key: str, lo: int, hi: int) -> dict[int, directory.Bucket]:
        return directory.merged(self.directory.find({"p": key, "t": {"$gte": lo, "$lt": hi}}))

    def _examine(
        self, ids: Iterator[Doc], state: str | None, keep: Callable[[Doc], bool], limit: int
    ) -> Page:
        """Objects of these ids (newest first) that are in `state` and `keep` accepts."""

        def docs() -> Iterator[Doc]:
            while True:
                part = [d["_id"] for d in itertools.islice(ids, IN_CHUNK)]
                if not part:
                    return
                found = {d["_id"]: d for d in self.fetch(part)}
                for oid in part:
                    doc = found.get(oid)
                    yield doc if doc is not None and (state is None or doc.get("state") == state) else {"_id": oid, "_skip": True}  # fmt: skip

        return self._take(docs(), lambda d: not d.get("_skip") and keep(d), limit)

    @staticmethod
    def _take(docs: Iterator[Doc], keep: Callable[[Doc], bool], limit: int) -> Page:
        out: list[Doc] = []
        for examined, doc in enumerate(docs, 1):
            if keep(doc):
                doc.pop("attempts", None)
                out.append(doc)
                if len(out) == limit:
                    return Page(out, doc["_id"])
            if examined >= max(EXAMINED, 4 * limit):  # a bounded page: the rest comes with `next`
                return Page(out, doc["_id"])
        return Page(out, None)

    def _by_prefix(
        self,
        kind: str,
        owner: str | None,
        prefix: str,
        state: str | None,
        selector: Selector | None,
        before: str | None,
        limit: int,
    ) -> Page:
        """Names that start with `prefix`, in name order; `before` is the last name of the page before."""
        if owner is None:
            raise ValueError("a name search needs an owner")
        rng: dict[str, str] = {"$gte": prefix, "$lt": prefix + "\U0010ffff"}
        if before is not None:
            rng["$gt"] = before
            del rng["$gte"]
        entries = list(
            self.names.find({"w": owner, "k": kind, "n": rng}, {"o": 1, "n": 1}).sort("n", 1).limit(EXAMINED)
        )
        by_name = {e["o"]: e["n"] for e in entries}
        found = {d["_id"]: d for d in self.fetch(list(by_name))}
        out: list[Doc] = []
        for e in entries:
            doc = found.get(e["o"])
            if doc is None or (state is not None and doc.get("state") != state):
                continue
            if selector is not None and not selector.matches(doc.get("labels")):
                continue
            doc.pop("attempts", None)
            out.append(doc)
            if len(out) == limit:
                return Page(out, e["n"])
        return Page(out, entries[-1]["n"] if len(entries) == EXAMINED else None)


def _merge_newest(sources: list[Iterator[Doc]]) -> Iterator[Doc]:
    """Several newest-first streams as one, newest first, each read only as far as needed."""
    return heapq.merge(*sources, key=lambda d: d["_id"], reverse=True)
