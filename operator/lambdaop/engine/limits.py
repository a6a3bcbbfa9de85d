"""Limits per key: which calls wait for a place, in what order, and which places they may take.

A call whose Task or named step has `concurrency: {key, limit}` holds one of the first `limit`
concurrency places of its key while it is out; one with `rate: {key, limit, per}` takes one of the
first `limit` rate places of its key as it leaves, and that place stays taken for `per` after the
moment by which the call must have left. The places are kept in the store (`PlaceStore`), so a
place is the same place for every process sharing it: at most `limit` calls of a key are out at
once (or leave in any `per`) across all of them. Calls of one key with different limits share its
first places: each call counts the places below its own limit.

Pure: no I/O, no clock. What is here:

- `limits_of(plan, step)`: the limits of a step's call (None for every call without them: the
  loop does nothing more for those);
- `key_of`: a limit's key filled in from the call's context (a literal stays as written), scoped
  to the object's owner, so one user's keys never meet another's;
- `Ticket` and `Line`: one call waiting for the places of a key, and this process's calls waiting
  for that key in due order (earliest due first; then the order they came);
- `choose`: of what the store has of a key, which free places this process's waiting calls take
  now, in line order. Across processes the order is kept by the second a call was due: a process
  takes a place only when no other one says it has a call waiting that was due in an earlier
  second, unless the place has been free for `grace` (the other process may have stopped);
- `my_turn`: the same test when a call gives its place back and this process's next call could
  have it without asking the store;
- `next_free`: when the next rate place of a key frees (a waiting call asks again then).

Called by the loop's limiter.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lambdaop.core.places import KeyState, LimitType, Waiter
from lambdaop.engine import templates
from lambdaop.spec import TaskSetSpec, TaskSpec
from lambdaop.spec.flowcontrol import MAX_KEY, Concurrency, Rate

SEP = "\x1f"  # between the owner and the key it names
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # when a place nobody ever took became free


@dataclass(frozen=True)
class CallLimits:
    """The limits of one step's call, and the field that holds them (`spec`, `spec.steps[2]`)."""

    concurrency: Concurrency | None
    rate: Rate | None
    where: str


def limits_of(plan: TaskSpec | TaskSetSpec, step: str) -> CallLimits | None:
    """The limits of the call a step makes: a Task's own call (`task`, every attempt), or a TaskSet
    named step's (`step:NAME`). Notifications, condition checks and fallbacks have none."""
    if isinstance(plan, TaskSpec):
        holder: Any = plan if step == "task" else None
        where = "spec"
    else:
        holder, where = None, ""
        name = step.partition(":")[2] if step.startswith("step:") else None
        for i, named in enumerate(plan.steps or () if name else ()):
            if named.name == name:
                holder, where = named, f"spec.steps[{i}]"
    if holder is None:
        return None
    concurrency, rate = getattr(holder, "concurrency", None), getattr(holder, "rate", None)
    return None if concurrency is None and rate is None else CallLimits(concurrency, rate, where)


def key_of(owner: str, template: str, ctx: Mapping[str, Any], where: str) -> str:
    """A limit's key as the call has it, scoped to `owner` (raises TemplateError, naming `where`,
    when it cannot be filled in or comes out empty, too long or with control characters)."""
    text = templates.fill_text(template, ctx, where) if "${{" in template else template
    if not text.strip():
        raise templates.TemplateError(f"{where}: the key {template!r} came out empty")
    if len(text) > MAX_KEY or not text.isprintable():
        raise templates.TemplateError(f"{where}: the key {template!r} came out longer than {MAX_KEY} characters or with control characters")  # fmt: skip
    return f"{owner}{SEP}{text}"


def shown(key: str) -> str:
    """A scoped key as its owner wrote it."""
    return key.partition(SEP)[2]


def second_of(when: dt.datetime) -> dt.datetime:
    """Calls due in the same second are equals in the order across processes."""
    return when.replace(microsecond=0)


@dataclass(frozen=True)
class Ticket:
    """One call waiting for a place of a key."""

    call: str  # which call: its object, run, step and attempt (`call_id`)
    object_id: str
    due: dt.datetime  # when the call was due: its place in line
    since: dt.datetime  # when it began to wait
    limit: int  # it takes one of the key's first `limit` places
    per: dt.timedelta | None = None  # a rate place stays taken this long after the call left


def call_id(object_id: str, run: int, step: str, attempt: int) -> str:
    return f"{object_id}/{run}/{step}/{attempt}"


class Line:
    """This process's calls waiting for the places of one key, earliest due first (then in the order
    they joined). A call leaves the line when it gets a place or no longer wants one."""

    def __init__(self) -> None:
        self._heap: list[tuple[dt.datetime, int, str]] = []
        self._tickets: dict[str, tuple[int, Ticket]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, call: object) -> bool:
        return call in self._tickets

    def join(self, ticket: Ticket) -> bool:
        """Wait in line (False: that call waits already, in its place)."""
        if ticket.call in self._tickets:
            return False
        seq = next(self._seq)
        self._tickets[ticket.call] = (seq, ticket)
        heapq.heappush(self._heap, (ticket.due, seq, ticket.call))
        return True

    def leave(self, call: str) -> Ticket | None:
        found = self._tickets.pop(call, None)
        return found[1] if found is not None else None

    def first(self) -> Ticket | None:
        while self._heap:
            _, seq, call = self._heap[0]
            found = self._tickets.get(call)
            if found is not None and found[0] == seq:
                return found[1]
            heapq.heappop(self._heap)
        return None

    def pop(self) -> Ticket | None:
        ticket = self.first()
        if ticket is not None:
            heapq.heappop(self._heap)
            del self._tickets[ticket.call]
        return ticket

    def head(self, n: int) -> list[Ticket]:
        """The first `n` calls in line, in order (the line is left as it is)."""
        return [t for _, t in sorted(self._tickets.values(), key=lambda st: (st[1].due, st[0]))[:n]]

    def __iter__(self) -> Iterator[Ticket]:
        return iter(self.head(len(self._tickets)))


def rivals(state: KeyState, kind: LimitType, me: str, now: dt.datetime) -> list[Waiter]:
    """Other processes that say they have calls waiting for this kind of place of the key."""
    return [w for w in state.waiters if w.kind is kind and w.holder != me and w.until > now and w.calls > 0]


def my_turn(due: dt.datetime, others: Iterable[Waiter], now: dt.datetime) -> bool:
    """Whether a call of this process due at `due` is next for a place: no other process says it has
    a call waiting that was due in an earlier second (and still says so at `now`)."""
    mine = second_of(due)
    return all(w.until <= now or second_of(w.first) >= mine for w in others)


def choose(
    state: KeyState,
    kind: LimitType,
    tickets: list[Ticket],
    me: str,
    now: dt.datetime,
    grace: dt.timedelta,
    mine: Collection[int] = (),
    alive: Collection[str] = (),
) -> list[tuple[Ticket, int]]:
    """Which places the first calls in line take now, in line order: each a free place below its
    limit, when it is this process's turn (`my_turn`), or when the place has been free for `grace`.
    The first call that gets none ends the choice: a later call never passes an earlier one.

    A place this process holds (`mine`) is never free to it, though its time may have passed (its
    renewal is late); nor is a concurrency place whose holder is `alive` (its heartbeat goes on):
    a live process keeps its places as it keeps its leases."""
    stored = {p.number: p for p in state.places if p.kind is kind}
    others = rivals(state, kind, me, now)
    top = max((t.limit for t in tickets), default=0)
    free: list[tuple[int, dt.datetime]] = []  # (number, free since), by number: each place looked at once
    for number in range(top):
        place = stored.get(number)
        if number in mine or (place is not None and (place.until > now or place.holder in alive)):
            continue
        free.append((number, place.until if place is not None else EPOCH))
    out: list[tuple[Ticket, int]] = []
    for ticket in tickets:
        turn = my_turn(ticket.due, others, now)
        at = next((i for i, (n, since) in enumerate(free) if n < ticket.limit and (turn or now - since >= grace)), None)  # fmt: skip
        if at is None:
            break
        out.append((ticket, free.pop(at)[0]))
    return out


def lapsed_holders(state: KeyState, kind: LimitType, me: str, now: dt.datetime) -> set[str]:
    """Other processes holding concurrency places of the key whose time has passed: whether each
    has stopped is asked of its heartbeat before its places are taken."""
    if kind is not LimitType.CONCURRENCY:
        return set()  # a rate place is free once its window has passed, whoever took it
    return {
        p.holder for p in state.places if p.kind is kind and p.until <= now and p.holder not in (None, me)
    }


def next_free(state: KeyState, kind: LimitType, limit: int, now: dt.datetime) -> dt.datetime | None:
    """When the first of the key's `limit` places frees (None: one is free now)."""
    taken = [p.until for p in state.places if p.kind is kind and p.number < limit and p.until > now]
    return min(taken) if len(taken) >= limit else None
