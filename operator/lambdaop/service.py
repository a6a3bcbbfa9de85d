"""Apply, cancel, modify and read objects: validation, store writes, waking the loop.

The one entry for every way work arrives (spec files at start, the watched
folder, the REST API). Writes that race the loop are conditional on the
object's fence, so a call that has started can never also be cancelled or
modified: exactly one of them wins. Called by runtime, api and watcher.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import machine
from .clock import Clock, to_utc
from .errors import Conflict, NotFound, Problem, SpecInvalid
from .machine import Progress
from .spec import AnySpec, Document, Task, spec_hash, spec_json
from .store import Counts, Store, new_id

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Applied:
    """What applying one document did."""

    action: str  # created | unchanged | rescheduled | restarted | refused | invalid
    kind: str | None
    name: str | None
    id: str | None = None
    state: str | None = None
    message: str | None = None
    problems: tuple[Problem, ...] = ()
    doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "kind": self.kind, "name": self.name}
        if self.id:
            out["id"] = self.id
        if self.state:
            out["state"] = self.state
        if self.message:
            out["message"] = self.message
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        return out


@dataclass(frozen=True)
class Placed:
    """A document to apply, with its owner and where it came from."""

    doc: Document
    owner: str
    source: dict[str, Any] | None = None


def first_due(obj: AnySpec, now: dt.datetime) -> dt.datetime:
    if obj.spec.at is not None:
        return to_utc(obj.spec.at)
    delay = obj.spec.after if isinstance(obj, Task) else obj.spec.initialDelay
    return to_utc(now + (delay or dt.timedelta(0)))


class Service:
    def __init__(self, store: Store, clock: Clock, notify: Callable[[dict[str, Any]], None]) -> None:
        self.store = store
        self.clock = clock
        self.notify = notify

    # ----- apply

    def create(self, obj: AnySpec, owner: str) -> dict[str, Any]:
        """Create a new object (the original routes); its name must be new."""
        now = to_utc(self.clock.now())
        doc = self._new_doc(obj, owner, now, None)
        self.store.insert_grouped(doc, (owner, doc["kind"], None, doc["state"]))
        self.notify(doc)
        log.info(
            "object %s: created %s %s/%s due %s", doc["_id"], obj.kind, owner, obj.metadata.name, doc["due"]
        )
        return doc

    def prune(self, owner: str, kind: str, name: str) -> dict[str, Any]:
        """The spec is gone: cancel the object if it is still scheduled, and mark it pruned."""
        for _ in range(CONFLICT_RETRIES):
            doc = self.store.find_by_name(owner, kind, name)
            if doc is None:
                raise NotFound(f"no {kind} named {name!r}")
            progress = Progress.from_storage(doc["progress"])
            fields: dict[str, Any] = {"pruned": True, "updated": to_utc(self.clock.now())}
            update: dict[str, Any] = {"$set": fields}
            new = progress
            if progress.phase is machine.Phase.SCHEDULED and not doc.get("lease_owner"):
                new = machine.cancel(progress, fields["updated"])
                fields.update(progress=new.for_storage(), state=new.phase.value)
                update["$unset"] = {"due": ""}
            if self.store.update_if(doc["_id"], doc["fence"], update):
                self._count(doc, progress.phase.value, new.phase.value)
                doc = {**doc, **fields, "fence": doc["fence"] + 1}
                doc.pop("due", None) if new.final else None
                self.notify(doc)
                log.info("object %s: pruned (%s)", doc["_id"], new.phase.value)
                return doc
        raise Conflict(f"{kind} {name} is changing too fast; try again")

    def apply(self, obj: AnySpec, owner: str, source: dict[str, Any] | None = None) -> Applied:
        """Create the object, or bring the stored one in line with this spec."""
        now = to_utc(self.clock.now())
        kind, name = obj.kind, obj.metadata.name
        for _ in range(CONFLICT_RETRIES):
            current = self.store.find_by_name(owner, kind, name)
            if current is None:
                doc = self._new_doc(obj, owner, now, source)
                try:
                    self.store.insert(doc)
                except Conflict:
                    continue  # created meanwhile by another writer: compare with it
                self._count(doc, None, doc["state"])
                self.notify(doc)
                log.info("object %s: created %s %s/%s due %s", doc["_id"], kind, owner, name, doc["due"])
                return Applied("created", kind, name, doc["_id"], doc["state"], doc=doc)
            result = self._reapply(current, obj, now, source)
            if result is not None:
                return result
        raise Conflict(f"{kind} {name} is changing too fast to apply; try again")

    def _reapply(
        self, current: dict[str, Any], obj: AnySpec, now: dt.datetime, source: dict[str, Any] | None
    ) -> Applied | None:
        kind, name, oid = obj.kind, obj.metadata.name, current["_id"]
        new_hash = spec_hash(obj)
        progress = Progress.from_storage(current["progress"])
        meta = {"labels": dict(obj.metadata.labels), "annotations": dict(obj.metadata.annotations)}
        if source is not None:
            meta["source"] = source
        if current.get("spec_hash") == new_hash and not current.get("pruned"):
            # same spec, new place (a moved document, an edited neighbour): remember where it is
            moved = source is not None and current.get("source") != source
            if moved and self.store.update_if(oid, current["fence"], {"$set": {"source": source}}):
                self.notify({**current, "source": source, "fence": current["fence"] + 1})
            return Applied("unchanged", kind, name, oid, progress.phase.value, doc=current)
        generation = current.get("generation", 1) + 1
        due = first_due(obj, now)
        base = {
            "spec": spec_json(obj),
            "spec_hash": new_hash,
            "generation": generation,
            "updated": now,
            "pruned": False,
            **meta,
        }
        if progress.phase is machine.Phase.SCHEDULED and not progress.in_flight:
            fresh = machine.start(obj.spec, due)
            action = "rescheduled"
        elif progress.final:
            fresh = machine.start(obj.spec, due)
            action = "restarted"
        else:
            return Applied(
                "refused",
                kind,
                name,
                oid,
                progress.phase.value,
                f"{kind} {name} is {progress.phase.value}; its spec can change once this run ends",
            )
        update = {"$set": {**base, "progress": fresh.for_storage(), "state": fresh.phase.value, "due": due}}
        if not self.store.update_if(oid, current["fence"], update):
            return None
        doc = {**current, **update["$set"], "fence": current["fence"] + 1}
        self._count(doc, progress.phase.value, fresh.phase.value)
        self.notify(doc)
        log.info("object %s: %s (generation %s), due %s", oid, action, generation, due)
        return Applied(action, kind, name, oid, fresh.phase.value, doc=doc)

    def _new_doc(
        self, obj: AnySpec, owner: str, now: dt.datetime, source: dict[str, Any] | None
    ) -> dict[str, Any]:
        due = first_due(obj, now)
        progress = machine.start(obj.spec, due)
        doc: dict[str, Any] = {
            "_id": new_id(),
            "kind": obj.kind,
            "owner": owner,
            "name": obj.metadata.name,
            "labels": dict(obj.metadata.labels),
            "annotations": dict(obj.metadata.annotations),
            "spec": spec_json(obj),
            "spec_hash": spec_hash(obj),
            "generation": 1,
            "state": progress.phase.value,
            "progress": progress.for_storage(),
            "due": due,
            "fence": 0,
            "attempts": [],
            "created": now,
            "updated": now,
        }
        if source is not None:
            doc["source"] = source
        return doc

    def apply_documents(
        self, docs: list[Document], owner: str, file: str | None = None, folder: str | None = None
    ) -> list[Applied]:
        """Apply every valid document of one file or request (invalid ones are answered with their problems)."""
        return self.apply_placed([Placed(d, owner, _source(d, file, folder)) for d in docs])

    def apply_placed(self, items: list[Placed]) -> list[Applied]:
        """Apply documents, each with its owner and source, in the order given.

        New objects are inserted in one batch and counted once, so thousands of
        documents (one big file, or many files changed together) apply in
        seconds; existing ones go through `apply`.
        """
        now = to_utc(self.clock.now())
        results: list[Applied | None] = [None] * len(items)
        fresh: list[tuple[int, dict[str, Any]]] = []
        groups: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            d = item.doc
            if d.spec is None:
                results[i] = Applied("invalid", d.kind, d.name, problems=tuple(d.problems))
            else:
                groups.setdefault((item.owner, d.spec.kind), []).append(i)
        for (owner, kind), indexes in groups.items():
            names = [items[i].doc.spec.metadata.name for i in indexes if items[i].doc.spec]  # type: ignore[union-attr]
            existing = self.store.find_by_names(owner, kind, names)
            for i in indexes:
                spec = items[i].doc.spec
                assert spec is not None
                if spec.metadata.name in existing:
                    results[i] = self._apply_one(items[i])
                else:
                    fresh.append((i, self._new_doc(spec, owner, now, items[i].source)))
        refused = self.store.insert_new([doc for _, doc in fresh])
        counts = Counts()
        for i, doc in fresh:
            if doc["_id"] in refused:  # created meanwhile by another writer: compare with it
                results[i] = self._apply_one(items[i])
                continue
            counts.move(doc["owner"], doc["kind"], None, doc["state"])
            self.notify(doc)
            results[i] = Applied("created", doc["kind"], doc["name"], doc["_id"], doc["state"], doc=doc)
        self.store.inc_counts(counts)
        if fresh:
            log.info("created %d object(s)", len(fresh) - len(refused))
        return [r for r in results if r is not None]

    def _apply_one(self, item: Placed) -> Applied:
        d = item.doc
        assert d.spec is not None
        try:
            return self.apply(d.spec, item.owner, item.source)
        except Conflict as exc:
            return Applied("refused", d.kind, d.name, message=exc.message)

    def _count(self, doc: dict[str, Any], old: str | None, new: str | None) -> None:
        counts = Counts()
        counts.move(doc["owner"], doc["kind"], old, new)
        self.store.inc_counts(counts)

    # ----- one object

    def get(self, object_id: str, owner: str | None) -> dict[str, Any]:
        doc = self.store.get(object_id)
        if doc is None or (owner is not None and doc.get("owner") != owner):
            raise NotFound(f"no object {object_id}")
        return doc

    def cancel(self, object_id: str, owner: str | None, kind: str | None = None) -> dict[str, Any]:
        """Cancel a scheduled object. Raises Conflict (with the reason) in any other state."""
        return self._change(object_id, owner, kind, lambda p, now: machine.cancel(p, now))

    def modify(
        self, object_id: str, owner: str | None, due: dt.datetime, kind: str | None = None
    ) -> dict[str, Any]:
        """Give a scheduled object a new start time."""
        if due.tzinfo is None:
            raise SpecInvalid("invalid time", [Problem("time needs an offset", field="at")])
        return self._change(object_id, owner, kind, lambda p, now: machine.reschedule(p, to_utc(due)))

    def _change(
        self,
        object_id: str,
        owner: str | None,
        kind: str | None,
        step: Callable[[Progress, dt.datetime], Progress],
    ) -> dict[str, Any]:
        for _ in range(CONFLICT_RETRIES):
            doc = self.get(object_id, owner)
            if kind is not None and doc["kind"] != kind:
                raise NotFound(f"no {kind} {object_id}")
            if doc.get("lease_owner"):
                raise Conflict(machine.not_scheduled(Progress.from_storage(doc["progress"]), "changed"))
            now = to_utc(self.clock.now())
            try:
                new = step(Progress.from_storage(doc["progress"]), now)
            except machine.Refused as exc:
                raise Conflict(str(exc)) from None
            fields = {"progress": new.for_storage(), "state": new.phase.value, "updated": now}
            update: dict[str, Any] = {"$set": fields}
            if new.due is not None:
                fields["due"] = new.due
            else:
                update["$unset"] = {"due": ""}
            if self.store.update_if(object_id, doc["fence"], update):
                self._count(doc, doc["state"], new.phase.value)
                doc = {**doc, **fields, "fence": doc["fence"] + 1}
                if new.due is None:
                    doc.pop("due", None)
                self.notify(doc)
                log.info(
                    "object %s: %s", object_id, new.phase.value if new.final else f"rescheduled to {new.due}"
                )
                return doc
        raise Conflict(f"object {object_id} is changing too fast; try again")


def _source(d: Document, file: str | None, folder: str | None = None) -> dict[str, Any] | None:
    if not file:
        return None
    source: dict[str, Any] = {"file": file, "line": d.line, "document": d.index}
    if folder:
        source["folder"] = folder
    return source
