"""The limiter's lines: this process's calls waiting per (kind, key), and what each line knows of the store.

`Lines` owns a `Line` per (kind of place, key) with calls waiting, and for each line: when it asks
the store next, whether a take is out (one at a time), how many places its next take asks for
(growing through a burst), what other processes said of their calls waiting (whose turn a place
is), and this process's own word about its waiting calls. A line asks in the pass in which a call
joins it, then when its take says (the next rate place frees, or a poll later), at once after a
full take; a line with no call waiting and no word out is dropped. Takes go through the limiter's
store thread (`submit`); only `withdraw`, at the end of the process, writes on the caller's thread.
Called by the limiter, on the loop's thread; `waiting` is safe from any thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from lambdaop.core.clock import Clock
from lambdaop.core.places import LimitType, Waiter
from lambdaop.engine.limits import Line, Ticket, my_turn
from lambdaop.loop.placejobs import LimiterStore, LimitSettings, PlacesTaken, take_job
from lambdaop.loop.places import Submit
from lambdaop.spec.flowcontrol import MAX_LIMIT

C, R = LimitType.CONCURRENCY, LimitType.RATE
LineId = tuple[LimitType, str]


class Lines:
    def __init__(
        self, store: LimiterStore, me: str, clock: Clock, settings: LimitSettings, submit: Submit
    ) -> None:
        self.store, self.me, self.clock, self.settings, self.submit = store, me, clock, settings, submit
        self.lines: dict[LineId, Line] = {}
        self.batches: dict[LineId, int] = {}  # places the next take of a line asks for at most
        self.rivals: dict[LineId, tuple[Waiter, ...]] = {}
        self.asking: set[LineId] = set()
        self.next_ask: dict[LineId, dt.datetime] = {}
        self.words: dict[LineId, tuple[dt.datetime, dt.datetime]] = {}  # what this process said waits

    @property
    def empty(self) -> bool:
        """No line, no word out, nothing heard of others."""
        return not self.words and not self.lines and not self.rivals

    def __contains__(self, line_id: object) -> bool:
        return line_id in self.lines

    def get(self, line_id: LineId) -> Line | None:
        return self.lines.get(line_id)

    def waits(self, line_id: LineId, call: str) -> bool:
        """The call waits in this line."""
        return call in self.lines.get(line_id, ())

    def join(self, line_id: LineId, ticket: Ticket, now: dt.datetime) -> bool:
        """The call waits in the line (False: it waits there already, in its place); a line with no
        time to ask yet asks now."""
        if not self.lines.setdefault(line_id, Line()).join(ticket):
            return False
        self.next_ask.setdefault(line_id, now)
        return True

    def leave(self, line_id: LineId, call: str) -> None:
        line = self.lines.get(line_id)
        if line is not None:
            line.leave(call)

    def turn(self, line_id: LineId, due: dt.datetime, now: dt.datetime) -> bool:
        """Whether a call of this process due at `due` is next, as far as other processes said."""
        return my_turn(due, self.rivals.get(line_id, ()), now)

    def others_wait(self, line_id: LineId, now: dt.datetime) -> bool:
        """Another process still says it has calls waiting in this line."""
        return any(w.until > now for w in self.rivals.get(line_id, ()))

    def waiting(self) -> dict[tuple[str, str, str], int]:
        """Calls waiting per (kind, owner, key) (any thread: a copy)."""
        out = {}
        for (kind, key), line in list(self.lines.items()):
            owner, _, name = key.partition("\x1f")
            out[("concurrency" if kind is C else "rate", owner, name)] = len(line)
        return out

    # ----- asking the store

    def ask(self, now: dt.datetime, mine: Callable[[str], frozenset[int]]) -> dt.datetime | None:
        """Each line whose time came asks the store, if no take of it is out (`mine`: the places of
        a key held here); answers when the next line asks."""
        wake: list[dt.datetime] = []
        for line_id, line in list(self.lines.items()):
            if line_id in self.asking:
                continue
            if not line and line_id not in self.words:
                del self.lines[line_id]
                self.next_ask.pop(line_id, None)
                continue
            at = self.next_ask.get(line_id, now)
            if at <= now:
                self.asking.add(line_id)
                self.submit(self._take(line_id, line, mine), *line_id)
            else:
                wake.append(at)
        return min(wake, default=None)

    def _take(self, line_id: LineId, line: Line, mine: Callable[[str], frozenset[int]]) -> Callable[[], PlacesTaken]:  # fmt: skip
        """A job: read the key, take the places the first calls in line may have, say what waits."""
        kind, key = line_id
        tickets = line.head(max((t.limit for t in line), default=1) + 1)
        held = mine(key) if kind is C else frozenset()
        batch = self.batches.get(line_id, self.settings.batch)
        return take_job(self.store, self.me, self.clock, self.settings, kind, key, tickets, len(line), self.words.get(line_id), held, batch)  # fmt: skip

    def answered(self, event: PlacesTaken) -> Line | None:
        """A take came back: what it heard of others and what this process says now; the line."""
        line_id = (event.kind, event.key)
        self.asking.discard(line_id)
        self.rivals[line_id] = event.rivals
        if event.word is None:
            self.words.pop(line_id, None)
        else:
            self.words[line_id] = event.word
        return self.lines.get(line_id)

    def schedule(self, event: PlacesTaken) -> None:
        """When the line of a take that came back asks again: when the next rate place frees, or a
        poll later; after a full take, at once and for twice as many."""
        line_id = (event.kind, event.key)
        later = (
            event.next_free
            if event.kind is R and event.next_free is not None
            else event.at + self.settings.poll
        )
        self.next_ask[line_id] = max(later, event.at + self.settings.poll / 4)
        batch = self.batches.pop(line_id, self.settings.batch)
        if len(event.picks) >= batch and self.lines.get(line_id):  # a full take: more may be free
            self.next_ask[line_id] = event.at
            self.batches[line_id] = min(2 * batch, MAX_LIMIT)

    def retry(self, line_id: LineId, now: dt.datetime) -> None:
        """A take failed: the line asks again a poll later."""
        self.asking.discard(line_id)
        self.next_ask[line_id] = now + self.settings.poll

    def sooner(self, line_id: LineId, at: dt.datetime) -> None:
        """The line, if it asks, asks again by `at` (when places of its key free)."""
        if line_id in self.next_ask:
            self.next_ask[line_id] = min(self.next_ask[line_id], at)

    def forget_rivals(self, now: dt.datetime) -> None:
        """Drop what other processes said once none of it holds any more."""
        for line_id, others in list(self.rivals.items()):
            if all(w.until <= now for w in others):
                del self.rivals[line_id]

    def withdraw(self, now: dt.datetime) -> None:
        """Withdraw every word this process has out, at once, on this thread."""
        for kind, key in list(self.words):
            self.store.put_waiting(key, kind, self.me, None, 0, now)
        self.words.clear()
