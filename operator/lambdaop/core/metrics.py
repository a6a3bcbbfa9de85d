"""Prometheus metrics of one lambdaop process (`GET /metrics`), with prometheus-client.

One registry per process (so several runtimes in one test process never
share counters). The loop counts calls, their duration and how late they
left; the writer times store commits; the folder counts files it could not
apply; gauges read the loop's calls in flight and objects held, and its
calls waiting for places of limit keys (`watch_limits`); the objects
per state come from the maintained counters at scrape time. Also keeps the
calls of the last hour per owner and minute, for the web page's chart.
Called by reconciler, writer, watcher, runtime and api.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lambdaop.core.clock import Clock, SystemClock

STATES = ("scheduled", "running", "completed", "failed", "cancelled")
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def step_family(step: str) -> str:
    """task, check, fallback or notify (a TaskSet's task:N counts as task)."""
    return step.partition(":")[0]


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


class _Objects(Collector):
    """lambdaop_objects{kind,state}: everybody's objects per state, from the maintained counters."""

    def __init__(self, counts: Callable[[str | None, str], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "lambdaop_objects", "Objects per kind and state (all owners)", labels=["kind", "state"]
        )
        for kind in ("Task", "TaskSet"):
            try:
                counts = self.counts(None, kind)
            except Exception:  # the store is away: the scrape still answers
                continue
            for state in STATES:
                family.add_metric([kind, state], counts.get(state, 0))
        yield family


class _Count(Collector):
    """A counter whose value another part keeps (read at each scrape)."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int]) -> None:
        self.name, self.documentation, self.value = name, documentation, value

    def collect(self) -> Iterable[Any]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value())


class LimitsView(Protocol):
    """What the limit metrics read of the loop's limiter at scrape time."""

    def waiting(self) -> Mapping[tuple[str, str, str], int]: ...

    def held_places(self) -> int: ...

    def tallies(self) -> Mapping[str, int]: ...


class _Limits(Collector):
    """Limits per key: calls waiting per key, places held, and what became of places and waits."""

    def __init__(self, view: LimitsView) -> None:
        self.view = view

    def collect(self) -> Iterable[Any]:
        waiting = GaugeMetricFamily("lambdaop_limit_waiting", "Calls of this process waiting for a place of a limit key, by kind (concurrency, rate), owner and key", labels=["kind", "owner", "key"])  # fmt: skip
        for (kind, owner, key), n in sorted(self.view.waiting().items()):
            waiting.add_metric([kind, owner, key], n)
        yield waiting
        yield GaugeMetricFamily("lambdaop_limit_places_held", "Concurrency places of limit keys this process holds", value=self.view.held_places())  # fmt: skip
        tallies = self.view.tallies()
        waits = CounterMetricFamily("lambdaop_limit_waits", "Calls that had to wait for a place, by the kind of place they waited for first", labels=["kind"])  # fmt: skip
        places = CounterMetricFamily("lambdaop_limit_places", "Places of limit keys: taken from the store, handed to the next call here with no store work, released, given up unused (a rate place whose call could not leave in time), lost (not renewed in time)", labels=["event"])  # fmt: skip
        for name, n in sorted(tallies.items()):
            kind, _, what = name.partition(":")
            (waits if kind == "waits" else places).add_metric([what], n)
        yield waits
        yield places


class Metrics:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.started = self.clock.now()  # calls per minute are counted from here (kept in memory)
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("lambdaop_calls", "Calls made, by step kind (task, check, fallback, notify), result and status class", ["kind", "result", "status"], registry=r)  # fmt: skip
        self.call_seconds = Histogram("lambdaop_call_duration_seconds", "How long calls took", ["kind"], buckets=CALL_BUCKETS, registry=r)  # fmt: skip
        self.lateness = Histogram("lambdaop_lateness_seconds", "How late calls left: the moment the loop sent them minus their due time", buckets=LATENESS_BUCKETS, registry=r)  # fmt: skip
        self.pass_seconds = Histogram("lambdaop_reconcile_pass_seconds", "How long one pass of the reconcile loop took", buckets=LATENESS_BUCKETS, registry=r)  # fmt: skip
        self.commit_seconds = Histogram("lambdaop_store_commit_seconds", "How long one store commit (a batch of writes) took", buckets=LATENESS_BUCKETS, registry=r)  # fmt: skip
        self.store_restarts = Counter("lambdaop_store_restarts", "Times the embedded store stopped and was started again", registry=r)  # fmt: skip
        self.folder_errors = Counter("lambdaop_folder_apply_errors", "Spec files of the watched folder that could not be applied", registry=r)  # fmt: skip
        self.limit_wait = Histogram("lambdaop_limit_wait_seconds", "How long calls that waited for a place of a limit key waited, from their due time to leaving", buckets=WAIT_BUCKETS, registry=r)  # fmt: skip
        self.in_flight = Gauge("lambdaop_calls_in_flight", "Calls sent and not yet answered", registry=r)
        self.leases = Gauge("lambdaop_leases_held", "Objects this process holds under its lease", registry=r)
        self._minutes: dict[str, collections.deque[list[int]]] = {}
        self._lock = threading.Lock()

    def watch(self, in_flight: Callable[[], float], leases: Callable[[], float], counts: Callable[[str | None, str], dict[str, int]]) -> None:  # fmt: skip
        self.in_flight.set_function(in_flight)
        self.leases.set_function(leases)
        self.registry.register(_Objects(counts))

    def watch_limits(self, view: LimitsView) -> None:
        self.registry.register(_Limits(view))

    def watch_status(self, failures: Callable[[], int]) -> None:
        """lambdaop_status_write_failures: status reports of the watched folder that could not be
        written (each try counted; the log says it once per file and error)."""
        self.registry.register(_Count("lambdaop_status_write_failures", "Status report writes beside the spec files that failed (each try)", failures))  # fmt: skip

    def call(self, owner: str, step: str, ok: bool, status: int | None, seconds: float) -> None:
        family = step_family(step)
        self.calls.labels(family, "ok" if ok else "failed", status_class(status)).inc()
        self.call_seconds.labels(family).observe(max(0.0, seconds))
        minute = int(self.clock.now().timestamp() // 60)
        with self._lock:
            ring = self._minutes.setdefault(owner, collections.deque(maxlen=60))
            if not ring or ring[-1][0] != minute:
                ring.append([minute, 0, 0])
            ring[-1][1 if ok else 2] += 1

    def last_hour(self, owner: str) -> list[dict[str, int]]:
        """Calls per minute of this owner over the last hour (oldest first), by this process."""
        now = int(self.clock.now().timestamp() // 60)
        with self._lock:
            seen = {m: (ok, bad) for m, ok, bad in self._minutes.get(owner, ())}
        return [
            {"minute": (now - 59 + i) * 60, "ok": seen.get(now - 59 + i, (0, 0))[0], "failed": seen.get(now - 59 + i, (0, 0))[1]}
            for i in range(60)
        ]  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
