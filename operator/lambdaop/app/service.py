"""Apply, cancel, modify and read objects: validation, store writes, waking the loop.

The one entry for every way work arrives (the watched folder, the REST API,
`apply -f`). Every write is an `Op` through the writer (group commit), fenced
on the object's version, with its counter move in the same transaction. An
object this process holds (its call is due within the claim window) is
changed through the loop, which either withdraws the call or answers that it
has already left; one held by another live process is refused with the
reason; any other is changed under a guard that no claim can slip past.
Called by runtime, api and watcher.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdaop.core.clock import Clock, to_utc
from lambdaop.core.errors import Conflict, NotFound, Problem, SpecInvalid
from lambdaop.core.logs import about
from lambdaop.engine import machine
from lambdaop.engine.machine import Progress
from lambdaop.loop.outbound import SECURE, Policy, Refused
from lambdaop.loop.reconciler import NotHeld, Reconciler
from lambdaop.spec import AnySpec, Document, Task, spec_hash, spec_json, targets
from lambdaop.store.mongo import EXISTS, HELD, OK, STALE, Op, Store, new_id
from lambdaop.store.writer import Writer

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 8


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
    """A document to apply, with its owner and where it came from (a folder, or a user of the API)."""

    doc: Document
    owner: str
    source: dict[str, Any] | None = None
    manager: str | None = None  # api:<user>; a folder's documents carry their folder in `source`
    force: bool = False  # take over an object the folder manages


def manager_of(doc: dict[str, Any]) -> str:
    """Who keeps an object in line with its spec: `folder:<path>` or `api:<user>`."""
    if doc.get("manager"):
        return str(doc["manager"])
    folder = (doc.get("source") or {}).get("folder")
    return f"folder:{folder}" if folder else f"api:{doc.get('owner')}"


def _manager(source: dict[str, Any] | None, manager: str | None, owner: str) -> str:
    if source and source.get("folder"):
        return f"folder:{source['folder']}"
    return manager or f"api:{owner}"


def first_due(obj: AnySpec, now: dt.datetime) -> dt.datetime:
    if obj.spec.at is not None:
        return to_utc(obj.spec.at)
    delay = obj.spec.after if isinstance(obj, Task) else obj.spec.initialDelay
    return to_utc(now + (delay or dt.timedelta(0)))


def label(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')} {doc.get('owner')}/{doc.get('name')}"


class Service:
    def __init__(
        self, store: Store, writer: Writer, loop: Reconciler, clock: Clock, policy: Policy = SECURE
    ) -> None:
        self.store = store
        self.writer = writer
        self.loop = loop
        self.clock = clock
        self.policy = policy
        settings = loop.settings
        self.window = settings.claim_window
        self.lease = settings.lease

    # ----- checking

    def target_problems(
        self, obj: AnySpec, line: int | None = None, document: int | None = None
    ) -> list[Problem]:
        """The calls of a spec the outbound policy refuses, each naming its field."""
        problems = []
        for field_path, invoke in targets(obj):
            try:
                self.policy.check_url(invoke.url)
            except Refused as exc:
                problems.append(Problem(str(exc), field=field_path, line=line, document=document))
        return problems

    def _check(self, obj: AnySpec) -> None:
        problems = self.target_problems(obj)
        if problems:
            raise SpecInvalid("invalid spec", problems)

    # ----- creating

    def _new_doc(
        self,
        obj: AnySpec,
        owner: str,
        now: dt.datetime,
        source: dict[str, Any] | None,
        manager: str | None = None,
    ) -> dict[str, Any]:
        due = first_due(obj, now)
        progress = machine.start(obj.spec, due, secrets.randbits(48), now)
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
            "fence": 0,
            "created": now,
            "updated": now,
        }
        if progress.due is not None:
            doc["due"] = progress.due
        if source is not None:
            doc["source"] = source
        doc["manager"] = _manager(source, manager, owner)
        return doc

    def _insert_op(self, doc: dict[str, Any], now: dt.datetime) -> Op:
        """New work due within the claim window is created already held by this process."""
        op = Op(doc["_id"], doc["owner"], doc["kind"], None, doc["state"], doc=doc)
        if doc.get("due") is not None and doc["due"] <= now + self.window:
            op.claim_until = max(doc["due"], now) + self.lease
        return op

    def _created(self, doc: dict[str, Any], op: Op) -> None:
        self.loop.notify(doc, op.claim_until)
        due = doc["due"].isoformat() if doc.get("due") else "(no run due)"
        log.info("%s created, due %s", label(doc), due, extra=about(doc))

    def create(self, obj: AnySpec, owner: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a new object (the original routes); its name must be new."""
        self._check(obj)
        now = to_utc(self.clock.now())
        doc = {**self._new_doc(obj, owner, now, None), **(extra or {})}
        op = self._insert_op(doc, now)
        outcome = self.writer.write(op)
        if outcome == EXISTS:
            raise Conflict(f"a {obj.kind} named {obj.metadata.name!r} already exists")
        if outcome != OK:
            raise Conflict(f"the {obj.kind} could not be stored ({outcome}); try again")
        self._created(doc, op)
        return doc

    def apply(
        self,
        obj: AnySpec,
        owner: str,
        source: dict[str, Any] | None = None,
        manager: str | None = None,
        force: bool = False,
    ) -> Applied:
        """Create the object, or bring the stored one in line with this spec.

        An object the specs folder manages is changed through the API only with
        `force` (which takes it over: the folder then leaves it alone); the
        folder never changes an object managed through the API.
        """
        self._check(obj)
        kind, name = obj.kind, obj.metadata.name
        incoming = _manager(source, manager, owner)
        for _ in range(CONFLICT_RETRIES):
            now = to_utc(self.clock.now())
            current = self.store.find_by_name(owner, kind, name)
            if current is not None and manager_of(current) != incoming:
                refusal = self._managed_elsewhere(current, incoming, force)
                if refusal is not None:
                    return refusal
                source = {
                    **(current.get("source") or {}),
                    "takenOverFrom": manager_of(current),
                    "takenOverBy": incoming,
                }
                source.pop("folder", None)
            if current is None:
                doc = self._new_doc(obj, owner, now, source, manager)
                op = self._insert_op(doc, now)
                outcome = self.writer.write(op)
                if outcome == EXISTS:
                    continue  # created meanwhile by another writer: compare with it
                if outcome != OK:
                    return Applied(
                        "refused", kind, name, message=f"could not be stored ({outcome}); try again"
                    )
                self._created(doc, op)
                return Applied("created", kind, name, doc["_id"], doc["state"], doc=doc)
            result = self._reapply(current, obj, now, source, incoming)
            if result is not None:
                return result
        raise Conflict(f"{kind} {name} is changing too fast to apply; try again")

    def _managed_elsewhere(self, current: dict[str, Any], incoming: str, force: bool) -> Applied | None:
        """None when `incoming` may change the object; else the refusal."""
        held_by = manager_of(current)
        kind, name, oid = current["kind"], current["name"], current["_id"]
        if incoming.startswith("folder:"):
            return Applied(
                "refused", kind, name, oid, current.get("state"),
                f"{kind} {name} is managed by {held_by}; the folder leaves it alone (remove it here, or delete it there)",
            )  # fmt: skip
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
            found = self.store.find_by_names(owner, kind, [d.spec.metadata.name for d in group if d.spec])
            for d in group:
                doc = found.get(d.spec.metadata.name) if d.spec else None
                if doc is not None and manager_of(doc).startswith("folder:"):
                    problems.append(
                        Problem(managed_message(doc), field="metadata.name", line=d.line, document=d.index)
                    )
        return problems

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
        return self.apply_placed([Placed(d, owner, _source(d, file, folder), manager, force) for d in docs])

    def apply_placed(self, items: list[Placed]) -> list[Applied]:
        """Apply documents, each with its owner and source, in the order given.

        New objects are written in batches (one transaction per batch, counted
        in it), so thousands of documents apply in seconds; existing ones go
        through `apply`.
        """
        now = to_utc(self.clock.now())
        results: list[Applied | None] = [None] * len(items)
        fresh: list[tuple[int, dict[str, Any], Op]] = []
        groups: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            d = item.doc
            refused = self.target_problems(d.spec, d.line, d.index) if d.spec is not None else []
            if d.spec is None or refused:
                results[i] = Applied("invalid", d.kind, d.name, problems=tuple(d.problems or refused))
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
                    doc = self._new_doc(spec, owner, now, items[i].source, items[i].manager)
                    fresh.append((i, doc, self._insert_op(doc, now)))
        outcomes = self.writer.write_many([op for _, _, op in fresh]) if fresh else []
        created = 0
        for (i, doc, op), outcome in zip(fresh, outcomes, strict=True):
            if outcome == OK:
                created += 1
                self.loop.notify(doc, op.claim_until)
                results[i] = Applied("created", doc["kind"], doc["name"], doc["_id"], doc["state"], doc=doc)
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
            return Applied("refused", d.kind, d.name, message=exc.message)

    def _reapply(
        self,
        current: dict[str, Any],
        obj: AnySpec,
        now: dt.datetime,
        source: dict[str, Any] | None,
        manager: str,
    ) -> Applied | None:
        kind, name, oid = obj.kind, obj.metadata.name, current["_id"]
        new_hash = spec_hash(obj)
        progress = Progress.from_storage(current["progress"])
        meta: dict[str, Any] = {
            "labels": dict(obj.metadata.labels),
            "annotations": dict(obj.metadata.annotations),
            "manager": manager,
        }
        if source is not None:
            meta["source"] = source
        if current.get("spec_hash") == new_hash and not current.get("pruned"):
            # same spec, new place (a moved document, an edited neighbour) or a new manager: remember it
            moved = {k: v for k, v in (("source", source), ("manager", manager)) if v is not None and current.get(k) != v}  # fmt: skip
            if moved and (source is not None or manager != manager_of(current)):
                with contextlib.suppress(Conflict, NotFound):
                    current = self._set(current, moved)
            return Applied("unchanged", kind, name, oid, progress.phase.value, doc=current)
        generation = current.get("generation", 1) + 1
        due = first_due(obj, now)
        fields = {
            "spec": spec_json(obj),
            "spec_hash": new_hash,
            "generation": generation,
            "updated": now,
            "pruned": False,
            **meta,
        }
        fresh = machine.start(obj.spec, due, progress.salt or secrets.randbits(48), now)
        if progress.phase is machine.Phase.SCHEDULED:
            action = "rescheduled"
        elif progress.final:
            action = "restarted"
        else:
            return self._refused_running(kind, name, oid, progress)
        try:
            doc = self._change(oid, None, None, "replace", (fields, fresh), _replace(fields, fresh, action))
        except Conflict as exc:
            return Applied("refused", kind, name, oid, progress.phase.value, exc.message)
        except _Stale:
            return None
        log.info(
            "%s %s (generation %s), due %s", label(doc), action, generation, due.isoformat(), extra=about(doc)
        )
        return Applied(action, kind, name, oid, doc["state"], doc=doc)

    @staticmethod
    def _refused_running(kind: str, name: str, oid: str, progress: Progress) -> Applied:
        return Applied(
            "refused",
            kind,
            name,
            oid,
            progress.phase.value,
            f"{kind} {name} is {progress.phase.value}; its spec can change once this run ends",
        )

    # ----- one object

    def get(self, object_id: str, owner: str | None) -> dict[str, Any]:
        doc = self.store.get(object_id)
        if doc is None or (owner is not None and doc.get("owner") != owner):
            raise NotFound(f"no object {object_id}")
        return doc

    def cancel(self, object_id: str, owner: str | None, kind: str | None = None) -> dict[str, Any]:
        """Cancel a scheduled object. Raises Conflict (with the reason) in any other state."""

        def decide(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
            return machine.cancel(p, now), {}

        doc = self._change(object_id, owner, kind, "cancel", {}, decide)
        log.info("%s cancelled", label(doc), extra=about(doc))
        return doc

    def modify(
        self, object_id: str, owner: str | None, due: dt.datetime, kind: str | None = None
    ) -> dict[str, Any]:
        """Give a scheduled object a new start time."""
        if due.tzinfo is None:
            raise SpecInvalid("invalid time", [Problem("time needs an offset", field="at")])
        due = to_utc(due)

        def decide(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
            return machine.reschedule(p, due), {}

        doc = self._change(object_id, owner, kind, "modify", due, decide)
        log.info("%s rescheduled to %s", label(doc), due.isoformat(), extra=about(doc))
        return doc

    def suspend(self, object_id: str, owner: str, kind: str | None = None) -> dict[str, Any]:
        """Pause a recurring object: no run starts until it is resumed (a run going on ends first)."""

        def decide(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
            return machine.suspend(_plan(doc), p), {}

        doc = self._change(object_id, owner, kind, "suspend", None, decide)
        log.info("%s suspended", label(doc), extra=about(doc))
        return doc

    def resume(self, object_id: str, owner: str, kind: str | None = None) -> dict[str, Any]:
        """A suspended recurring object runs again from its next run time."""

        def decide(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
            return machine.resume(_plan(doc), p, now), {}

        doc = self._change(object_id, owner, kind, "resume", None, decide)
        log.info("%s resumed; next run %s", label(doc), doc.get("due"), extra=about(doc))
        return doc

    def prune(self, owner: str, kind: str, name: str) -> dict[str, Any]:
        """The spec is gone: cancel the object if it is still scheduled, and mark it pruned."""
        for _ in range(CONFLICT_RETRIES):
            doc = self.store.find_by_name(owner, kind, name)
            if doc is None:
                raise NotFound(f"no {kind} named {name!r}")
            progress = Progress.from_storage(doc["progress"])
            try:
                if progress.phase is machine.Phase.SCHEDULED:
                    try:
                        doc = self._change(
                            doc["_id"], owner, kind, "cancel", {"pruned": True}, _cancel_pruned
                        )
                    except Conflict:
                        doc = self._set(doc, {"pruned": True})  # its call has started: it runs to the end
                else:
                    doc = self._set(doc, {"pruned": True})
            except _Stale:
                continue
            log.info("%s pruned (%s)", label(doc), doc["state"], extra=about(doc))
            return doc
        raise Conflict(f"{kind} {name} is changing too fast; try again")

    def _set(self, doc: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """Change fields that do not touch the object's progress (pruned, source)."""

        def decide(current: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
            return p, fields

        return self._change(doc["_id"], None, None, "set", fields, decide, keep_progress=True)

    def _change(
        self,
        object_id: str,
        owner: str | None,
        kind: str | None,
        request: str,
        payload: Any,
        decide: Callable[[dict[str, Any], Progress, dt.datetime], tuple[Progress, dict[str, Any]]],
        keep_progress: bool = False,
    ) -> dict[str, Any]:
        """One change of one object, through whoever may make it (see the module docstring)."""
        for _ in range(CONFLICT_RETRIES):
            doc = self.get(object_id, owner)
            if kind is not None and doc["kind"] != kind:
                raise NotFound(f"no {kind} {object_id}")
            if self.loop.holds(object_id):
                try:
                    written = self.loop.request(request, object_id, payload).result(timeout=60)
                except NotHeld:
                    continue
                except TimeoutError:
                    raise Conflict("the change was not confirmed in time; try again") from None
                self.loop.notify(written)
                return written
            now = to_utc(self.clock.now())
            progress = Progress.from_storage(doc["progress"])
            try:
                new, fields = decide(doc, progress, now)
            except machine.Refused as exc:
                raise Conflict(str(exc)) from None
            update_fields: dict[str, Any] = {**fields, "updated": now}
            update: dict[str, Any] = {"$set": update_fields}
            if not keep_progress:
                update_fields.update(progress=new.for_storage(), state=new.phase.value)
                if new.due is not None:
                    update_fields["due"] = new.due
                else:
                    update["$unset"] = {"due": ""}
            op = Op(object_id, doc["owner"], doc["kind"], doc["state"], new.phase.value, fence=doc["fence"], update=update, guard=True)  # fmt: skip
            outcome = self.writer.write(op)
            if outcome == OK:
                written = {**doc, **update_fields, "fence": doc["fence"] + 1}
                if "$unset" in update:
                    written.pop("due", None)
                self.loop.notify(written)
                return written
            if outcome == STALE:
                if request in ("replace", "set"):
                    raise _Stale()
                continue
            if outcome == HELD:
                holder = self.store.holders([object_id]).get(object_id)
                if holder is None or holder.get("owner") == self.loop.owner:
                    continue  # our own loop is claiming it: ask it
                raise Conflict(
                    f"{label(doc)} is held by another lambdaop process: its call starts within "
                    f"{self.window.total_seconds():g}s or has started"
                )
            raise Conflict(f"{label(doc)} is being changed by another writer; try again")
        raise Conflict(f"object {object_id} is changing too fast; try again")


class _Stale(Exception):
    """The object changed between reading and writing: read it again."""


def _plan(doc: dict[str, Any]) -> Any:
    from lambdaop.loop.reconciler import parse_plan

    try:
        return parse_plan(doc)
    except Exception as exc:
        raise Conflict(f"its stored spec cannot be read: {exc}") from None


def _cancel_pruned(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
    return machine.cancel(p, now), {"pruned": True}


def _replace(
    fields: dict[str, Any], fresh: Progress, action: str
) -> Callable[[dict[str, Any], Progress, dt.datetime], tuple[Progress, dict[str, Any]]]:
    def decide(doc: dict[str, Any], p: Progress, now: dt.datetime) -> tuple[Progress, dict[str, Any]]:
        if action == "rescheduled" and p.phase is not machine.Phase.SCHEDULED:
            raise machine.Refused(f"it is {p.phase.value}; its spec can change once this run ends")
        if not p.final and p.phase is not machine.Phase.SCHEDULED:
            raise machine.Refused(f"it is {p.phase.value}; its spec can change once this run ends")
        return fresh, fields

    return decide


def managed_message(doc: dict[str, Any]) -> str:
    file = (doc.get("source") or {}).get("file")
    folder = manager_of(doc).removeprefix("folder:")
    where = f"{folder}/{file}" if file else folder
    return (
        f"{doc['kind']} {doc['name']} is managed by the specs folder ({where}); change it there, "
        "or apply with force=true to take it over"
    )


def _source(d: Document, file: str | None, folder: str | None = None) -> dict[str, Any] | None:
    if not file:
        return None
    source: dict[str, Any] = {"file": file, "line": d.line, "document": d.index}
    if folder:
        source["folder"] = folder
    return source
