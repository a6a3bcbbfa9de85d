"""The connection every part of the MongoDB store shares: client, collections, sessions, transactions.

Collections and why they look as they do (the embedded engine rewrites every
index entry of a document on every update, ~1-3 ms per update, while an
inserted index entry costs ~0.1 ms; measured in benchmarks/store_indexes.py):

- `objects`: one document per Task or TaskSet: identity, spec, `state`,
  `progress`, the last call, `due` while it waits for a call, and `fence`,
  which every write increments. Indexes: `by_state` for the lists and `due`
  (sparse) for the loop, nothing else: the hot path writes a document once
  per call (its result), and every index costs ~0.5 ms on that write.
- `names` (`_id` = owner, kind and name) and `listing` (`_id` = object id,
  indexed by kind): written once when an object is created, never updated.
  They keep names unique and page everybody's objects without burdening
  the updates of `objects`.
- `leases`: which process holds which object, `{_id: object id, owner,
  until}`: at most one lease per object, by construction.
- `attempts`: the call history, one small document per call (`o` = object id).
- `counters`: objects per state, per owner and kind, in one slot per process
  (so no two processes ever write the same counter document), folded into
  slot "0" when a process is gone (`processes` holds the heartbeats).
- `users` and `sessions`.
- `settings`: a few documents of the whole service by name (`_id`): the pause of everything.
- `runs`: one document per ended run of any object (the runs list); see `runs`.
- `limits`: the places of limit keys (`concurrency`, `rate`) and who waits for them; see `places`.

Rules of this implementation, beside the contract's:

- Filters put `_id` first; no `find_one_and_update`; no counts over collections.
- Transactions never wait: a write conflict is answered at once and retried later.
- A write of several documents to a collection that transactions write runs in a
  transaction of its own. Outside one, the embedded server retries a conflicting
  multi-document write without end while holding the collection, and the
  transaction it waits for can then never finish: the whole store stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymongo
from pymongo.client_session import ClientSession
from pymongo.errors import ConnectionFailure, ExecutionTimeout, OperationFailure, PyMongoError, WTimeoutError

from lambdaop.core.errors import StoreUnavailable

log = logging.getLogger("lambdaop.store")

BASE_SLOT = "0"
# ids per `$in`: the embedded server tests `$in` against each candidate in turn, so its cost grows
# with the square of the list (100 ids: ~11 ms, 500: ~190 ms, all under its one storage lock)
IN_CHUNK = 100


def chunks(ids: list[str], size: int = IN_CHUNK) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def is_conflict(exc: PyMongoError) -> bool:
    """A write conflict or another transient transaction error: try again later."""
    if isinstance(exc, OperationFailure) and (
        exc.code in (112, 251, 244, 246, 24) or _codes(exc) & UNAVAILABLE
    ):
        return True  # a write conflict, an aborted transaction; a step-down or a shutdown going on
    return hasattr(exc, "has_error_label") and exc.has_error_label("TransientTransactionError")


class Base:
    """The client and collections, and this thread's transaction session."""

    def __init__(
        self,
        uri: str,
        database: str = "lambdaop",
        embedded: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        options: dict[str, Any] = {"tz_aware": True, "serverSelectionTimeoutMS": 10000, "appname": "lambdaop"}
        if embedded:
            # retryable writes make the embedded server rebuild a retry table on every write
            options["retryWrites"] = False
        else:
            options["w"] = "majority"
        if username:
            options.update(username=username, password=password, authSource="admin")
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, **options)
        self.db = self.client[database]
        self.objects = self.db["objects"]
        self.leases = self.db["leases"]
        self.attempts = self.db["attempts"]
        self.counters = self.db["counters"]
        self.processes = self.db["processes"]
        self.users = self.db["users"]
        self.sessions = self.db["sessions"]
        self.names = self.db["names"]
        self.listing = self.db["listing"]
        self.directory = self.db["directory"]  # objects created per hour, minute and second (directory.py)
        self.settings = self.db["settings"]
        self.runs = self.db["runs"]
        self.limits = self.db["limits"]  # places of limit keys and who waits for them (places.py)
        self.embedded = embedded
        self._transactions = True
        self._local = threading.local()
        self._process = ""

    def ping(self, deadline: float = 0.8) -> bool:
        """Whether the store answers a read of its storage within `deadline` seconds (a server
        whose storage failed still answers `ping`)."""
        return self.probe(deadline) is None

    def probe(self, deadline: float = 0.8) -> str | None:
        """None when a read of the store's storage comes back within `deadline` seconds; else
        `timeout` (it does not answer) or `error: …` (it answers, but cannot read its data)."""
        try:
            with pymongo.timeout(deadline):
                self.processes.find_one({"_id": "-"}, {"_id": 1})
            return None
        except (ConnectionFailure, ExecutionTimeout) as exc:
            return "timeout" if getattr(exc, "timeout", True) else f"error: {exc}"
        except PyMongoError as exc:
            return "timeout" if getattr(exc, "timeout", False) else f"error: {str(exc)[:200]}"

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Every store operation inside answers within `seconds`, or raises StoreUnavailable."""
        try:
            with pymongo.timeout(seconds):
                yield
        except (ConnectionFailure, ExecutionTimeout, WTimeoutError) as exc:
            raise StoreUnavailable(
                f"the store did not answer within {seconds:g}s ({type(exc).__name__})"
            ) from None
        except OperationFailure as exc:
            if unavailable(exc):
                raise StoreUnavailable(f"the store cannot take it now: {_errmsg(exc)}") from None
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.client.admin.command("ping")
                return
            except PyMongoError as exc:
                last = exc
                time.sleep(0.1)
        raise StoreUnavailable(f"the store does not answer: {last}")

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        with pymongo.timeout(2.0):  # a store that is gone is not waited for
            if session is not None:
                with contextlib.suppress(PyMongoError):
                    session.end_session()
            with contextlib.suppress(PyMongoError):
                self.client.close()

    def identify(self, process: str) -> None:
        """Name this process: its transaction sessions are listed under it, so others can end
        them if it dies inside a transaction (`end_sessions_of`)."""
        self._process = process

    def _session(self) -> ClientSession:
        """This thread's own session (one per thread, reused by every transaction it runs)."""
        session: ClientSession | None = getattr(self._local, "session", None)
        if session is None or session.has_ended:
            session = self.client.start_session()
            self._local.session = session
            if self._process:
                self.processes.update_one(
                    {"_id": self._process}, {"$addToSet": {"sessions": session.session_id}}, upsert=True
                )
        return session

    @contextlib.contextmanager
    def _txn(self) -> Iterator[ClientSession | None]:
        """A transaction, or plain statements on a server without them (logged once)."""
        if not self._transactions:
            yield None
            return
        session = self._session()
        try:
            with session.start_transaction():
                yield session
        except OperationFailure as exc:
            if exc.code == 20 or "Transaction numbers" in str(exc):
                log.error("the store does not support transactions (use a replica set); writing without them")
                self._transactions = False
            raise
        except BaseException:
            if session.in_transaction:
                with contextlib.suppress(PyMongoError):
                    session.abort_transaction()
            raise


# internal error, time limit, shutdown, step-down, not (or no longer) the primary
UNAVAILABLE = frozenset({1, 50, 91, 189, 10058, 10107, 11600, 11602, 13435, 13436})


def unavailable(exc: Exception) -> bool:
    """A step-down, a shutdown or a primary no longer writable: the store cannot take it now."""
    return isinstance(exc, OperationFailure) and bool(_codes(exc) & UNAVAILABLE)


def _codes(exc: OperationFailure) -> set[int]:
    """The error's code, and those of a bulk write's `writeErrors` and `writeConcernError`."""
    details = exc.details or {}
    inner = [*(details.get("writeErrors") or []), details.get("writeConcernError") or {}]
    return {c for c in (exc.code, *(e.get("code") for e in inner)) if isinstance(c, int)}


def _errmsg(exc: OperationFailure) -> str:
    details = exc.details or {}
    first = (details.get("writeErrors") or [{}])[0] or details.get("writeConcernError") or {}
    return str(details.get("errmsg") or first.get("errmsg") or exc)
