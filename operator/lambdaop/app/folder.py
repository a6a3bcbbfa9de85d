"""The GitOps folder: keep the store converged to a folder of spec files, and report back.

`FolderSync.sync_all()` applies every file at start (and prunes what was
removed while the service was down); `watch()` follows changes with
watchfiles. Each document is keyed by (owner, kind, metadata.name); the owner
is `--specs-owner` unless a `.lambdaop.yaml` (`owner: NAME`) in the file's
folder or above says otherwise. A file is applied whole or not at all: a
syntax or schema error leaves its objects as they were and is reported in its
status file. Removing a document (or its file) cancels what is still
scheduled and marks it pruned, unless `metadata.annotations` has
`lambdaop/prune: "false"`. Called by runtime; applies through service.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from lambdaop.app.applying import Applied, Applier, ApplyAction, Placed
from lambdaop.app.batch import Place
from lambdaop.app.batch import duplicates as twice
from lambdaop.app.status import StatusWriter, is_status_file, object_entry, problem_entry, render, status_path
from lambdaop.core.errors import LambdaopError, Problem
from lambdaop.engine.record import Source, StoredObject
from lambdaop.spec import Document, load_documents
from lambdaop.store.contract import ObjectReads

log = logging.getLogger(__name__)

FOLDER_CONFIG = ".lambdaop.yaml"
PRUNE_ANNOTATION = "lambdaop/prune"

Key = tuple[str, str, str]  # owner, kind, name


def is_spec_file(path: Path) -> bool:
    return path.suffix in (".yaml", ".yml") and not is_status_file(path) and path.name != FOLDER_CONFIG


def spec_files(folder: Path) -> list[Path]:
    """YAML spec files under a folder, recursively, in a stable order (status files excluded)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_spec_file(p))


@dataclass
class FileState:
    digest: str | None = None
    keys: dict[Key, int] = field(default_factory=dict)  # key -> line
    entries: dict[Key, dict[str, Any]] = field(default_factory=dict)
    order: list[Key] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class FolderSync:
    def __init__(
        self, folder: Path, applier: Applier, store: ObjectReads, default_owner: str, writer: StatusWriter
    ) -> None:
        self.folder = folder.resolve()
        self.applier = applier
        self.service = applier.service
        self.store = store
        self.default_owner = default_owner
        self.writer = writer
        self.files: dict[Path, FileState] = {}
        self.by_id: dict[str, tuple[Path, Key]] = {}
        self.applies = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._retry: set[Path] = set()
        self.metrics: Any = None  # runtime sets it (lambdaop_folder_apply_errors)
        self._notify: Any = None

    # ----- owners

    def owner_of(self, path: Path) -> str:
        for parent in path.parents:
            config = parent / FOLDER_CONFIG
            if config.is_file():
                try:
                    data = YAML(typ="safe", pure=True).load(config.read_text()) or {}
                    owner = data.get("owner") if isinstance(data, dict) else None
                    if isinstance(owner, str) and owner:
                        return owner
                except (OSError, YAMLError) as exc:
                    log.error("%s: cannot be read (%s); using owner %s", config, exc, self.default_owner)
            if parent == self.folder:
                break
        return self.default_owner

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.folder))

    # ----- the whole folder

    def sync_all(self) -> None:
        """Apply every file; prune objects whose documents left the folder while we were away."""
        with self._lock:
            paths = spec_files(self.folder) if self.folder.is_dir() else []
            self.apply_files(paths, full=True)

    def changed(self, paths: list[Path]) -> None:
        """Files appeared, changed or vanished."""
        with self._lock:
            gone = [p for p in paths if not p.exists()]
            self.apply_files([p for p in paths if p.exists()])
            for path in gone:  # after the changes, so a document moved between files is never pruned
                self.removed(path)

    def _prune_gone(self, present: set[Key]) -> None:
        owners = (
            {self.default_owner}
            | {k[0] for k in present}
            | {k[0] for st in self.files.values() for k in st.keys}
        )
        for doc in self.store.objects_from_folder(str(self.folder), owners):
            key = (doc["owner"], doc["kind"], doc["name"])
            if key not in present and not doc.get("pruned"):
                self._prune(
                    key,
                    doc.get("annotations", {}),
                    why=f"{doc.get('source', {}).get('file')} no longer has it",
                )

    def _read(self, path: Path) -> tuple[list[Document] | None, Problem | None, str]:
        """The file's documents (or why it cannot be read) and a digest of its text and owner."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            return None, Problem(f"cannot be read: {exc}", file=self._rel(path)), ""
        digest = hashlib.sha256(f"{self.owner_of(path)}\n{text}".encode()).hexdigest()
        return load_documents(text, self._rel(path)), None, digest

    def apply_files(self, paths: list[Path], full: bool = False) -> None:
        """Apply files together: one batch of store writes for all their documents.

        A broken file changes nothing and is reported; a document whose key is
        also claimed by another file is refused in both; removed documents are pruned.
        """
        parsed: dict[Path, list[Document]] = {}
        claims: dict[Key, list[tuple[Path, int]]] = {}
        digests: dict[Path, str] = {}
        for path in paths:
            docs, error, digests[path] = self._read(path)
            state = self.files.setdefault(path, FileState())
            problems = [error] if error else [p for d in docs or [] for p in d.problems]
            if problems:  # the file is broken: its objects stay as they were; only the report changes
                state.errors = [problem_entry(problem) for problem in problems]
                for problem in problems:
                    log.error("%s", problem)
                if self.metrics is not None:
                    self.metrics.folder_errors.inc()
                self._report(path)
                continue
            assert docs is not None
            parsed[path] = docs
            owner = self.owner_of(path)
            for d in docs:
                assert d.spec is not None
                claims.setdefault((owner, d.spec.kind, d.spec.metadata.name), []).append((path, d.line))
        if not full:  # keys held by files not in this batch count too
            for key in list(claims):
                claims[key] += [(p, line) for p, line in self._holders(key) if p not in parsed]
        duplicates = {k: v for k, v in claims.items() if len(v) > 1}
        batch: list[tuple[Path, Document, Key]] = []
        file_errors: dict[Path, list[dict[str, Any]]] = {p: [] for p in parsed}
        for key, places in duplicates.items():
            (problem, *_) = twice({(key[1], key[2]): [Place(self._rel(p), 0, line) for p, line in places]})
            message = problem.message
            for p, line in places:
                log.error("%s:%s: %s", self._rel(p), line, message)
                entry = {"message": message, "line": line, "field": "metadata.name"}
                if p in file_errors:
                    file_errors[p].append(entry)
                elif p in self.files:
                    self.files[p].errors = [
                        *(e for e in self.files[p].errors if e["message"] != message),
                        entry,
                    ]
                    self._report(p)
        todo = []
        for path, docs in parsed.items():
            state = self.files[path]
            digest = digests[path]
            if digest == state.digest and not file_errors[path] and not state.errors:
                continue  # unchanged file: nothing to do
            todo.append((path, digest))
            owner = self.owner_of(path)
            for d in docs:
                assert d.spec is not None
                key = (owner, d.spec.kind, d.spec.metadata.name)
                if key not in duplicates:
                    batch.append((path, d, key))
        folder = str(self.folder)
        results = self.applier.apply_placed(
            [
                Placed(d, key[0], Source(file=self._rel(p), line=d.line, document=d.index, folder=folder))
                for p, d, key in batch
            ]
        )
        outcome: dict[Path, list[tuple[Document, Key, Applied]]] = {p: [] for p, _ in todo}
        for (path, d, key), result in zip(batch, results, strict=True):
            outcome[path].append((d, key, result))
        for path, digest in todo:
            self.applies += 1
            self._record(path, digest, outcome[path], file_errors[path])
        if full:
            self._prune_gone(set(claims))

    def _holders(self, key: Key) -> list[tuple[Path, int]]:
        return [(p, st.keys[key]) for p, st in self.files.items() if key in st.keys]

    def _record(
        self,
        path: Path,
        digest: str,
        applied: list[tuple[Document, Key, Applied]],
        errors: list[dict[str, Any]],
    ) -> None:
        state = self.files[path]
        rel = self._rel(path)
        new_keys: dict[Key, int] = {}
        entries: dict[Key, dict[str, Any]] = {}
        for d, key, result in applied:
            new_keys[key] = d.line
            entries[key] = (
                object_entry(result.record)
                if result.record
                else {"kind": result.kind, "name": result.name, "state": result.state or "unknown"}
            )
            if result.action is ApplyAction.REFUSED:
                errors.append({"message": result.message or "refused", "line": d.line})
        for key in state.keys:
            if key not in new_keys:
                self._prune(key, None, why=f"removed from {rel}", only_from=rel)
        self.by_id = {i: v for i, v in self.by_id.items() if v[0] != path}
        for key, entry in entries.items():
            if entry.get("id"):
                self.by_id[entry["id"]] = (path, key)
        state.digest = digest if not errors else None  # a refusal is retried on the next change
        state.keys, state.order, state.entries, state.errors = (
            new_keys,
            [k for _, k, _ in applied],
            entries,
            errors,
        )
        self._report(path)

    def removed(self, path: Path) -> None:
        with self._lock:
            state = self.files.pop(path, None)
            rel = self._rel(path)
            if state is not None:
                self.applies += 1
                for key in state.keys:
                    self._prune(key, None, why=f"{rel} was deleted", only_from=rel)
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
        if record.managed_by != f"folder:{self.folder}":
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
        """The loop moved an object: refresh its entry in its file's report."""
        if record.source is None or record.source.folder != str(self.folder):
            return
        with self._lock:
            where = self.by_id.get(record.id)
            if where is None:
                return
            path, key = where
            state = self.files.get(path)
            if state is None or key not in state.entries:
                return
            state.entries[key] = object_entry(record)
            self._report(path)
            if state.digest is None and record.progress.final:
                self._retry.add(path)  # a change refused while it ran can be applied now

    def _report(self, path: Path) -> None:
        """Refresh the file's report; it is rendered when the writer writes it, at most once a second."""
        if path in self.files:
            self.writer.put(status_path(path), lambda: self._render(path))

    def _render(self, path: Path) -> str | None:
        with self._lock:
            state = self.files.get(path)
            if state is None:
                return None
            entries = [state.entries[k] for k in state.order if k in state.entries]
            return render(path.name, entries, state.errors)

    # ----- watching

    def start_watching(self) -> None:
        """Start noticing changes now (before `sync_all`, so nothing written meanwhile is missed)."""
        from watchfiles._rust_notify import RustNotify

        self.folder.mkdir(parents=True, exist_ok=True)
        self._notify = RustNotify([str(self.folder)], False, False, 300, True, True)

    def watch(self) -> None:
        """Apply changes as they come, until `stop()`; runs in its own thread after `start_watching`."""
        log.info("watching %s for spec changes", self.folder)
        while not self._stop.is_set():
            changes = self._notify.watch(300, 50, 500, self._stop)
            if changes == "stop":
                break
            found = {Path(p) for _, p in changes} if isinstance(changes, set) else set()
            with self._lock:
                retry, self._retry = self._retry, set()
            if any(p.name == FOLDER_CONFIG for p in found):
                self._safely(self.sync_all)
                continue
            paths = sorted({p for p in found if is_spec_file(p)} | retry)
            if paths:
                self._safely(lambda paths=paths: self.changed(paths))

    def _safely(self, action: Any) -> None:
        try:
            action()
        except Exception:
            log.exception("applying the specs folder failed; the next change retries")

    def stop(self) -> None:
        self._stop.set()
