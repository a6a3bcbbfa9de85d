"""The store contract: what lambdaop asks of wherever it keeps its objects.

Two implementations honour it: `mongo.MongoStore` (MongoDB, and the embedded
SecantusDB server) and `memory.MemoryStore` (in-process, for the loop's unit
tests and a quick look). One contract test suite (tests/contract) runs
against both, so a rule written here holds in each.

Documents are returned as the plain mappings they are stored as (`Doc`); the
engine's typed record (`StoredObject.from_storage`) is made from them by the
callers, since the store and the engine do not know each other. Answers that
are not documents are typed here (`Due`, `DueEntry`, `Page`, `Lease`).

Rules every implementation keeps (several processes may share one store):

1. **Fencing.** Every object has a `fence`, incremented by every write. A
   change (`Op` with `change`) is written only if the stored fence is the one
   the op expects; otherwise its outcome is `STALE` and nothing of it is written.
   A write of the loop under its lease (`Op.leased`) is fenced by the lease
   instead (rule 2): no one else writes a held object, and the loop hands in
   one object's writes one at a time, so it is written whatever fence it names.
2. **One lease per object.** `claim` holds an object for an owner until a
   time; a second claim of a held object fails for it. A loop's write of a
   held object (`Op.leased`) succeeds only while the writer still holds the
   lease (else `STALE`): a process whose lease was taken over can never
   commit. A change from outside the loop (`Op.guard`) fails with `HELD`
   while anyone holds the object, so it never slips between a claim and its call.
3. **All or nothing per op, never per batch.** `commit` writes each op of a
   batch in full or not at all, and a failing op never affects the others.
   The object, its history records, its lease and the counters of its owner
   move together.
4. **Names are unique** per (owner, kind, name): an insert whose name is
   taken answers `EXISTS`.
5. **Counters, not counts.** `counts` answers from counters moved by each
   commit, never by counting objects.
6. **Never wait on another process.** A write that meets another writer's
   unfinished transaction answers `CONFLICT` at once (the writer tries again),
   so a dead process never stalls the living.
7. **Bounded reads.** Every read a request or the loop makes is by id, by name, or a range with a
   limit. Reads of start-up and housekeeping (`objects_from_folder`, `drop_leases_of_others`,
   `lapsed`, `fold_slots`) go over what they are about, in chunks.
8. **Places of a limit key** (`PlaceStore`) are taken one by one, each only while it is free: two
   takers of one place never both get it, whichever process they are in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from lambdaop.core.labels import Selector
from lambdaop.core.places import KeyState as KeyState  # the places' values (core: the engine reads them too)
from lambdaop.core.places import LimitType as LimitType
from lambdaop.core.places import Place as Place
from lambdaop.core.places import Waiter as Waiter
from lambdaop.spec.flowcontrol import MAX_LIMIT
from lambdaop.store.ids import new_id

Doc = dict[str, Any]  # a document as stored

STATES = ("scheduled", "running", "completed", "failed", "cancelled")
ATTEMPTS_KEPT = 200  # calls kept per object in the history
RUN_RESULTS = ("completed", "failed", "cancelled")  # how a run ends (the runs list's `result`)
RUNS_KEPT_FOR = dt.timedelta(days=30)  # ended runs are listed this long


def run_key(doc: Doc) -> tuple[str, str]:
    """Where a run's record is kept: `owner␟result␟id`, the id made at its end (ids sort by time),
    so every read of the runs list is one range of the primary key; and that id."""
    rid = new_id(doc["finished"].timestamp())
    return f"{doc['owner']}\x1f{doc['result']}\x1f{rid}", rid


def run_matches(doc: Doc, selector: Selector | None, kind: str | None, prefix: str | None) -> bool:
    """Whether a run's record is listed (`list_runs`): its object's kind, labels and the start of
    its name, each when asked."""
    return (
        (kind is None or doc.get("kind") == kind)
        and (selector is None or selector.matches(doc.get("labels")))
        and (prefix is None or str(doc.get("name", "")).startswith(prefix))
    )


class WriteOutcome(StrEnum):
    """What became of one op of a commit."""

    OK = "ok"
    STALE = "stale"  # the fence moved, or the writer's lease is gone
    HELD = "held"  # a guarded change of an object a lease holds
    EXISTS = "exists"  # an insert whose name is taken
    CONFLICT = "conflict"  # another writer's open transaction holds the object: try again later
    ERROR = "error"  # the store refused the value


class Due(NamedTuple):
    """An object waiting for a call: its id, when the call is due, and its fence."""

    id: str
    due: dt.datetime
    fence: int


class DueEntry(NamedTuple):
    """An entry of the due index as `upcoming` reads it: identity, name (and display name), when
    its call is due, and whether its spec has a schedule (its later runs need it read whole)."""

    id: str
    kind: str
    name: str
    due: dt.datetime
    recurring: bool = False
    display: str | None = None


class Page(NamedTuple):
    """One page of a list, and where the next one starts (None: there is no more)."""

    docs: list[Doc]
    next: str | None


class Lease(NamedTuple):
    """Who holds an object, and until when."""

    id: str
    owner: str
    until: dt.datetime
    guard: bool = False


class Mutation(Protocol):
    """What a change writes (the engine's `Change` is one): stored fields set, removed and appended to."""

    def sets(self) -> dict[str, Any]: ...

    def unsets(self) -> tuple[str, ...]: ...

    def pushes(self) -> dict[str, tuple[list[Any], int]]: ...


@dataclass
class Op:
    """One state transition for `commit`.

    An insert carries `doc` (and `claim_until` to create it held by the
    writer); a change carries `change` and the `fence` it expects. `leased`
    marks a write of the loop under its lease (`release` ends the lease,
    otherwise it lasts until `until`, or the commit's time when None); `guard` makes a change from outside
    the loop exclusive with every claim. `attempts` are history records
    written with it, and `run` the record of a run it ended.
    """

    id: str
    owner: str
    kind: str
    old_state: str | None
    new_state: str | None
    fence: int | None = None
    change: Mutation | None = None
    doc: Doc | None = None
    leased: bool = False
    release: bool = False
    until: dt.datetime | None = None
    claim_until: dt.datetime | None = None
    guard: bool = False
    attempts: list[Doc] = field(default_factory=list)
    run: Doc | None = None  # a run that ended with this op, for the runs list (`list_runs`)


def batch_conflicts(ops: list[Op]) -> dict[int, WriteOutcome]:
    """Ops of one batch that cannot be written together with an earlier op of it: a second change of
    an object expecting the fence the first moves on, or a second write of the loop ending the same
    lease. They are STALE (as they would be one batch later); the rest of the batch is unaffected."""
    out: dict[int, WriteOutcome] = {}
    fences: set[tuple[str, int | None]] = set()
    released: set[str] = set()
    for i, op in enumerate(ops):
        if op.doc is not None:
            continue
        if (op.id, op.fence) in fences or (op.leased and op.release and op.id in released):
            out[i] = WriteOutcome.STALE
            continue
        fences.add((op.id, op.fence))
        if op.leased and op.release:
            released.add(op.id)
    return out


def created_fences(ops: list[Op]) -> dict[str, int]:
    """The fence each object inserted by this batch starts with (a later change in the batch expects it)."""
    return {op.id: int(op.doc.get("fence", 0)) for op in ops if op.doc is not None}


class ObjectReads(Protocol):
    """Reading objects and their history."""

    def get(self, object_id: str) -> Doc | None:
        """One object by id (None for an id lambdaop never made)."""

    def fetch(self, ids: Iterable[str], due: tuple[dt.datetime, dt.datetime] | None = None) -> list[Doc]:
        """Objects by id, in any order (those that do not exist are left out), without the call
        history an earlier version kept inside them (`attempts`). `due`, the first and last due
        time of the ids, lets a store read them as one range of its due index."""

    def find_by_name(self, owner: str, kind: str, name: str) -> Doc | None:
        """One owner's object of a kind by its name."""

    def find_by_names(self, owner: str, kind: str, names: list[str]) -> dict[str, Doc]:
        """One owner's objects of a kind by name: name -> document."""

    def objects_from_folder(self, folder: str, owners: Iterable[str]) -> list[Doc]:
        """Every object these owners applied from a specs folder (a projection: identity, source,
        annotations, manager, state and `pruned`)."""

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
        """One page of at most `limit`: an owner's objects (in a state, or all of them), or with no
        owner everybody's (no state filter then), newest first by id; with `selector` only those
        whose labels it matches. With `prefix`, the owner's objects whose name starts with it, by
        name. `before` is the previous page's `next`. A page may hold fewer than `limit` and still
        have a `next` (a read examines a bounded number of objects); `next` is None at the end."""

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
        """The owner's objects whose call is due in (after, until], earliest first (latest first
        with `latest_first`), as entries of the due index (`DueEntry`), reading about `examine`
        objects due meanwhile at most (everybody's), in windows of the due index no wider than
        `widest`; the flag says whether the read covered the whole time."""

    def paused(self, owner: str, now: dt.datetime, limit: int) -> tuple[list[Doc], bool]:
        """At most `limit` of the owner's suspended objects (identity, name and progress), those
        last written while paused most recently first; the flag says whether there are more. A
        suspended object's `paused` field (the time of its last write while paused) is what this
        reads, in windows going back from `now`."""

    def counts(self, owner: str | None, kind: str) -> dict[str, int]:
        """Objects per state of an owner (None: everybody), from the counters."""

    def history(self, object_id: str, limit: int = ATTEMPTS_KEPT) -> list[Doc]:
        """An object's newest `limit` calls, oldest first."""

    def prune_history(self, object_ids: Iterable[str], keep: int = ATTEMPTS_KEPT) -> int:
        """Delete all but the newest `keep` calls of each object; answers how many went."""

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
        """One page of at most `limit` of an owner's ended runs (the `run` of each committed op),
        newest end first: those that ended `result` (completed, failed, cancelled; None: any), at
        or after `since`, of `kind`, whose object's labels `selector` matches and whose object's
        name starts with `prefix`. Each run's `id` orders it, with a prefix too (still newest
        first, not by name); `before` is the previous page's `next`. As `list_objects`, a page
        examines a bounded number of runs (selector, kind and prefix are tested on what it reads)
        and may end early with its `next`. Runs are kept for RUNS_KEPT_FOR (on MongoDB; the
        in-memory store keeps them while it lives)."""


class LoopStore(Protocol):
    """What the reconcile loop reads, claims and renews."""

    def due_between(self, after: dt.datetime | None, until: dt.datetime, limit: int) -> list[Due]:
        """Objects waiting for a call due in (after, until], earliest first, at most `limit`."""

    def holders(self, ids: Iterable[str]) -> dict[str, Lease]:
        """The lease of each of these objects (those nobody holds are left out)."""

    def claim(self, owner: str, until: dt.datetime, ids: list[str]) -> set[str]:
        """Hold these objects for `owner` until `until`; answers those now held (others hold
        the rest, or an open transaction writes them)."""

    def release(self, owner: str, ids: list[str]) -> None:
        """End this owner's leases of these objects."""

    def renew(self, owner: str, ids: list[str], until: dt.datetime) -> set[str]:
        """Extend this owner's leases; answers the objects whose lease is gone (taken over). A lease
        in conflict is not reported lost: the next renewal tries again."""

    def expired_leases(self, now: dt.datetime, limit: int = 5000) -> list[Lease]:
        """Leases whose time passed."""

    def drop_leases(self, holder: str, ids: list[str], now: dt.datetime) -> set[str]:
        """Remove these expired leases of `holder`; answers the ids removed (one renewed or taken
        meanwhile stays)."""

    def drop_leases_of_others(self, owner: str) -> list[str]:
        """Every lease not of `owner` goes (the only process of an embedded store, at its start)."""

    def heartbeat(self, slot: str, until: dt.datetime, info: Mapping[str, Any]) -> None:
        """This process is alive until `until`."""

    def lapsed(self, now: dt.datetime) -> list[str]:
        """Processes whose heartbeat stopped while they had transaction sessions."""

    def stopped(self, processes: Iterable[str], now: dt.datetime) -> set[str]:
        """Those of these processes whose heartbeat ended before `now`, or that have none."""

    def end_sessions_of(self, process: str, now: dt.datetime) -> bool:
        """End the open transactions of a process whose heartbeat stopped; answers whether it did."""

    def fold_slots(self, now: dt.datetime, keep: str, everyone_else: bool = False) -> int:
        """Fold the counter slots of processes gone for two minutes (or of everyone but `keep`)
        into the base slot; answers how many were folded."""


MAX_PLACES = MAX_LIMIT  # places of one kind a key may have (the largest `limit`)


class PlaceStore(Protocol):
    """The places of limit keys (`concurrency` and `rate` of a call), shared by every process.

    A key is a string without control characters (the loop makes it `owner␟KEY`). A place is free
    when it was never taken or its `until` is at or before the time asked about; a taken one is
    free again from its `until` on (a holder that stops renewing loses it then). Nothing of this
    goes through `commit`: places are written apart from objects, one document each, by `_id`.
    """

    def key_state(self, key: str) -> KeyState:
        """Everything stored of a key, in one read bounded by its places (at most MAX_PLACES of each
        kind) and its waiters (one per process)."""

    def take_places(
        self, key: str, kind: LimitType, holder: str, asks: list[tuple[int, dt.datetime]], now: dt.datetime
    ) -> list[int]:
        """Take places of a key for `holder`, each `(number, until)` only if that place is free at
        `now` (rule 8); answers the numbers taken, in the order asked."""

    def release_places(self, key: str, holder: str, numbers: list[int], now: dt.datetime) -> int:
        """Free these concurrency places of `holder` from `now` on (one another holder has taken
        meanwhile stays as it is); answers how many it released."""

    def settle_places(self, key: str, holder: str, settles: list[tuple[int, dt.datetime]]) -> int:
        """A rate place of `holder` is free from `until` on, each `(number, until)`, only when that is
        earlier than what it had (its call has left: its window starts then); answers how many moved."""

    def renew_places(
        self, holder: str, places: list[tuple[str, int]], until: dt.datetime
    ) -> set[tuple[str, int]]:
        """Extend `holder`'s concurrency places `(key, number)` to `until`; answers those it no
        longer holds (released, or taken by another holder once they were free)."""

    def put_waiting(
        self,
        key: str,
        kind: LimitType,
        holder: str,
        first: dt.datetime | None,
        calls: int,
        until: dt.datetime,
    ) -> None:
        """Say that `calls` calls of `holder` wait for places of a key, the earliest due at `first`,
        until `until` (`first` None: none wait any more, the entry goes)."""


class Committer(Protocol):
    """The one transition path."""

    def commit(self, ops: list[Op], owner: str, slot: str, now: dt.datetime) -> list[WriteOutcome]:
        """Write state transitions (rules 1-6 of this module); one outcome per op, in order. `slot`
        is the writer's own counter slot."""


class UserStore(Protocol):
    """Users, their API tokens and web sessions."""

    def deadline(self, seconds: float) -> AbstractContextManager[None]:
        """Every store operation inside answers within `seconds`, or raises StoreUnavailable."""

    def get_user(self, name: str) -> Doc | None: ...

    def insert_user(self, doc: Doc) -> None:
        """Raises Conflict when the name is taken."""

    def delete_user(self, name: str) -> bool: ...

    def list_users(self, limit: int = 1000) -> list[Doc]:
        """Users by name, without their password hashes."""

    def any_user(self) -> bool: ...

    def set_user(self, name: str, values: Mapping[str, Any]) -> bool:
        """Set fields of a user (admin, password); answers whether it exists."""

    def add_token(self, name: str, entry: Doc) -> bool: ...

    def remove_tokens(self, name: str, hashes: list[str]) -> None: ...

    def touch_token(self, name: str, digest: str, at: dt.datetime) -> None:
        """Record when a token was last used."""

    def insert_session(self, doc: Doc) -> None: ...

    def find_session(self, digest: str) -> Doc | None: ...

    def delete_session(self, digest: str) -> None: ...

    def delete_sessions_of(self, name: str) -> None: ...


class SettingStore(Protocol):
    """Settings of the whole service, few and small (the pause of everything, `PAUSE_ALL`)."""

    def get_setting(self, name: str) -> Doc | None:
        """A setting by name (None when it is not set); one read by id."""

    def put_setting(self, name: str, value: Doc | None) -> None:
        """Set a setting to `value` (None: remove it)."""


PAUSE_ALL = "pause"  # the setting of the kill switch: {reason, by, at} while everything is paused


class Store(ObjectReads, LoopStore, Committer, UserStore, SettingStore, PlaceStore, Protocol):
    """Everything lambdaop keeps, behind one object."""

    embedded: bool  # the embedded server: this process is its only user

    def ping(self, deadline: float = 0.8) -> bool:
        """Whether the store answers a read within `deadline` seconds."""

    def probe(self, deadline: float = 0.8) -> str | None:
        """None when it answers a read within `deadline`; else `timeout`, or `error: …` saying why."""

    def deadline(self, seconds: float) -> AbstractContextManager[None]:
        """Every store operation inside answers within `seconds`, or raises StoreUnavailable."""

    def identify(self, process: str) -> None:
        """Name this process (its transactions can be ended by others if it dies inside one)."""

    def close(self) -> None: ...
