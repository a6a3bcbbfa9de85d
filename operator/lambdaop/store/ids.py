"""Object ids: 24 hex digits that sort by creation time, to the millisecond.

  8 digits  seconds since 1970 (as a MongoDB ObjectId, so ids made by earlier
            versions sort among them)
  3 digits  milliseconds
  6 digits  this process, at random
  7 digits  a counter of this process

Lists page newest first on the id, and read it in bounded windows of time
(`floor(t)` is the smallest id made at `t`): at millisecond resolution a
window holds what was created in it, however fast objects are created.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import secrets
import threading
import time

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")

_PROCESS = secrets.randbits(24)
_COUNTER = itertools.count(secrets.randbits(20))
_LOCK = threading.Lock()


def new_id(at: float | None = None) -> str:
    """A new id, made now (or at `at`, seconds since 1970)."""
    ms = int((time.time() if at is None else at) * 1000)
    with _LOCK:
        n = next(_COUNTER) & 0xFFFFFFF
    return f"{ms // 1000:08x}{ms % 1000:03x}{_PROCESS:06x}{n:07x}"


def floor(t: dt.datetime) -> str:
    """The smallest id made at `t` (ids below it were made earlier)."""
    return floor_ms(int(t.timestamp() * 1000))


def floor_ms(ms: int) -> str:
    """The smallest id made in millisecond `ms` since 1970."""
    ms = max(0, ms)
    return f"{ms // 1000:08x}{ms % 1000:03x}" + "0" * 13


def made_at(object_id: str) -> dt.datetime:
    """When an id was made (to the second for an id of an earlier version)."""
    secs = int(object_id[:8], 16)
    ms = int(object_id[8:11], 16)
    return dt.datetime.fromtimestamp(secs + (ms / 1000 if ms < 1000 else 0), dt.UTC)
