"""Group commit: one thread writes every state transition of the process, in batches.

The loop (results), the service (creations, cancels, changes) and the folder
all hand `Op`s to the writer; each batch is one `Store.commit` transaction,
so a thousand results cost one commit, not a thousand. The loop's results
linger up to `linger` seconds to share a commit (on the embedded store a
transaction costs as much as ten updates); a caller who waits (the API) is
written at once, with whatever is queued. Callers get the outcome
through a callback (the loop: its event queue) or wait for it (`write`).
An op that meets a write conflict (an open transaction of another process
holds its object) is tried again a little later until its deadline; a
failing op never affects the rest of its batch, and nothing that goes wrong
in a batch stops the thread. Time comes from the clock (monotonic, for lingering and retry deadlines). Called by
the loop, the service and runtime.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from lambdaop.core.clock import Clock, to_utc
from lambdaop.core.errors import StoreUnavailable
from lambdaop.store.contract import Committer, Op, WriteOutcome

log = logging.getLogger(__name__)

Done = Callable[[WriteOutcome], None]


@dataclass
class _Item:
    op: Op
    done: Done
    deadline: float  # monotonic: until when a conflict is retried
    urgent: bool = False  # somebody waits for it: no lingering
    queued: float = 0.0
    not_before: float = 0.0
    cancelled: bool = False  # its waiter gave up before it was written: it is not written
    taken: bool = False  # a commit with it was sent: its outcome is the store's, whether or not anyone waits


@dataclass
class Pending:
    """Ops handed in together (`Writer.start`), in order, with their outcomes to come."""

    items: list[_Item] = field(default_factory=list)
    futures: list[Future[WriteOutcome]] = field(default_factory=list)

    def __iadd__(self, other: Pending) -> Pending:
        self.items += other.items
        self.futures += other.futures
        return self


class Writer:
    """Batches ops from any thread into `Store.commit` transactions.

    With `threaded=False` nothing runs by itself: `run_pending()` writes what
    is queued (unit tests drive it that way, with no threads and no sleeps).
    """

    def __init__(
        self,
        store: Committer,
        owner: str,
        slot: str,
        clock: Clock,
        max_batch: int = 500,  # results share a commit: its cost is mostly per commit, not per write
        retry_for: float = 90.0,
        threaded: bool = True,
        linger: float = 0.2,
    ) -> None:
        self.store = store
        self.owner = owner
        self.slot = slot
        self.clock = clock
        self.max_batch = max_batch
        self.retry_for = retry_for
        self.threaded = threaded
        self.linger = linger
        self.on_commit: Callable[[float], None] | None = None
        self.batches = 0
        self.written = 0
        self.last_batch_seconds = 0.0
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._later: list[_Item] = []
        self._waiting = 0
        self._count_lock = threading.Lock()
        self._failing = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    # ----- any thread

    def submit(self, op: Op, done: Done, retry_for: float | None = None, urgent: bool = False) -> _Item:
        now = self.clock.monotonic()
        deadline = now + (self.retry_for if retry_for is None else retry_for)
        item = _Item(op, done, deadline, urgent, now)
        with self._count_lock:
            self._waiting += 1
        self._queue.put(item)
        return item

    @property
    def backlog(self) -> int:
        """Writes handed in and not answered yet (queued, being written, or waiting to be tried again)."""
        return self._waiting

    def write(self, op: Op, timeout: float = 60.0, retry_for: float = 5.0) -> WriteOutcome:
        """Write one op and wait for its outcome (API and folder threads)."""
        return self.write_many([op], timeout, retry_for)[0]

    def write_many(self, ops: list[Op], timeout: float = 120.0, retry_for: float = 5.0) -> list[WriteOutcome]:
        """Write ops and wait up to `timeout` seconds for all their outcomes. Past it, those not
        taken into a commit yet are withdrawn, and StoreUnavailable says the store did not take
        them (none of them was acknowledged)."""
        return self.wait(self.start(ops, min(retry_for, timeout)), timeout)

    def start(self, ops: list[Op], retry_for: float = 5.0) -> Pending:
        """Hand ops in without waiting (a caller prepares the next ones while these are
        committed); `wait` answers their outcomes."""
        pending = Pending()
        for op in ops:
            future: Future[WriteOutcome] = Future()
            pending.items.append(self.submit(op, future.set_result, retry_for, urgent=True))
            pending.futures.append(future)
        return pending

    def wait(self, pending: Pending, timeout: float = 120.0) -> list[WriteOutcome]:
        """The outcomes of ops handed in with `start`, waiting up to `timeout` seconds in all."""
        futures = pending.futures
        if not self.threaded:
            while not all(f.done() for f in futures):
                self.run_pending()
        end = self.clock.monotonic() + timeout
        try:
            return [f.result(timeout=max(0.0, end - self.clock.monotonic())) for f in futures]
        except TimeoutError:
            for item in pending.items:
                item.cancelled = True
            sent = [i.op.id for i, f in zip(pending.items, futures, strict=True) if i.taken and not f.done()]
            if sent:  # a commit with them is under way: they may be stored yet
                shown = ", ".join(sent[:3]) + (f" and {len(sent) - 3} more" if len(sent) > 3 else "")
                raise StoreUnavailable(
                    f"the store did not confirm the write within {timeout:g}s; a commit with it was under way, so it may "
                    f"still be stored (id {shown}): look it up before sending it again"
                ) from None
            raise StoreUnavailable(
                f"the store did not take the write within {timeout:g}s; nothing was written, try again"
            ) from None

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopped.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # ----- the writer thread

    def _run(self) -> None:
        while True:
            try:
                if not self.run_pending(block=True):
                    return
            except Exception:  # never die; the batch's callers already have an answer
                log.exception("the store writer failed on a batch; it goes on")
                self._stopped.wait(0.1)  # a moment before the next batch, unless it is stopping

    def run_pending(self, block: bool = False) -> bool:
        """Write one batch of what is queued; answers False once the writer is stopped."""
        batch: list[_Item] = []
        now = self.clock.monotonic()
        later: list[_Item] = []
        for item in self._later:
            (batch if item.not_before <= now else later).append(item)
        self._later = later
        if block and not batch:
            wait = min((i.not_before for i in self._later), default=now + 1.0) - now
            try:
                first = self._queue.get(timeout=max(0.01, wait))
            except queue.Empty:
                return not self._stopped.is_set()
            if first is None:
                self._flush_at_stop()
                return False
            batch.append(first)
        while len(batch) < self.max_batch:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                if not block or not batch or any(i.urgent for i in batch):
                    break
                wait = batch[0].queued + self.linger - self.clock.monotonic()
                if wait <= 0:
                    break
                try:  # let more results join this commit
                    queued = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if queued is None:
                self._write(batch)
                self._flush_at_stop()
                return False
            batch.append(queued)
        waited, rest = _waited_first(batch)
        if waited and rest:  # somebody waits: their writes go in a commit of their own, not behind the loop's
            self._write(waited)
            batch = rest
        if batch:
            self._write(batch)
        return not self._stopped.is_set()

    def _flush_at_stop(self) -> None:
        pending = [i for i in self._later]
        self._later = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                pending.append(item)
        if pending:
            self._write(pending, final=True)

    def _write(self, batch: list[_Item], final: bool = False) -> None:
        withdrawn = [i for i in batch if i.cancelled]
        if withdrawn:
            self._answered(len(withdrawn))
            batch = [i for i in batch if not i.cancelled]
            if not batch:
                return
        for item in batch:
            item.taken = True
        t0 = self.clock.monotonic()
        try:
            outcomes = self.store.commit(
                [i.op for i in batch], self.owner, self.slot, to_utc(self.clock.now())
            )
            if self._failing:
                log.warning("the store takes writes again")
                self._failing = False
        except Exception as exc:  # the store went away or stalled: every write is tried again later
            if not self._failing:
                log.error("a batch of %d writes failed (%s: %s); they are tried again", len(batch), type(exc).__name__, str(exc)[:200])  # fmt: skip
                self._failing = True
            outcomes = [WriteOutcome.CONFLICT] * len(batch)
        self.batches += 1
        self.last_batch_seconds = self.clock.monotonic() - t0
        if self.on_commit is not None:
            self.on_commit(self.last_batch_seconds)
        if self.last_batch_seconds > 1.0:
            log.warning("a store commit took %.2fs (%d writes); the store is slow or busy", self.last_batch_seconds, len(batch))  # fmt: skip
        now = self.clock.monotonic()
        for item, outcome in zip(batch, outcomes, strict=True):
            if outcome is WriteOutcome.CONFLICT and not final and now < item.deadline:
                item.not_before = now + 0.25
                self._later.append(item)
                continue
            self.written += outcome is not WriteOutcome.CONFLICT
            self._answered(1)
            try:
                item.done(outcome)
            except Exception:
                log.exception("object %s: the writer's callback failed", item.op.id)

    def _answered(self, n: int) -> None:
        with self._count_lock:
            self._waiting -= n


def _waited_first(batch: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """The writes somebody waits for (a creation, a change from the API), to be committed before the
    loop's results queued with them: a result commit writes several collections per object and
    can take a hundred milliseconds. A write of an object that also has a result queued keeps its
    place, so each object's writes stay in the order they came."""
    if not any(i.urgent for i in batch) or all(i.urgent for i in batch):
        return [], batch
    queued = {i.op.id for i in batch if not i.urgent}
    first = [i for i in batch if i.urgent and i.op.id not in queued]
    if not first:
        return [], batch
    moved = {id(i) for i in first}
    return first, [i for i in batch if id(i) not in moved]
