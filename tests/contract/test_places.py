"""The store contract's places of limit keys (`PlaceStore`, rule 8), one suite for every implementation.

Each test runs on `MemoryStore` and on `MongoStore` over the embedded server. Time is fixed
(T0 and seconds after it): a place is free when its `until` is at or before the time asked about.
"""

from __future__ import annotations

import datetime as dt
import threading

from lambdaop.store.contract import KeyState, LimitType, Place, Store, Waiter

T0 = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
C, R = LimitType.CONCURRENCY, LimitType.RATE
KEY = "alice\x1ftarget-a"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_key_nobody_used_has_no_places_and_no_waiters(any_store: Store) -> None:
    assert any_store.key_state(KEY) == KeyState([], [])


def test_a_free_place_is_taken_once_and_a_taken_one_is_refused(any_store: Store) -> None:
    assert any_store.take_places(KEY, C, "p1", [(0, at(30)), (1, at(30))], T0) == [0, 1]
    assert any_store.take_places(KEY, C, "p2", [(1, at(30)), (2, at(30)), (0, at(30))], at(1)) == [2]
    assert any_store.take_places(KEY, C, "p1", [(0, at(60))], at(1)) == []  # even by its own holder
    assert any_store.key_state(KEY).places == [
        Place(C, 0, "p1", at(30)), Place(C, 1, "p1", at(30)), Place(C, 2, "p2", at(30)),
    ]  # fmt: skip
    assert any_store.take_places(KEY, C, "p1", [], T0) == []


def test_a_place_is_free_again_from_its_until(any_store: Store) -> None:
    """A holder that stops renewing loses its place then (a rate place's until is the end of its window)."""
    any_store.take_places(KEY, R, "p1", [(0, at(10))], T0)
    assert any_store.take_places(KEY, R, "p2", [(0, at(20))], at(9.999)) == []
    assert any_store.take_places(KEY, R, "p2", [(0, at(20))], at(10)) == [0]
    assert any_store.key_state(KEY).places == [Place(R, 0, "p2", at(20))]


def test_kinds_and_keys_have_places_of_their_own(any_store: Store) -> None:
    other = "alice\x1ftarget-ab"  # a key that another key begins with is still another key
    assert any_store.take_places(KEY, C, "p1", [(0, at(30))], T0) == [0]
    assert any_store.take_places(KEY, R, "p1", [(0, at(30))], T0) == [0]
    assert any_store.take_places(other, C, "p1", [(0, at(30))], T0) == [0]
    assert any_store.take_places("bob\x1ftarget-a", C, "p1", [(0, at(30))], T0) == [0]
    assert any_store.key_state(KEY).places == [Place(C, 0, "p1", at(30)), Place(R, 0, "p1", at(30))]
    assert any_store.key_state(other).places == [Place(C, 0, "p1", at(30))]


def test_release_frees_only_the_holders_places_from_then_on(any_store: Store) -> None:
    any_store.take_places(KEY, C, "p1", [(0, at(30)), (1, at(30))], T0)
    any_store.take_places(KEY, C, "p2", [(2, at(30))], T0)
    assert any_store.release_places(KEY, "p1", [0, 2, 7], at(5)) == 1
    assert any_store.key_state(KEY).places == [
        Place(C, 0, None, at(5)), Place(C, 1, "p1", at(30)), Place(C, 2, "p2", at(30)),
    ]  # fmt: skip
    assert any_store.release_places(KEY, "p1", [0], at(6)) == 0  # released already
    assert any_store.release_places(KEY, "p1", [], at(6)) == 0
    assert any_store.take_places(KEY, C, "p2", [(0, at(40))], at(5)) == [0]


def test_renew_extends_the_holders_places_and_answers_those_it_lost(any_store: Store) -> None:
    any_store.take_places(KEY, C, "p1", [(0, at(10)), (1, at(10)), (2, at(10))], T0)
    any_store.release_places(KEY, "p1", [1], at(2))
    assert any_store.take_places(KEY, C, "p2", [(2, at(40))], at(11)) == [2]  # p1 stopped renewing it
    lost = any_store.renew_places("p1", [(KEY, 0), (KEY, 1), (KEY, 2), ("alice\x1fnone", 0)], at(40))
    assert lost == {(KEY, 1), (KEY, 2), ("alice\x1fnone", 0)}
    assert any_store.key_state(KEY).places[0] == Place(C, 0, "p1", at(40))
    assert any_store.renew_places("p1", [], at(50)) == set()


def test_a_place_whose_time_passed_is_renewed_while_nobody_took_it(any_store: Store) -> None:
    any_store.take_places(KEY, C, "p1", [(0, at(10))], T0)
    assert any_store.renew_places("p1", [(KEY, 0)], at(50)) == set()
    assert any_store.take_places(KEY, C, "p2", [(0, at(60))], at(20)) == []


def test_waiters_are_put_replaced_and_removed_per_holder_and_kind(any_store: Store) -> None:
    any_store.put_waiting(KEY, C, "p1", at(1), 3, at(5))
    any_store.put_waiting(KEY, C, "p2", at(2), 1, at(6))
    any_store.put_waiting(KEY, R, "p1", at(3), 7, at(6))
    any_store.put_waiting(KEY, C, "p1", at(4), 2, at(8))  # replaces p1's
    state = any_store.key_state(KEY)
    assert sorted(state.waiters) == [
        Waiter(C, "p1", at(4), 2, at(8)), Waiter(C, "p2", at(2), 1, at(6)), Waiter(R, "p1", at(3), 7, at(6)),
    ]  # fmt: skip
    any_store.put_waiting(KEY, C, "p1", None, 0, at(9))
    any_store.put_waiting(KEY, R, "p9", None, 0, at(9))  # nothing to remove
    assert sorted(any_store.key_state(KEY).waiters) == [Waiter(C, "p2", at(2), 1, at(6)), Waiter(R, "p1", at(3), 7, at(6))]  # fmt: skip
    assert any_store.key_state(KEY).places == []


def test_takers_in_several_threads_never_share_a_place(any_store: Store) -> None:
    won: dict[str, list[int]] = {}

    def take(holder: str) -> None:
        asks = [(i, at(30)) for i in range(20)]
        won[holder] = any_store.take_places(
            KEY, C, holder, asks[::-1] if holder in ("p2", "p4") else asks, T0
        )

    threads = [threading.Thread(target=take, args=(f"p{n}",)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(i for w in won.values() for i in w) == list(range(20))  # each place once, all taken
    holders = {p.number: p.holder for p in any_store.key_state(KEY).places}
    assert holders == {i: h for h, w in won.items() for i in w}


def test_a_rate_place_is_settled_only_earlier_and_only_by_its_holder(any_store: Store) -> None:
    """A rate place is taken until far enough for its call to leave; once it has, its window is set."""
    any_store.take_places(KEY, R, "p1", [(0, at(90)), (1, at(90))], T0)
    assert any_store.settle_places(KEY, "p1", [(0, at(11)), (1, at(95)), (7, at(1))]) == 1
    assert any_store.settle_places(KEY, "p2", [(1, at(12))]) == 0
    assert any_store.settle_places(KEY, "p1", []) == 0
    assert any_store.key_state(KEY).places == [Place(R, 0, "p1", at(11)), Place(R, 1, "p1", at(90))]
    assert any_store.take_places(KEY, R, "p2", [(0, at(20))], at(11)) == [0]
