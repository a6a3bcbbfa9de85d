"""The runs list (MongoDB): one document per ended run, keyed so each read is a range of `_id`.

A run's `_id` is `owner␟result␟id`, its id made at the run's end. The list of
an owner's failed runs since a time is one range of `_id` behind the equality
of owner and result (the `by_result` index: the embedded server scans the
whole collection for a range of `_id` alone), read
newest first in windows of time that grow fourfold from now back to `since`
(the embedded server reads every entry of a range before it applies a limit,
so each read costs what its window holds); with no result asked, the three
results' ranges are merged. Label selectors, kinds and name prefixes are tested
on what is read, at most EXAMINED runs a page. `expires` (a TTL index) keeps the
collection to RUNS_KEPT_FOR. Written only by `commit`, inside its transaction.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Iterator

from pymongo import DESCENDING

from lambdaop.core.labels import Selector
from lambdaop.store.contract import RUN_RESULTS, RUNS_KEPT_FOR, Doc, Page, run_key, run_matches
from lambdaop.store.ids import floor, made_at
from lambdaop.store.mongo.base import Base
from lambdaop.store.mongo.objects import EXAMINED

EPOCH = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # nothing in the runs list is older

SEP = "\x1f"


def run_entry(doc: Doc) -> Doc:
    """The stored document of a run's record."""
    key, _ = run_key(doc)
    return {**doc, "_id": key, "expires": doc["finished"] + RUNS_KEPT_FOR}


def rid_of(doc: Doc) -> str:
    return str(doc["_id"]).rsplit(SEP, 1)[1]


class Runs(Base):
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
        streams = [self._newest(owner, r, before, since) for r in results]
        out: list[Doc] = []
        last: str | None = None
        for examined, doc in enumerate(heapq.merge(*streams, key=rid_of, reverse=True), 1):
            last = rid_of(doc)
            if run_matches(doc, selector, kind, prefix):
                out.append({**doc, "id": last})
                if len(out) == limit:
                    return Page(out, last)
            if examined >= max(EXAMINED, 4 * limit):
                return Page(out, last)
        return Page(out, None)

    def _newest(
        self, owner: str, result: str, before: str | None, since: dt.datetime | None
    ) -> Iterator[Doc]:
        prefix = f"{owner}{SEP}{result}{SEP}"

        def read(lo: str, hi: str) -> list[Doc]:
            # owner and result first: the embedded server reads a range of `_id` alone by scanning
            # the collection, and a range behind their equality on the `by_result` index
            rng = {"$gte": prefix + lo, "$lt": prefix + hi}
            found = self.runs.find({"owner": owner, "result": result, "_id": rng}, {"expires": 0})
            return list(found.sort("_id", DESCENDING).limit(EXAMINED))

        return windows(read, before, since)


def windows(read: Callable[[str, str], list[Doc]], before: str | None, since: dt.datetime | None) -> Iterator[Doc]:  # fmt: skip
    """Entries with ids in [floor(since), before), newest first, read as windows of time growing
    fourfold from 64 ms back from `before` (or now), each one bounded range read."""
    hi = before or "~"
    bottom = max(since, EPOCH) if since is not None else EPOCH
    top = made_at(before) if before else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    width = dt.timedelta(milliseconds=64)
    while top > bottom:
        start = top - width
        if start <= bottom:
            yield from read(floor(since) if since is not None else "", hi)
            return
        lo = floor(start)
        yield from read(lo, hi)
        hi, top, width = lo, start, width * 4
