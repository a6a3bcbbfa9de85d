"""What reaches the reconcile loop's queue: typed, frozen events (never tuples).

Other threads (the service, the invoker, the store reader, the writer) never
touch the loop's state: they put one of these on its queue, and the loop's
own thread handles it. Called by reconciler and its parts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lambdaop.engine.progress import Progress
from lambdaop.engine.record import Change, StoredObject
from lambdaop.store.contract import Due, WriteOutcome


class Action(StrEnum):
    """What the service asks the loop to do to an object it holds."""

    CANCEL = "cancel"
    MODIFY = "modify"
    REPLACE = "replace"  # a new spec (generation) for a scheduled object
    SUSPEND = "suspend"
    RESUME = "resume"
    SET = "set"  # fields that do not move the object (pruned, source, manager)
    DECIDE = "decide"  # a person's ask (run now, re-run, backfill, pause): the payload decides the change
    CALLBACK = "callback"  # a POST to a waitForCallback's URL (the payload decides the change)


class Write(StrEnum):
    """Why the loop writes a held object."""

    STARTED = "started"  # its call has been out a while: the store shows it running
    RESULT = "result"
    CATCH_UP = "catchup"
    CANCEL = "cancel"
    MODIFY = "modify"
    REPLACE = "replace"
    SUSPEND = "suspend"
    RESUME = "resume"
    SET = "set"
    DECIDE = "decide"
    CALLBACK = "callback"


@dataclass(frozen=True)
class Changed:
    """An object was created or changed by this process (held already, until then, when given)."""

    record: StoredObject
    held_until: dt.datetime | None = None


@dataclass(frozen=True)
class Answer:
    """The loop's answer to a request: the record as written, or (`later`) as it is while the
    change waits for the run going on to end."""

    record: StoredObject
    later: bool = False


@dataclass(frozen=True)
class Request:
    """A change of an object this process holds, made through the loop so it cannot race its call.

    The future answers the written record, or raises Conflict (with the reason)
    or NotHeld (change it through the store instead).
    """

    action: Action
    id: str
    payload: Any
    future: Future[Answer]


@dataclass(frozen=True)
class Refilled:
    """A range read of due work came back: what it found, how far it covered, and if more is there."""

    found: tuple[Due, ...]
    covered: dt.datetime
    more: bool


@dataclass(frozen=True)
class Claimed:
    """A claim came back: what was asked, what is now held (read back: its due time and record, None
    when it cannot be read), until when."""

    asked: tuple[Due, ...]
    got: frozenset[str]
    records: Mapping[str, tuple[dt.datetime | None, StoredObject | None]]
    until: dt.datetime
    sent: dt.datetime | None = None  # when the claim was asked for


@dataclass(frozen=True)
class Pending:
    """One write of a held object, on its way to the store: what it is and what follows it."""

    id: str
    why: Write
    progress: Progress  # the loop's progress once it is written
    change: Change
    release: bool  # the lease ends with it (the next call is not due soon)
    until: dt.datetime  # else the lease lasts until then
    reply: Future[Answer] | None = None
    later: bool = False  # the reply says the change waits for the run going on


@dataclass(frozen=True)
class Written:
    """The writer's answer to a `Pending` write."""

    pending: Pending
    outcome: WriteOutcome


@dataclass(frozen=True)
class Renewed:
    """Leases were renewed (until `until`); those in `lost` were taken over by another process."""

    lost: frozenset[str]
    renewed: tuple[str, ...] = ()
    until: dt.datetime | None = None


@dataclass(frozen=True)
class Swept:
    """The lease sweep came back: objects freed from stopped processes (with why), and overdue
    work that nobody holds."""

    freed: dict[str, str]
    unheld: tuple[Due, ...]


@dataclass(frozen=True)
class Released:
    """Leases were ended; these of the objects still wait for a call."""

    waiting: tuple[Due, ...]


@dataclass(frozen=True)
class StoreFailed:
    """A store job of the loop failed; `what` says which (the next one retries)."""

    what: str
    error: Exception
    asked: tuple[Due, ...] = ()


@dataclass(frozen=True)
class PauseChecked:
    """The pause of everything as the store (or this process's service) has it: None when off."""

    setting: Mapping[str, Any] | None
