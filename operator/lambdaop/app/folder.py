"""The GitOps folder: keep the store converged to a folder of spec files, and report back.

`FolderSync.sync_all()` applies every file (and prunes what was removed while
the service was down); `resync()` re-reads every file and applies those that
changed or have not converged; `changed(paths)` applies files that changed,
together, as one batch. Each document is keyed by (owner, kind,
metadata.name); the owner is `--specs-owner` unless a `.lambdaop.yaml`
(`owner: NAME`) in the file's folder or above says otherwise. A file is
applied whole or not at all: a syntax or schema error leaves its objects as
they were. Removing a document (or its file) cancels what is still scheduled
and marks it pruned, unless `metadata.annotations` has `lambdaop/prune:
"false"`. Every document's status entry says where it stands (`conditions`);
a document that did not converge (refused, or its object deleted while the
file still has it) is applied again when its object changes and at every
resync, without the file being touched; each refusal is logged
once per change of its file and counted. Paths and names starting with `.`
are not specs (editors' temporary files, `.git`, Kubernetes' `..data`).
Called by runtime and the watcher; checks with the batch validator and
applies through the applier.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from lambdaop.app.applying import Applied, Applier, ApplyAction, Placed, deferred_message
from lambdaop.app.batch import Checker, DefinedTwice
from lambdaop.app.conditions import Conditions, Reason, Verdict
from lambdaop.app.status import StatusWriter, is_status_file, object_entry, problem_entry, render, status_path
from lambdaop.core.errors import LambdaopError, Problem
from lambdaop.engine.record import Source, StoredObject
from lambdaop.spec import Document, load_documents
from lambdaop.store.contract import ObjectReads

log = logging.getLogger("lambdaop.folder")

FOLDER_CONFIG = ".lambdaop.yaml"
PRUNE_ANNOTATION = "lambdaop/prune"

Key = tuple[str, str, str]  # owner, kind, name


def is_spec_file(path: Path, root: Path | None = None) -> bool:
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    if any(part.startswith(".") for part in parts):
        return False
    return path.suffix in (".yaml", ".yml") and not is_status_file(path)


def spec_files(folder: Path) -> list[Path]:
    """YAML spec files under a folder, recursively, in a stable order (status and hidden files excluded)."""
    out = []
    for base, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(base) / name
            if is_spec_file(path, folder) and path.is_file():
                out.append(path)
    return sorted(out)


@dataclass
class FileState:
    digest: str | None = None  # of the text last applied; None: applied again at the next chance
    reported: str | None = None  # of the text whose problems were logged (once per change)
    keys: dict[Key, int] = field(default_factory=dict)  # key -> line
    entries: dict[Key, dict[str, Any]] = field(default_factory=dict)
    verdicts: dict[Key, Verdict] = field(default_factory=dict)
    order: list[Key] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Checked:
    """What the batch validator says of the files read again, as the folder acts on it."""

    applied: list[Path]  # files whose documents all validate
    broken: dict[Path, list[Problem]] = field(default_factory=dict)  # the others, with their problems
    twice: dict[Key, str] = field(default_factory=dict)  # keys defined more than once -> why
    # places of those keys in files not applied now (unchanged, broken, or not read again)
    elsewhere: dict[Key, list[tuple[Path, int]]] = field(default_factory=dict)


def verdict_of(result: Applied, rel: str) -> Verdict:
    """Where a document stands after it was applied."""
    record = result.record
    gen = record.generation if record is not None else None
    if result.action is ApplyAction.INVALID:
        why = "; ".join(p.message for p in result.problems) or "invalid"
        return Verdict(Reason.OUTBOUND_POLICY if "--allow-hosts" in why else Reason.INVALID, why)
    if result.action is ApplyAction.REFUSED:
        reason = Reason.MANAGED_ELSEWHERE if result.stalled else Reason.RETRYING
        return Verdict(reason, result.message or "refused", observed=gen)
    if record is not None and record.pending is not None:
        return Verdict(Reason.RUN_IN_PROGRESS, result.message or "an edit waits for the run going on", record.pending.generation, gen)  # fmt: skip
    note = f" ({result.message})" if result.message else ""
    return Verdict(Reason.APPLIED, f"generation {gen} of {rel} is applied{note}", gen, gen)


def verdict_after(record: StoredObject, before: Verdict | None, manager: str, rel: str) -> Verdict | None:
    """What a file's entry says after its object changed (None: its verdict stands). An object
    pruned while its file still has it (`delete --force`) has not converged: the folder is the
    source of truth, and applies it again (Retrying) as a new generation."""
    if record.pruned:
        message = f"{record.kind.value} {record.name} was deleted ({record.state}, pruned) while {rel} still has it: it is applied again (remove it from {rel} to delete it)"  # fmt: skip
        return Verdict(Reason.RETRYING, message, observed=record.generation)
    if record.managed_by != manager:
        message = f"taken over by {record.managed_by}: the folder no longer manages it (change it there, or delete it there and this file applies again)"  # fmt: skip
        return Verdict(Reason.MANAGED_ELSEWHERE, message, observed=record.generation)
    if record.pending is not None:
        message = deferred_message(record, record.pending.generation)
        return Verdict(Reason.RUN_IN_PROGRESS, message, record.pending.generation, record.generation)
    if before is not None and before.reason is Reason.RUN_IN_PROGRESS:
        message = f"generation {record.generation} of {rel} is applied"
        return Verdict(Reason.APPLIED, message, record.generation, record.generation)
    return None


def owner_in(folder: Path, path: Path, default: str) -> str:
    """Whose objects a file's documents are: the `owner` of the nearest folder config, up to the folder."""
    for parent in path.parents:
        config = parent / FOLDER_CONFIG
        if config.is_file():
            try:
                data = YAML(typ="safe", pure=True).load(config.read_text()) or {}
                owner = data.get("owner") if isinstance(data, dict) else None
                if isinstance(owner, str) and owner:
                    return owner
            except (OSError, YAMLError) as exc:
                log.error("%s: cannot be read (%s); using owner %s", config, exc, default)
        if parent == folder:
            break
    return default


def check_files(
    checker: Checker,
    folder: Path,
    loaded: dict[Path, list[Document]],
    owners: dict[Path, str],
    held: dict[Path, dict[Key, int]],
) -> Checked:
    """The batch validator's word on the files read again, owner by owner (a name is an owner's),
    told what the files not applied now hold: which files are broken, which keys are defined
    twice. A target the outbound policy refuses is left to the applier, which answers its
    document (invalid), as it does for every caller."""
    found = Checked([path for path, docs in loaded.items() if all(d.spec is not None for d in docs)])
    applied = set(found.applied)
    paths_of = {str(path.relative_to(folder)): path for path in [*loaded, *held]}
    for owner in dict.fromkeys(owners.values()):
        batch = [(str(p.relative_to(folder)), docs) for p, docs in loaded.items() if owners[p] == owner]
        theirs = {
            str(p.relative_to(folder)): {(k[1], k[2]): line for k, line in keys.items() if k[0] == owner}
            for p, keys in held.items()
            if p not in applied  # a file applied now defines its keys anew, whoever owns them
        }
        for problem in checker.check(batch, theirs, whole=True):
            path = paths_of[problem.file or ""]
            if isinstance(problem, DefinedTwice):
                key = (owner, problem.kind, problem.name)
                found.twice[key] = problem.message
                if path not in applied:
                    found.elsewhere.setdefault(key, []).append((path, problem.line or 0))
            elif path not in applied:
                found.broken.setdefault(path, []).append(problem)
    return found


class FolderSync:
    def __init__(
        self, folder: Path, applier: Applier, store: ObjectReads, default_owner: str, writer: StatusWriter
    ) -> None:
        self.folder = Path(os.path.abspath(folder))  # not resolved: a symlinked folder may be swapped
        self.applier = applier
        self.service = applier.service
        self.store = store
        self.default_owner = default_owner
        self.writer = writer
        self.files: dict[Path, FileState] = {}
        self.by_id: dict[str, tuple[Path, Key]] = {}
        self.applies = 0  # files applied
        self.batches = 0  # batches of files applied together
        self.conditions = Conditions()
        self.retry: set[Path] = set()  # files to apply again (their objects changed)
        self._changes: collections.deque[StoredObject] = collections.deque()  # kept while busy
        self._lock = threading.RLock()
        self.metrics: Any = None  # runtime sets it (lambdaop_folder_apply_errors)

    @property
    def manager(self) -> str:
        return f"folder:{self.folder}"

    def owner_of(self, path: Path) -> str:
        return owner_in(self.folder, path, self.default_owner)

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.folder))

    # ----- the whole folder

    def sync_all(self) -> None:
        """Apply every file; prune objects whose documents left the folder while we were away."""
        with self._lock:
            self.apply_files(spec_files(self.folder) if self.folder.is_dir() else [], full=True)
            for path in [p for p in self.files if not p.exists()]:
                self.removed(path)
            self.drain()

    def resync(self) -> None:
        """Read every file again: apply what changed or did not converge (nothing else is written)."""
        with self._lock:
            present = spec_files(self.folder) if self.folder.is_dir() else []
            self.apply_files(present)
            there = set(present)
            for path in [p for p in self.files if p not in there]:
                self.removed(path)
            self.drain()

    def changed(self, paths: list[Path]) -> None:
        """Files appeared, changed or vanished."""
        with self._lock:
            gone = [p for p in paths if not p.exists()]
            self.apply_files([p for p in paths if p.exists()])
            for path in gone:  # after the changes, so a document moved between files is never pruned
                self.removed(path)
            self.drain()

    def _prune_gone(self, present: set[Key], broken: dict[str, Path]) -> None:
        """Prune what the folder no longer has; a broken file's objects stay, as they were, its own."""
        owners = {self.default_owner} | {k[0] for k in present} | {k[0] for st in self.files.values() for k in st.keys}  # fmt: skip
        for doc in self.store.objects_from_folder(str(self.folder), owners):
            key = (doc["owner"], doc["kind"], doc["name"])
            if (source := doc.get("source") or {}).get("file") in broken:
                self.files[broken[source["file"]]].keys.setdefault(key, source.get("line") or 1)
            elif key not in present and not doc.get("pruned"):
                self._prune(key, doc.get("annotations", {}), why=f"{doc.get('source', {}).get('file')} no longer has it")  # fmt: skip

    def _read(self, path: Path) -> tuple[str | None, Problem | None, str]:
        """The file's text (or why it cannot be read) and a digest of its text and owner."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            return None, Problem(f"cannot be read: {exc}", file=self._rel(path)), ""
        return text, None, hashlib.sha256(f"{self.owner_of(path)}\n{text}".encode()).hexdigest()

    def apply_files(self, paths: list[Path], full: bool = False) -> None:
        """Apply files together: one batch of store writes for all their documents.

        An unchanged file that converged is not parsed again; the others are checked
        together by the batch validator (`check_files`): a broken file changes nothing and
        is reported; a document whose key is also claimed by another file is refused
        in both; removed documents are pruned.
        """
        loaded: dict[Path, list[Document]] = {}
        unreadable: dict[Path, Problem] = {}
        digests: dict[Path, str] = {}
        held: dict[Path, dict[Key, int]] = {}  # files' keys as last applied (unchanged files)  # fmt: skip
        for path in paths:
            text, error, digests[path] = self._read(path)
            state = self.files.setdefault(path, FileState())
            if digests[path] and digests[path] == state.digest and path not in self.retry:
                held[path] = state.keys  # unchanged and converged: only its keys count
            elif text is None:
                assert error is not None
                unreadable[path] = error
            else:
                loaded[path] = load_documents(text, self._rel(path))
        if not full:  # keys held by files not in this batch count too
            for path, state in self.files.items():
                held.setdefault(path, state.keys)
        owners = {path: self.owner_of(path) for path in loaded}
        found = check_files(self.applier.checker, self.folder, loaded, owners, held)
        broken = {path: [error] for path, error in unreadable.items()} | found.broken
        for path in paths:  # a broken file: its objects stay as they were; only the report changes
            if path in broken:
                self._broken(path, self.files[path], digests[path], broken[path])
        placed: list[tuple[Path, Document, Key]] = []
        for path in found.applied:
            self.retry.discard(path)
            for d in loaded[path]:
                assert d.spec is not None
                key: Key = (owners[path], d.spec.kind, d.spec.metadata.name)
                if key in found.elsewhere:  # files not applied now hear of it too, in the batch's order
                    self._told(key, found.twice[key], found.elsewhere.pop(key))
                if key not in found.twice:
                    placed.append((path, d, key))
        folder = str(self.folder)
        results = self.applier.apply_placed(
            [
                Placed(d, key[0], Source(file=self._rel(p), line=d.line, document=d.index, folder=folder))
                for p, d, key in placed
            ]  # fmt: skip
        )
        outcome: dict[Path, dict[Key, Applied]] = {p: {} for p in found.applied}
        for (path, _, key), result in zip(placed, results, strict=True):
            outcome[path][key] = result
        self.batches += bool(found.applied)
        for path in found.applied:
            self.applies += 1
            self._record(path, digests[path], loaded[path], outcome[path], found.twice)
        if full:  # what the folder has now: the unchanged files' keys and the batch's
            kept = {key for keys in held.values() for key in keys}
            self._prune_gone(kept | {key for _, _, key in placed} | set(found.twice), {self._rel(p): p for p in broken})  # fmt: skip

    def _told(self, key: Key, message: str, places: list[tuple[Path, int]]) -> None:
        """Files not applied now hold a key that a document of the batch defines too."""
        for path, line in places:
            state = self.files[path]
            state.verdicts[key] = Verdict(Reason.DUPLICATE, message)
            state.errors = [*(e for e in state.errors if e["message"] != message), {"message": message, "line": line, "field": "metadata.name"}]  # fmt: skip
            state.digest = None
            self._report(path)

    def _broken(self, path: Path, state: FileState, digest: str, problems: list[Problem]) -> None:
        if digest != state.reported:  # logged and counted once per change of the file
            for problem in problems:
                log.error("%s", problem)
            if self.metrics is not None:
                self.metrics.folder_errors.inc()
        state.errors = [problem_entry(problem) for problem in problems]
        state.digest = state.reported = digest  # a new text is read again
        message = f"{self._rel(path)} has errors (see errors below); its objects are left as they were"
        for key in state.keys:
            observed = state.verdicts[key].observed if key in state.verdicts else None
            state.verdicts[key] = Verdict(Reason.INVALID_FILE, message, observed=observed)
        self._report(path)

    def _record(
        self,
        path: Path,
        digest: str,
        docs: list[Document],
        applied: dict[Key, Applied],
        duplicates: dict[Key, str],
    ) -> None:
        state, rel = self.files[path], self._rel(path)
        owner = self.owner_of(path)
        keys: dict[Key, int] = {}
        entries: dict[Key, dict[str, Any]] = {}
        verdicts: dict[Key, Verdict] = {}
        errors: list[dict[str, Any]] = []
        for d in docs:
            assert d.spec is not None
            key: Key = (owner, d.spec.kind, d.spec.metadata.name)
            keys[key] = d.line
            result = applied.get(key)
            if result is None:  # defined twice: none of them is applied
                verdicts[key] = Verdict(Reason.DUPLICATE, duplicates.get(key, "not applied"))
                errors.append({"message": verdicts[key].message, "line": d.line, "field": "metadata.name"})
                continue
            verdicts[key] = verdict_of(result, rel)
            base = {"kind": result.kind, "name": result.name, "state": result.state or "not applied"}
            entries[key] = object_entry(result.record) if result.record else base
            if result.action in (ApplyAction.REFUSED, ApplyAction.INVALID):
                errors.append({"message": verdicts[key].message, "line": d.line})
        if errors and digest != state.reported:  # logged and counted once per change of the file
            for e in errors:
                log.error("%s:%s: %s", rel, e.get("line"), e["message"])
            if self.metrics is not None:
                self.metrics.folder_errors.inc(len(errors))
        state.reported = digest
        for key in state.keys:
            if key not in keys:
                self._prune(key, None, why=f"removed from {rel}", only_from=rel)
                self.conditions.forget((path, key))
        self.by_id = {i: v for i, v in self.by_id.items() if v[0] != path}
        for key, entry in entries.items():
            if entry.get("id"):
                self.by_id[entry["id"]] = (path, key)
        converged = all(v.ready or v.reason is Reason.RUN_IN_PROGRESS for v in verdicts.values())
        state.digest = digest if converged else None  # not converged: applied again at the next chance
        state.keys, state.entries, state.verdicts, state.errors = keys, entries, verdicts, errors
        state.order = list(keys)
        self._report(path)

    def removed(self, path: Path) -> None:
        with self._lock:
            state = self.files.pop(path, None)
            rel = self._rel(path)
            if state is not None:
                self.applies += 1
                for key in state.keys:
                    self._prune(key, None, why=f"{rel} was deleted", only_from=rel)
                    self.conditions.forget((path, key))
                self.by_id = {i: v for i, v in self.by_id.items() if v[0] != path}
            self.writer.remove(status_path(path))

    def _prune(
        self, key: Key, annotations: dict[str, str] | None, why: str, only_from: str | None = None
    ) -> None:
        owner, kind, name = key
        record = self.service.find(owner, kind, name)
        if record is None or record.pruned:
            return
        source = record.source or Source()
        if record.managed_by != self.manager:
            log.info("%s %s: %s; not pruned: it is managed by %s", kind, name, why, record.managed_by)
            return
        if only_from is not None and (source.file != only_from or source.folder != str(self.folder)):
            return  # the document moved to another file
        if (record.annotations or annotations or {}).get(PRUNE_ANNOTATION) == "false":
            log.info("%s %s: %s; kept (%s: false)", kind, name, why, PRUNE_ANNOTATION)
            return
        try:
            self.service.prune(owner, kind, name)
            log.info("%s %s: %s; pruned", kind, name, why)
        except LambdaopError as exc:
            log.warning("%s %s: not pruned: %s", kind, name, exc)

    # ----- reports

    def object_changed(self, record: StoredObject) -> None:
        """An object moved (the loop, or a change through the API): refresh its entry.

        Called on the loop's thread, which must never wait for the folder (the folder may be
        waiting for the loop): when the folder is busy, the change is kept for it to take."""
        if not self._lock.acquire(blocking=False):
            self._changes.append(record)
            return
        try:
            self._object_changed(record)
        finally:
            self._lock.release()

    def drain(self) -> None:
        """Take the object changes kept while the folder was busy."""
        with self._lock:
            while self._changes:
                self._object_changed(self._changes.popleft())

    def _object_changed(self, record: StoredObject) -> None:
        where = self.by_id.get(record.id)
        if where is None:
            return
        path, key = where
        state = self.files.get(path)
        if state is None or key not in state.entries:
            return
        state.entries[key] = object_entry(record)
        verdict = verdict_after(record, state.verdicts.get(key), self.manager, self._rel(path))
        if verdict is not None:
            state.verdicts[key] = verdict
            if verdict.reason is Reason.RETRYING:  # pruned while the file has it: applied again
                state.digest = None
        self._report(path)
        if state.digest is None:
            self.retry.add(path)  # a change refused while it ran may be applied now

    def _report(self, path: Path) -> None:
        """Refresh the file's report; it is rendered when the writer writes it, at most once a second."""
        if path in self.files:
            self.writer.put(status_path(path), lambda: self._render(path))

    def _render(self, path: Path) -> str | None:
        with self._lock:
            state = self.files.get(path)
            if state is None:
                return None
            now = self.service.now()
            entries = []
            for key in state.order:
                entry = dict(state.entries.get(key) or {"kind": key[1], "name": key[2], "state": "not applied"})  # fmt: skip
                if (verdict := state.verdicts.get(key)) is not None:  # the verdict says the generations
                    entry = {k: v for k, v in entry.items() if k not in ("generation", "observedGeneration")}
                    entry.update(self.conditions.entry((path, key), verdict, now))
                entries.append(entry)
            return render(path.name, entries, state.errors)
