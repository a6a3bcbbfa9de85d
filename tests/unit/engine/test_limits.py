"""Limits per key (engine.limits): which calls have limits, their keys, the line and the places chosen.

Pure functions of their inputs; time is the test clock's (`clock.advance`), never the wall clock.
"""

from __future__ import annotations

import datetime as dt

import pytest

from lambdaop.core.places import KeyState, LimitType, Place, Waiter
from lambdaop.engine import templates
from lambdaop.engine.limits import (
    EPOCH,
    Line,
    Ticket,
    call_id,
    choose,
    key_of,
    lapsed_holders,
    limits_of,
    my_turn,
    next_free,
    second_of,
    shown,
)
from lambdaop.spec import TaskSetSpec, TaskSpec
from lambdaop.spec.flowcontrol import Concurrency, Rate

C, R = LimitType.CONCURRENCY, LimitType.RATE
GRACE = dt.timedelta(milliseconds=500)


def ticket(n: int, due: dt.datetime, limit: int = 5, since: dt.datetime | None = None) -> Ticket:
    return Ticket(call_id(f"o{n}", 1, "task", 1), f"o{n}", due, since or due, limit)


def test_a_task_s_call_has_its_limits_and_nothing_else_of_it_has() -> None:
    plan = TaskSpec.model_validate({"invoke": "https://example.com/a"})
    assert limits_of(plan, "task") is None  # no limit: nothing more is done for the call
    limited = plan.model_copy(update={"concurrency": Concurrency(key="target-a", limit=5)})
    found = limits_of(limited, "task")
    assert found is not None and found.concurrency is not None and found.rate is None
    assert (found.concurrency.limit, found.where) == (5, "spec")
    assert limits_of(limited, "notify:failed:0") is None


def test_a_named_step_s_call_has_its_own_limits() -> None:
    plan = TaskSetSpec.model_validate(
        {"steps": [{"name": "build", "invoke": "https://example.com/b"}, {"name": "ship", "invoke": "https://example.com/s"}]}
    )  # fmt: skip
    steps = list(plan.steps or ())
    steps[1] = steps[1].model_copy(update={"rate": Rate(key="ship", limit=2, per=dt.timedelta(seconds=1))})
    plan = plan.model_copy(update={"steps": steps})
    assert limits_of(plan, "step:build") is None
    found = limits_of(plan, "step:ship")
    assert found is not None and found.rate is not None and found.where == "spec.steps[1]"
    assert limits_of(plan, "check:ship") is None and limits_of(plan, "fallback") is None
    seed = TaskSetSpec.model_validate({"tasks": ["https://example.com/a"]})
    assert limits_of(seed, "task:0") is None


def test_a_key_is_scoped_to_its_owner_and_a_literal_stays_as_written() -> None:
    ctx = templates.context({}, 3, None, "nightly", {"team": "billing"})
    assert key_of("alice", "target-a", ctx, "spec.concurrency.key") == "alice\x1ftarget-a"
    assert key_of("bob", "target-a", ctx, "spec.concurrency.key") != key_of("alice", "target-a", ctx, "w")
    assert key_of("alice", "team-${{ object.labels.team }}", ctx, "w") == "alice\x1fteam-billing"
    assert key_of("alice", "${{ run.number }}", ctx, "w") == "alice\x1f3"
    assert shown(key_of("alice", "${{ object.name }}", ctx, "w")) == "nightly"


def test_a_key_that_comes_out_empty_or_wrong_is_refused_naming_its_field() -> None:
    ctx = templates.context({}, 1, None, "n", {})
    with pytest.raises(templates.TemplateError, match=r"spec.concurrency.key: the key .* came out empty"):
        key_of("alice", "${{ object.labels.team }}", ctx, "spec.concurrency.key")
    with pytest.raises(templates.TemplateError, match="control characters"):
        key_of("alice", "${{ object.name }}", templates.context({}, 1, None, "a\nb", {}), "spec.rate.key")
    with pytest.raises(templates.TemplateError, match="longer than 256"):
        key_of("alice", "${{ object.name }}", templates.context({}, 1, None, "x" * 257, {}), "spec.rate.key")


def test_the_line_is_in_due_order_then_in_the_order_calls_came(clock) -> None:
    t0 = clock.now()
    line = Line()
    late, early, same = ticket(1, t0 + dt.timedelta(seconds=2)), ticket(2, t0), ticket(3, t0)
    assert line.join(late) and line.join(early) and line.join(same)
    assert not line.join(early)  # waits already, in its place
    assert len(line) == 3 and early.call in line
    assert line.head(2) == [early, same] and list(line) == [early, same, late]
    assert line.first() == early
    assert line.leave(same.call) == same and line.leave(same.call) is None
    assert line.pop() == early and line.pop() == late and line.pop() is None
    assert len(line) == 0 and line.first() is None


def test_a_call_that_joins_again_after_leaving_takes_a_new_place(clock) -> None:
    line = Line()
    a, b = ticket(1, clock.now()), ticket(2, clock.now())
    line.join(a)
    line.join(b)
    line.leave(a.call)
    line.join(a)  # (its stale entry is skipped)
    assert [line.pop(), line.pop(), line.pop()] == [b, a, None]


def test_free_places_go_to_the_first_calls_in_line_below_their_limits(clock) -> None:
    now = clock.now()
    state = KeyState([Place(C, 0, "p2", now + dt.timedelta(seconds=9)), Place(C, 2, None, now)], [])
    first, second, third = ticket(1, now), ticket(2, now, limit=3), ticket(3, now, limit=3)
    assert choose(state, C, [first, second, third], "p1", now, GRACE) == [(first, 1), (second, 2)]
    narrow = ticket(4, now, limit=1)  # only place 0 is below its limit, and it is taken
    assert choose(state, C, [narrow, first], "p1", now, GRACE) == []  # nobody passes it
    assert choose(state, R, [first], "p1", now, GRACE) == [(first, 0)]  # the other kind's places


def test_a_place_is_taken_from_its_until_on(clock) -> None:
    now = clock.now()
    state = KeyState([Place(R, 0, "p2", now + dt.timedelta(seconds=1))], [])
    one = ticket(1, now, limit=1)
    assert choose(state, R, [one], "p1", now, GRACE) == []
    assert next_free(state, R, 1, now) == now + dt.timedelta(seconds=1)
    later = clock.advance(1)
    assert choose(state, R, [one], "p1", later, GRACE) == [(one, 0)]
    assert next_free(state, R, 1, later) is None
    assert next_free(state, R, 2, now) is None  # place 1 was never taken


def test_another_process_with_a_call_due_a_second_earlier_goes_first(clock) -> None:
    now = clock.now().replace(microsecond=0)
    mine = ticket(1, now + dt.timedelta(seconds=1), limit=1)
    earlier = Waiter(C, "p2", now + dt.timedelta(milliseconds=900), 4, now + dt.timedelta(seconds=2))
    state = KeyState([Place(C, 0, None, now)], [earlier])
    assert choose(state, C, [mine], "p1", now, GRACE) == []
    assert not my_turn(mine.due, [earlier], now)
    same_second = ticket(2, now + dt.timedelta(milliseconds=100), limit=1)
    assert my_turn(same_second.due, [earlier], now)  # equals: either may go
    assert choose(state, C, [same_second], "p1", now, GRACE) == [(same_second, 0)]
    # a place nobody took for a long while goes to anyone (the other process may have stopped)
    assert choose(state, C, [mine], "p1", now + GRACE, GRACE) == [(mine, 0)]
    assert choose(KeyState([], [earlier]), C, [mine], "p1", now, GRACE) == [(mine, 0)]  # never taken
    assert choose(state, C, [ticket(3, mine.due, limit=2)], "p1", now, GRACE)[0][1] == 1


def test_a_stale_waiter_and_this_process_s_own_entry_do_not_count(clock) -> None:
    now = clock.now().replace(microsecond=0)
    mine = ticket(1, now + dt.timedelta(seconds=5))
    stale = Waiter(C, "p2", now, 4, now)  # its process stopped saying so
    own = Waiter(C, "p1", now, 4, now + dt.timedelta(seconds=9))
    none = Waiter(C, "p3", now, 0, now + dt.timedelta(seconds=9))
    other_kind = Waiter(R, "p4", now, 1, now + dt.timedelta(seconds=9))
    state = KeyState([Place(C, 0, None, now)], [stale, own, none, other_kind])
    assert choose(state, C, [mine], "p1", now, GRACE) == [(mine, 0)]
    assert my_turn(mine.due, [stale], now)


def test_seconds_are_the_grain_of_the_order_across_processes() -> None:
    t = dt.datetime(2026, 11, 27, 12, 0, 3, 999000, tzinfo=dt.UTC)
    assert second_of(t) == dt.datetime(2026, 11, 27, 12, 0, 3, tzinfo=dt.UTC)
    assert t > EPOCH


def test_places_this_process_holds_or_a_live_process_holds_are_never_free(clock) -> None:
    now = clock.now()
    late = now - dt.timedelta(seconds=1)  # their time has passed: their renewals are late
    state = KeyState([Place(C, 0, "p1", late), Place(C, 1, "p2", late), Place(C, 2, "p3", late)], [])
    one = ticket(1, now, limit=3)
    assert lapsed_holders(state, C, "p1", now) == {"p2", "p3"}
    assert choose(state, C, [one], "p1", now, GRACE, mine={0}, alive={"p2"}) == [(one, 2)]
    assert choose(state, C, [one], "p1", now, GRACE, mine={0}, alive={"p2", "p3"}) == []
    rate_state = KeyState([Place(R, 0, "p2", late)], [])
    assert lapsed_holders(rate_state, R, "p1", now) == set(), "a rate place frees with its window"
