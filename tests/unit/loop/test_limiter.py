"""The limiter driven by hand: calls that wait for places, on the in-memory store, with the test clock.

Each `Proc` is one process (its own limiter, its own synchronous store thread) and several share
one store, as processes share one MongoDB. No threads, no sleeps: a `step` runs the limiter's
pass, its store jobs and their answers.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from lambdaop.engine import templates
from lambdaop.engine.limits import CallLimits
from lambdaop.loop.limiter import Limiter
from lambdaop.loop.placejobs import LimitSettings, PlacesFailed, PlacesRenewed, PlacesTaken
from lambdaop.loop.seats import Admission
from lambdaop.loop.storethread import StoreThread
from lambdaop.spec.flowcontrol import Concurrency, Rate
from lambdaop.store.memory import MemoryStore

SETTINGS = LimitSettings(lease=dt.timedelta(seconds=6))


def concurrency(limit: int, key: str = "target-a") -> CallLimits:
    return CallLimits(Concurrency(key=key, limit=limit), None, "spec")


def rate(limit: int, per: float = 1.0, key: str = "target-a") -> CallLimits:
    return CallLimits(None, Rate(key=key, limit=limit, per=dt.timedelta(seconds=per)), "spec")


class CountingStore:
    """The shared store as one process sees it, counting what it is asked."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.asked: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        self.asked[name] += 1
        return getattr(self.store, name)


class Proc:
    """One process's limiter; `wanted` is what its loop would still call (object -> call)."""

    def __init__(
        self, shared: MemoryStore, name: str, clock: Any, settings: LimitSettings = SETTINGS
    ) -> None:
        self.store = CountingStore(shared)
        self.events: list[Any] = []
        self.woken: list[str] = []
        self.wanted: dict[str, str] = {}
        self.out: set[str] = set()  # calls that have left and not come back
        self.left: list[str] = []  # every object whose call left, in order
        self.clock = clock
        self.limiter = Limiter(
            self.store, name, clock, lambda o: self.woken.append(o), lambda o, c: self.wanted.get(o) == c,
            lambda e: self.events.append(e), settings, StoreThread(threaded=False),
        )  # fmt: skip

    def due(self, n: int, limits: CallLimits, due: dt.datetime | None = None) -> Admission:
        """Object o{n}'s call is due: may it leave?"""
        oid, call = f"o{n}", f"o{n}/1"
        self.wanted[oid] = call
        ctx = lambda: templates.context({}, 1, None, oid, {"team": "billing"})  # noqa: E731
        answer = self.limiter.admit(
            oid, "alice", call, due or self.clock.now(), limits, ctx, self.clock.now()
        )
        if answer.go:
            self.leave(oid)
        return answer

    def leave(self, oid: str) -> None:
        del self.wanted[oid]
        self.out.add(f"{oid}/1")
        self.left.append(oid)

    def step(self, limits: dict[str, CallLimits] | None = None) -> None:
        """One pass: the limiter's tick, its jobs, their answers, and the woken calls leave."""
        for _ in range(4):
            self.limiter.tick(self.clock.now())
            self.limiter.io.step()
            events, self.events = self.events, []
            for event in events:
                handler = {PlacesTaken: self.limiter.taken, PlacesFailed: self.limiter.failed, PlacesRenewed: self.limiter.renewed}  # fmt: skip
                handler[type(event)](event, self.clock.now())
            woken, self.woken = self.woken, []
            for oid in woken:
                assert self.limiter.admit(oid, "alice", f"{oid}/1", self.clock.now(), (limits or {}).get(oid, concurrency(1)), dict, self.clock.now()).go  # fmt: skip
                self.leave(oid)

    def back(self, n: int) -> None:
        call = f"o{n}/1"
        self.out.remove(call)
        self.limiter.returned(call, self.clock.now())


def test_calls_beyond_the_limit_wait_and_take_a_freed_place_at_once_in_due_order(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    t0 = clock.now()
    answers = [p.due(n, concurrency(3), t0 + dt.timedelta(milliseconds=10 * (8 - n))) for n in range(8)]
    assert not any(a.go for a in answers)  # the first ask goes to the store
    p.step()
    assert p.out == {"o7/1", "o6/1", "o5/1"}, "the three due first"
    assert p.limiter.waiting() == {("concurrency", "alice", "target-a"): 5}
    asked = p.store.asked.copy()
    clock.advance(0.01)
    p.back(6)
    p.step()
    assert p.out == {"o7/1", "o5/1", "o4/1"}, "the next due took its place"
    assert p.limiter.counts.handed == 1
    assert p.store.asked == asked, "a place handed on costs the store nothing"
    while p.out:
        p.back(int(min(p.out)[1:].split("/")[0]))
        p.step()
    assert p.left == [f"o{n}" for n in range(7, -1, -1)], "in due order"
    assert not p.wanted and p.limiter.waiting() == {("concurrency", "alice", "target-a"): 0}
    clock.advance(0.2)
    p.step()
    assert p.limiter.held_places() == 0, "places nobody wants are released"
    assert p.store.store.key_state("alice\x1ftarget-a").places[0].holder is None


def test_two_processes_sharing_a_store_never_have_more_out_than_the_limit(clock) -> None:
    shared = MemoryStore()
    procs = [Proc(shared, "p1", clock), Proc(shared, "p2", clock)]
    for i, p in enumerate(procs):
        for n in range(20):
            p.due(100 * i + n, concurrency(5))
    most, rounds = 0, 0
    while any(p.wanted or p.out for p in procs):
        rounds += 1
        assert rounds < 500, "every call leaves"
        for p in procs:
            p.step()
        most = max(most, sum(len(p.out) for p in procs))
        assert most <= 5
        for p in procs:  # the oldest call of each comes back
            if p.out:
                p.back(int(sorted(p.out)[0][1:].split("/")[0]))
        clock.advance(0.05)
    assert most == 5
    assert sum(p.limiter.counts.taken + p.limiter.counts.handed for p in procs) == 40


def test_a_call_due_a_second_earlier_in_another_process_gets_the_freed_place(clock) -> None:
    shared = MemoryStore()
    early, late = Proc(shared, "early", clock), Proc(shared, "late", clock)
    t0 = clock.now().replace(microsecond=0)
    late.due(1, concurrency(1), t0 + dt.timedelta(seconds=1))
    late.step()
    assert late.out == {"o1/1"}
    late.due(2, concurrency(1), t0 + dt.timedelta(seconds=2))  # waits here
    early.due(3, concurrency(1), t0)  # waits there, due earlier
    late.step()
    early.step()  # says so in the store
    clock.advance(0.2)
    late.step()  # and the next read of the key tells the other process
    late.back(1)
    late.step()
    assert late.out == set(), "it is not its turn: the place is released, not handed on"
    clock.advance(0.2)
    early.step()
    assert early.out == {"o3/1"}
    clock.advance(0.2)
    early.back(3)
    early.step()
    clock.advance(0.2)
    late.step()
    assert late.out == {"o2/1"}, "then the later one"


def test_a_stopped_process_s_places_are_free_again_within_one_lease(clock) -> None:
    shared = MemoryStore()
    dead, alive = Proc(shared, "dead", clock), Proc(shared, "alive", clock)
    for n in range(3):
        dead.due(n, concurrency(3))
    dead.step()
    assert len(dead.out) == 3  # and then it stops: no renewal, no release
    for n in range(10, 13):
        alive.due(n, concurrency(3))
    for _ in range(50):  # 5 s in polls: the dead process's places last 6 s
        clock.advance(0.1)
        alive.step()
        alive.limiter.renew(clock.now())
    assert alive.out == set()
    clock.advance(1.0)
    alive.step()
    assert alive.out == {"o10/1", "o11/1", "o12/1"}, "taken once the lease of their holder ended"


def test_a_live_process_keeps_its_places_though_its_renewal_is_late(clock) -> None:
    shared = MemoryStore()
    slow, other = Proc(shared, "slow", clock), Proc(shared, "other", clock)
    slow.due(1, concurrency(1))
    slow.step()
    assert slow.out == {"o1/1"}
    other.due(2, concurrency(1))
    for _ in range(10):  # the slow process's place ran out 6 s after it was taken, but it beats
        clock.advance(1)
        shared.heartbeat("slow", clock.now() + dt.timedelta(seconds=6), {"owner": "slow"})
        other.step()
    assert other.out == set(), "a live process's place is not taken"
    slow.back(1)
    slow.step()
    assert slow.limiter.held_places() == 1, "an idle place stays a poll (for a call due meanwhile)"
    clock.advance(0.2)
    slow.step()  # then it is released (the place was still its own)
    assert slow.limiter.held_places() == 0
    other.step()
    assert other.out == {"o2/1"}


def test_renewed_places_stay_and_a_lost_one_is_never_released_or_handed_on(clock) -> None:
    shared = MemoryStore()
    p = Proc(shared, "p1", clock)
    p.due(1, concurrency(1))
    p.step()
    assert p.out == {"o1/1"}
    clock.advance(4)
    p.limiter.renew(clock.now())
    p.step()
    clock.advance(4)  # 8 s after the take, 4 after the renewal: still held
    other = Proc(shared, "p2", clock)
    other.due(2, concurrency(1))
    other.step()
    assert other.out == set()
    clock.advance(3)  # p1 renewed no more (and has no heartbeat): p2 takes the place over
    other.step()
    assert other.out == {"o2/1"}
    p.due(3, concurrency(1))
    p.limiter.renew(clock.now())
    p.step()
    assert p.limiter.counts.lost == 1 and p.limiter.held_places() == 0
    p.back(1)  # its call came back: the place is not its own any more
    p.step()
    assert p.out == set() and p.limiter.counts.handed == 0
    assert shared.key_state("alice\x1ftarget-a").places[0].holder == "p2"


def test_rate_places_let_at_most_the_limit_leave_in_any_window(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    left: list[dt.datetime] = []
    limits = {f"o{n}": rate(2, per=1.0) for n in range(7)}
    for n in range(7):
        if p.due(n, limits[f"o{n}"]).go:
            left.append(clock.now())
    for _ in range(60):
        before = len(p.out)
        p.step(limits)
        left += [clock.now()] * (len(p.out) - before)
        clock.advance(0.1)
    assert len(left) == 7, "none dropped"
    for i in range(len(left) - 2):
        assert left[i + 2] - left[i] >= dt.timedelta(seconds=1), "never three in one second"
    assert left[2] - left[0] <= dt.timedelta(seconds=1.3), "the next ask is when a place frees"


def test_a_rate_place_not_used_in_time_is_given_up_and_asked_for_again(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    p.due(1, rate(1))
    p.limiter.tick(clock.now())
    p.limiter.io.step()
    (event,) = p.events
    p.events.clear()
    p.limiter.taken(event, clock.now())
    assert p.woken == ["o1"]
    p.woken.clear()
    clock.advance(6.1)  # the call could not leave within a lease of the take (everything was paused)
    assert not p.limiter.admit("o1", "alice", "o1/1", clock.now(), rate(1), dict, clock.now()).go
    assert p.limiter.counts.voided == 1
    for _ in range(12):
        clock.advance(0.1)
        p.step({"o1": rate(1)})
    assert p.out == {"o1/1"}


def test_a_key_from_the_object_s_labels_and_one_that_cannot_be_made(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    answer = p.due(1, concurrency(1, key="team-${{ object.labels.team }}"))
    assert not answer.go and answer.refused is None
    assert p.limiter.waiting_for("o1") == {"kind": "concurrency", "key": "team-billing", "limit": 1, "since": clock.now()}  # fmt: skip
    refused = p.due(2, concurrency(1, key="${{ object.labels.missing }}"))
    assert refused.refused is not None and "spec.concurrency.key" in refused.refused
    p.step()
    assert p.out == {"o1/1"} and p.limiter.waiting_for("o1") is None


def test_a_waiting_call_nobody_wants_any_more_gives_its_turn_to_the_next(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    for n in range(3):
        p.due(n, concurrency(1), clock.now() + dt.timedelta(milliseconds=n))
    p.step()
    assert p.out == {"o0/1"}
    del p.wanted["o1"]  # cancelled while it waited
    p.limiter.forget("o1", clock.now())
    p.back(0)
    p.step()
    assert p.out == {"o2/1"}
    assert p.limiter.waiting_for("o1") is None


def test_calls_that_wait_are_counted_and_say_how_long_they_waited(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    first = p.due(1, concurrency(1))
    p.step()
    p.due(2, concurrency(1))
    clock.advance(1.5)
    answers: list[Admission] = []
    p.limiter.wake = lambda oid: answers.append(
        p.limiter.admit(oid, "alice", f"{oid}/1", clock.now(), concurrency(1), dict, clock.now())
    )
    p.back(1)
    assert first.refused is None
    (go,) = answers
    assert go.go and go.waited == 1.5 and go.free_since == clock.now()
    assert p.limiter.counts.waits == {"concurrency": 1, "rate": 0}, "the first had a place at once"


def test_stop_releases_the_places_no_call_uses_and_withdraws_the_word(clock) -> None:
    shared = MemoryStore()
    p = Proc(shared, "p1", clock)
    for n in range(4):
        p.due(n, concurrency(2))
    p.step()
    assert p.out == {"o0/1", "o1/1"} and shared.key_state("alice\x1ftarget-a").waiters != []
    for n in (1, 2, 3):  # its place goes to o2, then o3, then it is idle
        p.back(n)
        p.step()
    p.limiter.stop(clock.now())
    state = shared.key_state("alice\x1ftarget-a")
    assert sorted(str(pl.holder) for pl in state.places) == ["None", "p1"], "o0's call is still out"
    assert state.waiters == []


def test_the_metrics_show_calls_waiting_per_key_and_what_became_of_places(clock) -> None:
    from lambdaop.core.metrics import Metrics

    p = Proc(MemoryStore(), "p1", clock)
    metrics = Metrics(clock)
    metrics.watch_limits(p.limiter)
    for n in range(3):
        p.due(n, concurrency(1))
    p.step()
    p.back(int(min(p.out)[1:].split("/")[0]))
    p.step()
    text = metrics.render().decode()
    assert 'lambdaop_limit_waiting{key="target-a",kind="concurrency",owner="alice"} 1.0' in text
    assert "lambdaop_limit_places_held 1.0" in text
    assert 'lambdaop_limit_waits_total{kind="concurrency"} 2.0' in text, "the first had a place at once"
    assert 'lambdaop_limit_places_total{event="handed"} 1.0' in text
    assert 'lambdaop_limit_places_total{event="taken"} 1.0' in text


def test_a_call_due_soon_after_another_came_back_takes_its_idle_place_without_the_store(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock)
    p.due(1, concurrency(2))
    p.step()
    p.back(1)
    p.step()
    asked = p.store.asked.copy()
    clock.advance(0.05)  # within a poll: the place is still held, idle
    assert p.due(2, concurrency(2)).go
    assert p.store.asked == asked
    p.back(2)
    clock.advance(0.2)
    p.step()
    assert p.limiter.held_places() == 0 and p.limiter.counts.released == 1


def test_a_rate_place_whose_call_will_not_leave_is_free_again_at_once(clock) -> None:
    shared = MemoryStore()
    p, other = Proc(shared, "p1", clock), Proc(shared, "p2", clock)
    p.due(1, rate(1, per=60))
    p.limiter.tick(clock.now())
    p.limiter.io.step()
    (event,) = p.events
    p.events.clear()
    p.limiter.taken(event, clock.now())  # it may leave now: the place is held for it
    del p.wanted["o1"]  # cancelled before it left
    p.woken.clear()
    p.limiter.forget("o1", clock.now())
    p.step()
    other.due(2, rate(1, per=60))
    other.step({"o2": rate(1, per=60)})
    assert other.out == {"o2/1"}, "the window starts only when a call leaves"


def test_a_burst_takes_its_places_in_growing_batches_one_after_another(clock) -> None:
    p = Proc(MemoryStore(), "p1", clock, LimitSettings(lease=dt.timedelta(seconds=6), batch=4))
    for n in range(10):
        p.due(n, concurrency(100))
    p.step()  # (a step runs the limiter's pass a few times: each asks again at once)
    assert len(p.out) == 10 and p.limiter.counts.taken == 10
    assert p.store.asked["take_places"] == 2, "4, then twice as many (the other 6)"
