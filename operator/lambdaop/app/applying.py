"""Applying specs: create the object, or bring the stored one in line with its spec.

Each object is keyed by (owner, kind, name) and compared by a hash of its
spec: an unchanged spec is left alone, a changed one is a new generation
(rescheduled while scheduled, restarted once finished, refused while it runs).
New objects of a batch are written together (one transaction per batch of
the writer), so thousands of documents apply in seconds. Who manages an
object is recorded: the folder never changes an object managed through the
API, and the API changes a folder-managed one only with `force`, which takes
it over. Called by the API's /specs route and the folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from lambdaop.app.batch import Checker
from lambdaop.app.service import CONFLICT_RETRIES, Service, Stale, first_due, manager_for
from lambdaop.core.clock import iso
from lambdaop.core.errors import Conflict, NotFound, Problem
from lambdaop.core.logs import about
from lambdaop.engine import machine
from lambdaop.engine.ondemand import past_times
from lambdaop.engine.progress import Phase
from lambdaop.engine.record import Change, PendingSpec, Source, StoredObject
from lambdaop.loop.events import Action
from lambdaop.spec import AnySpec, Document, spec_hash, spec_json
from lambdaop.store.contract import WriteOutcome
from lambdaop.store.writer import Pending

log = logging.getLogger("lambdaop.service")


class ApplyAction(StrEnum):
    """What applying one document did."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    RESCHEDULED = "rescheduled"
    RESTARTED = "restarted"
    DEFERRED = "deferred"  # a run is going on: the edit applies when it ends
    REFUSED = "refused"
    INVALID = "invalid"


@dataclass(frozen=True)
class Applied:
    """What applying one document did, to which object."""

    action: ApplyAction
    kind: str | None
    name: str | None
    id: str | None = None
    state: str | None = None
    message: str | None = None
    problems: tuple[Problem, ...] = ()
    record: StoredObject | None = field(default=None, repr=False, compare=False)
    stalled: bool = False  # refused until the file or the manager changes (not worth trying again)
    warnings: tuple[str, ...] = ()  # taken, but worth saying: a time already past

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action.value, "kind": self.kind, "name": self.name}
        if self.id:
            out["id"] = self.id
        if self.state:
            out["state"] = self.state
        if self.message:
            out["message"] = self.message
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class Placed:
    """A document to apply, with its owner and where it came from (a folder, or a user of the API)."""

    doc: Document
    owner: str
    source: Source | None = None
    manager: str | None = None  # api:<user>; a folder's documents carry their folder in `source`
    force: bool = False  # take over an object the folder manages


def _folder_file(record: StoredObject) -> str:
    """The file of the specs folder that a folder-managed object comes from (or the folder)."""
    file = record.source.file if record.source else None
    folder = record.managed_by.removeprefix("folder:")
    return f"{folder}/{file}" if file else folder


def managed_message(record: StoredObject, verb: str = "apply") -> str:
    """Why a folder-managed object is refused to the API, naming its file (the API's flag,
    `force=true`, is named; the CLI and the page say theirs)."""
    after = "to take it over" if verb == "apply" else "anyway"
    return (
        f"{record.kind.value} {record.name} is managed by the specs folder ({_folder_file(record)}); "
        f"change it there, or {verb} with force=true {after}"
    )


def folder_note(record: StoredObject) -> str:
    """What a preview says of a folder-managed object: the folder applies its file; an apply from
    elsewhere needs force (and takes it over)."""
    return (
        f"{record.kind.value} {record.name} is managed by the specs folder ({_folder_file(record)}), "
        "which applies it from there; apply with force=true to take it over"
    )


def source_of(d: Document, file: str | None, folder: str | None = None) -> Source | None:
    if not file:
        return None
    return Source(file=file, line=d.line, document=d.index, folder=folder)


class Applier:
    def __init__(self, service: Service, checker: Checker) -> None:
        self.service = service
        self.checker = checker

    def apply(
        self,
        obj: AnySpec,
        owner: str,
        source: Source | None = None,
        manager: str | None = None,
        force: bool = False,
    ) -> Applied:
        """Create the object, or bring the stored one in line with this spec."""
        self.checker.raise_for_targets(obj)
        service, kind, name = self.service, obj.kind, obj.metadata.name
        incoming = manager_for(source, manager, owner)
        for _ in range(CONFLICT_RETRIES):
            now = service.now()
            current = service.find(owner, kind, name)
            taken_from = None
            if current is not None and current.managed_by != incoming and not current.pruned:
                refusal = self._managed_elsewhere(current, incoming, force)
                if refusal is not None:
                    return refusal
                taken_from = current
                base = current.source or Source()
                source = replace(
                    base, folder=None, taken_over_from=current.managed_by, taken_over_by=incoming
                )
            if current is None:
                service.require_store(creating=True)
                record = service.new_record(obj, owner, now, source, manager)
                op = service.insert_op(record, now)
                outcome = service.writer.write(op, timeout=service.deadline)
                if outcome is WriteOutcome.EXISTS:
                    continue  # created meanwhile by another writer: compare with it
                if outcome is not WriteOutcome.OK:
                    return Applied(ApplyAction.REFUSED, kind, name, message=f"could not be stored ({outcome.value}); try again")  # fmt: skip
                service.created(record, op)
                warned = tuple(past_times(obj.spec, now))
                return Applied(ApplyAction.CREATED, kind, name, record.id, record.state, record=record, warnings=warned)  # fmt: skip
            result = self._reapply(current, obj, source, incoming)
            if result is not None:
                if taken_from is not None and result.action is not ApplyAction.REFUSED:
                    where = taken_from.source.file if taken_from.source and taken_from.source.file else taken_from.managed_by  # fmt: skip
                    note = f"taken over from the specs folder ({where}): the folder no longer manages it"
                    result = replace(result, message="; ".join(m for m in (note, result.message) if m))
                if result.action in (ApplyAction.RESCHEDULED, ApplyAction.RESTARTED):
                    result = replace(result, warnings=tuple(past_times(obj.spec, now)))
                return result
        raise Conflict(f"{kind} {name} is changing too fast to apply; try again")

    @staticmethod
    def _managed_elsewhere(current: StoredObject, incoming: str, force: bool) -> Applied | None:
        """None when `incoming` may change the object; else the refusal."""
        held_by = current.managed_by
        kind, name = current.kind.value, current.name
        if incoming.startswith("folder:"):
            message = f"{kind} {name} is managed by {held_by}; the folder leaves it alone (remove it here, or delete it there)"  # fmt: skip
            return Applied(ApplyAction.REFUSED, kind, name, current.id, current.state, message, record=current, stalled=True)  # fmt: skip
        if held_by.startswith("folder:") and not force:
            raise Conflict(managed_message(current))
        return None

    def managed_by_folder(self, docs: list[Document], owner: str) -> list[Problem]:
        """The documents that would change objects the specs folder manages (409 unless forced)."""
        problems = []
        by_kind: dict[str, list[Document]] = {}
        for d in docs:
            if d.spec is not None:
                by_kind.setdefault(d.spec.kind, []).append(d)
        for kind, group in by_kind.items():
            with self.service.read():  # a request's read: a deadline, never a hang
                found = self.service.store.find_by_names(owner, kind, [d.spec.metadata.name for d in group if d.spec])  # fmt: skip
            for d in group:
                doc = found.get(d.spec.metadata.name) if d.spec else None
                record = StoredObject.from_storage(doc) if doc is not None else None
                if record is not None and record.managed_by.startswith("folder:") and not record.pruned:
                    problems.append(Problem(managed_message(record), field="metadata.name", line=d.line, document=d.index))  # fmt: skip
        return problems

    def preview(
        self, docs: list[Document], owner: str, manager: str, force: bool = False
    ) -> list[dict[str, Any]]:
        """What applying these (valid) documents would do, without doing it: per document the
        action it would answer, and the stored and the new spec. A document of an object the
        specs folder manages answers `refused` (unless forced) with a note, and `change`: what
        applying it there (its file, or with force) would do, so a specs repository's change
        can be previewed."""
        out: list[dict[str, Any]] = []
        by_kind: dict[str, dict[str, Any]] = {}
        for d in docs:
            if d.spec is not None and d.spec.kind not in by_kind:
                names = [
                    x.spec.metadata.name for x in docs if x.spec is not None and x.spec.kind == d.spec.kind
                ]
                with self.service.read():
                    by_kind[d.spec.kind] = self.service.store.find_by_names(owner, d.spec.kind, names)
        for d in docs:
            assert d.spec is not None
            obj, found = d.spec, by_kind[d.spec.kind].get(d.spec.metadata.name)
            entry: dict[str, Any] = {
                "kind": obj.kind,
                "name": obj.metadata.name,
                "line": d.line,
                "desired": spec_json(obj),
            }
            if found is None:
                out.append({**entry, "action": ApplyAction.CREATED.value})
                continue
            current = StoredObject.from_storage(found)
            entry["current"] = current.pending.spec if current.pending else current.spec
            entry["id"], entry["state"] = current.id, current.state
            if current.spec_hash == spec_hash(obj) and not current.pruned and current.pending is None:
                action = ApplyAction.UNCHANGED
            elif current.pending is not None and current.pending.spec_hash == spec_hash(obj):
                action = ApplyAction.DEFERRED
            else:
                phase = current.phase
                action = ApplyAction.RESCHEDULED if phase is Phase.SCHEDULED else ApplyAction.RESTARTED if current.progress.final else ApplyAction.DEFERRED  # fmt: skip
            if current.managed_by != manager and not current.pruned and current.managed_by.startswith("folder:") and not force:  # fmt: skip
                refused = {"action": ApplyAction.REFUSED.value, "change": action.value, "message": folder_note(current)}  # fmt: skip
                out.append({**entry, **refused})
            else:
                out.append({**entry, "action": action.value})
        return out

    def apply_documents(
        self,
        docs: list[Document],
        owner: str,
        file: str | None = None,
        folder: str | None = None,
        manager: str | None = None,
        force: bool = False,
    ) -> list[Applied]:
        """Apply every valid document of one file or request (invalid ones are answered with their problems)."""
        return self.apply_placed([Placed(d, owner, source_of(d, file, folder), manager, force) for d in docs])

    def apply_placed(self, items: list[Placed]) -> list[Applied]:
        """Apply documents, each with its owner and source, in the order given.

        New objects are written in batches (one transaction per batch, counted
        in it); existing ones go through `apply`.
        """
        service = self.service
        service.require_store(creating=True)
        now = service.now()
        results: list[Applied | None] = [None] * len(items)
        fresh: list[tuple[int, StoredObject, Any]] = []
        groups: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            d = item.doc
            refused = self.checker.targets(d.spec, d.line, d.index) if d.spec is not None else []
            if d.spec is None or refused:
                results[i] = Applied(
                    ApplyAction.INVALID, d.kind, d.name, problems=tuple(d.problems or refused)
                )
            else:
                groups.setdefault((item.owner, d.spec.kind), []).append(i)
        writer = service.writer
        pending = Pending()
        for (owner, kind), group in groups.items():
            # a commit's worth at a time, handed to the writer at once: the next part is read and
            # prepared here while the store commits this one
            for start in range(0, len(group), writer.max_batch):
                indexes = group[start : start + writer.max_batch]
                names = [items[i].doc.spec.metadata.name for i in indexes if items[i].doc.spec]  # type: ignore[union-attr]
                with service.read():  # each commit's worth has the deadline of a read
                    existing = service.store.find_by_names(owner, kind, names)
                ops = []
                for i in indexes:
                    spec = items[i].doc.spec
                    assert spec is not None
                    if spec.metadata.name in existing:
                        results[i] = self._apply_one(items[i])
                    else:
                        record = service.new_record(spec, owner, now, items[i].source, items[i].manager)
                        fresh.append((i, record, service.insert_op(record, now)))
                        ops.append(fresh[-1][2])
                if ops:
                    pending += writer.start(ops)
        outcomes = writer.wait(pending) if fresh else []
        created = 0
        for (i, record, op), outcome in zip(fresh, outcomes, strict=True):
            if outcome is WriteOutcome.OK:
                created += 1
                service.loop.notify(record, op.claim_until)
                warned = tuple(past_times(record.plan, now))
                results[i] = Applied(ApplyAction.CREATED, record.kind.value, record.name, record.id, record.state, record=record, warnings=warned)  # fmt: skip
            else:  # created meanwhile by another writer (compare with it), or refused
                results[i] = self._apply_one(items[i])
        if created:
            log.info("created %d object(s)", created)
        return [r for r in results if r is not None]

    def _apply_one(self, item: Placed) -> Applied:
        d = item.doc
        assert d.spec is not None
        try:
            return self.apply(d.spec, item.owner, item.source, item.manager, item.force)
        except Conflict as exc:
            return Applied(ApplyAction.REFUSED, d.kind, d.name, message=exc.message)

    def _reapply(
        self, current: StoredObject, obj: AnySpec, source: Source | None, manager: str
    ) -> Applied | None:
        """Bring a stored object in line with `obj`: unchanged; a new generation now (scheduled:
        rescheduled; finished: restarted); or, while a run goes on, a new generation that applies
        when it ends (deferred). None when the object moved meanwhile (read it again)."""
        service = self.service
        kind, name, oid = obj.kind, obj.metadata.name, current.id
        new_hash = spec_hash(obj)
        now = service.now()
        if current.spec_hash == new_hash and not current.pruned:
            return self._unchanged(current, source, manager, now)
        waiting = current.pending
        if waiting is not None and waiting.spec_hash == new_hash:
            return Applied(ApplyAction.DEFERRED, kind, name, oid, current.state, deferred_message(current, waiting.generation), record=current)  # fmt: skip
        generation = current.generation + 1
        fields = Change(
            updated=now, spec=spec_json(obj), spec_hash=new_hash, generation=generation, pruned=False,
            labels=dict(obj.metadata.labels), annotations=dict(obj.metadata.annotations), manager=manager,
            source=source, clear_pending=True,
        )  # fmt: skip
        pending = PendingSpec(
            spec_json(obj), new_hash, generation, now, dict(obj.metadata.labels),
            dict(obj.metadata.annotations), manager, source,
        )  # fmt: skip
        fresh = machine.start(
            obj.spec, first_due(obj, now), current.progress.salt or secrets.randbits(48), now
        )

        def decide(record: StoredObject, at: Any) -> Change:
            if record.phase is Phase.SCHEDULED or record.progress.final:
                return replace(fields, progress=fresh)
            return Change(updated=now, pending=pending)  # a run is going on: it finishes first

        before = current.phase
        try:
            answer = service.change(oid, None, None, Action.REPLACE, (fields, fresh, pending), decide)
        except Conflict as exc:
            return Applied(ApplyAction.REFUSED, kind, name, oid, current.state, exc.message)
        except Stale:
            return None
        record = answer.record
        if record.pending is not None and record.pending.spec_hash == new_hash:
            log.info("%s: a run is going on; generation %s applies when it ends", record.label, generation, extra=about(record))  # fmt: skip
            return Applied(ApplyAction.DEFERRED, kind, name, oid, record.state, deferred_message(record, generation), record=record)  # fmt: skip
        action = ApplyAction.RESCHEDULED if before is Phase.SCHEDULED else ApplyAction.RESTARTED
        log.info("%s %s (generation %s), due %s", record.label, action.value, generation, iso(fresh.due), extra=about(record))  # fmt: skip
        back = "applied again after it was pruned" if current.pruned else None
        return Applied(action, kind, name, oid, record.state, back, record=record)

    def _unchanged(
        self, current: StoredObject, source: Source | None, manager: str, now: dt.datetime
    ) -> Applied:
        """The same spec: remember a new place (a moved document, an edited neighbour) or manager,
        and take back an edit that was waiting for the run going on."""
        moved = (source is not None and current.source != source) or manager != current.managed_by
        record, message = current, None
        if moved or current.pending is not None:
            change = Change(
                updated=now,
                source=source if moved else None,
                manager=manager if moved else None,
                clear_pending=current.pending is not None,
            )
            try:
                record = self.service.set(current, change)
                if current.pending is not None:
                    message = f"the waiting generation {current.pending.generation} is taken back"
            except (Conflict, NotFound, Stale):
                record = current
        return Applied(ApplyAction.UNCHANGED, current.kind.value, current.name, current.id, record.state, message, record=record)  # fmt: skip


def deferred_message(record: StoredObject, generation: int) -> str:
    return (
        f"{record.kind.value} {record.name} is {record.state} (generation {record.generation}); "
        f"generation {generation} applies when this run ends"
    )
