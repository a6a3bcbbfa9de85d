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
a document that did not converge is applied again when its object changes
and at every resync, without the file being touched; each refusal is logged
once per change of its file and counted. Paths and names starting with `.`
are not specs (editors' temporary files, `.git`, Kubernetes' `..data`).
Called by runtime and the watcher; applies through the applier.
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
from lambdaop.app.batch import Place
from lambdaop.app.batch import duplicates as twice
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
    """What a file's entry says after its object changed (None: its verdict stands)."""
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

    def _prune_gone(self, present: set[Key]) -> None:
        owners = {self.default_owner} | {k[0] for k in present} | {k[0] for st in self.files.values() for k in st.keys}  # fmt: skip
        for doc in self.store.objects_from_folder(str(self.folder), owners):
            key = (doc["owner"], doc["kind"], doc["name"])
            if key not in present and not doc.get("pruned"):
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

        An unchanged file that converged is not parsed again; a broken file changes
        nothing and is reported; a document whose key is also claimed by another
        file is refused in both; removed documents are pruned.
        """
        parsed: dict[Path, list[Document]] = {}
        claims: dict[Key, list[tuple[Path, int]]] = {}
        digests: dict[Path, str] = {}
        for path in paths:
            text, error, digests[path] = self._read(path)
            state = self.files.setdefault(path, FileState())
            if digests[path] and digests[path] == state.digest and path not in self.retry:
                for key, line in state.keys.items():  # unchanged and converged: only its keys count
                    claims.setdefault(key, []).append((path, line))
                continue
            docs = load_documents(text, self._rel(path)) if text is not None else []
            problems = [error] if error else [p for d in docs for p in d.problems]
            if problems:  # the file is broken: its objects stay as they were; only the report changes
                self._broken(path, state, digests[path], problems)
                continue
            parsed[path] = docs
            owner = self.owner_of(path)
            for d in docs:
                assert d.spec is not None
                claims.setdefault((owner, d.spec.kind, d.spec.metadata.name), []).append((path, d.line))
        if not full:  # keys held by files not in this batch count too
            for key in list(claims):
                known = {p for p, _ in claims[key]}
                claims[key] += [(p, line) for p, line in self._holders(key) if p not in known]
        duplicates = {k: self._twice(k, v) for k, v in claims.items() if len(v) > 1}
        batch: list[tuple[Path, Document, Key]] = []
        for path, docs in parsed.items():
            self.retry.discard(path)
            owner = self.owner_of(path)
            for d in docs:
                assert d.spec is not None
                key = (owner, d.spec.kind, d.spec.metadata.name)
                if key not in duplicates:
                    batch.append((path, d, key))
        for key, message in duplicates.items():  # files not in this batch hear of it too
            for p, line in claims[key]:
                if p not in parsed and p in self.files:
                    self.files[p].verdicts[key] = Verdict(Reason.DUPLICATE, message)
                    self.files[p].errors = [*(e for e in self.files[p].errors if e["message"] != message), {"message": message, "line": line, "field": "metadata.name"}]  # fmt: skip
                    self.files[p].digest = None
                    self._report(p)
        folder = str(self.folder)
        results = self.applier.apply_placed(
            [
                Placed(d, key[0], Source(file=self._rel(p), line=d.line, document=d.index, folder=folder))
                for p, d, key in batch
            ]  # fmt: skip
        )
        outcome: dict[Path, dict[Key, Applied]] = {p: {} for p in parsed}
        for (path, _, key), result in zip(batch, results, strict=True):
            outcome[path][key] = result
        self.batches += bool(parsed)
        for path, docs in parsed.items():
            self.applies += 1
            self._record(path, digests[path], docs, outcome[path], duplicates)
        if full:
            self._prune_gone(set(claims))

    def _twice(self, key: Key, places: list[tuple[Path, int]]) -> str:
        (problem, *_) = twice({(key[1], key[2]): [Place(self._rel(p), 0, line) for p, line in places]})
        return problem.message

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

    def _holders(self, key: Key) -> list[tuple[Path, int]]:
        return [(p, st.keys[key]) for p, st in self.files.items() if key in st.keys]

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
