"""Pre-warm (`prewarm: true`, docs/architecture.md "Pre-warm"): the pool's arrivals by hour of the week,
folded once an hour, and the idle slots they ask of the packed rule. Pure rules, as tables."""

from __future__ import annotations

import pytest

from podslots.prewarm import HOURS_A_WEEK, Arrivals, due, expected_rate, fold, hour_of_week, prewarm_slots
from podslots.scaling import Direction, Load, decide
from podslots.settings import PoolSettings

MONDAY = 1_799_625_600  # 2027-01-11 00:00 UTC, a Monday
H = 3600


def history(**by_hour: float) -> Arrivals:
    """A history that has seen the named hours of the week (`h7=20`: Monday 07:00, 20 tasks an hour)."""
    rates: list[float | None] = [None] * HOURS_A_WEEK
    for name, rate in by_hour.items():
        rates[int(name[1:])] = rate
    return Arrivals(hour=MONDAY // H, rates=tuple(rates))


@pytest.mark.parametrize(
    ("at", "expected", "why"),
    [
        (MONDAY, 0, "Monday 00:00 is hour 0 of the week"),
        (MONDAY + 7 * H + 59, 7, "Monday 07:00"),
        (MONDAY + 24 * H, 24, "Tuesday 00:00"),
        (MONDAY + 167 * H, 167, "Sunday 23:00"),
        (MONDAY + 168 * H, 0, "the next Monday"),
    ],
)
def test_the_hour_of_the_week_starts_on_monday_at_midnight_utc(at: int, expected: int, why: str):
    assert hour_of_week(at // H) == expected, why


def test_a_pool_with_no_history_starts_counting_and_learns_nothing_yet():
    # Given no history, When the first fold runs on pods that have placed 5 tasks
    first = fold(None, {"a": 5}, MONDAY + 30)
    # Then it only records where counting starts
    assert first.hour == MONDAY // H
    assert first.seen == {"a": 5}
    assert set(first.rates) == {None}


@pytest.mark.parametrize(
    ("old", "seen", "placed", "hours", "learned", "why"),
    [
        (None, {"a": 5}, {"a": 17}, 1, 12.0, "first sight of the hour: what it saw"),
        (20.0, {"a": 5}, {"a": 17}, 1, 16.0, "half-way from 20 to 12"),
        (None, {"a": 5, "gone": 4}, {"a": 9, "b": 3}, 1, 7.0, "a new pod counts from 0; a drained pod's are lost"),
        (None, {"a": 9}, {"a": 2}, 1, 2.0, "a counter below what was seen is a new pod of the name"),
        (None, {"a": 0}, {"a": 12}, 3, 4.0, "three hours without a fold: spread over the three"),
    ],
)
def test_a_fold_learns_the_placements_since_the_last_one(old, seen, placed, hours, learned, why):
    rates: list[float | None] = [None] * HOURS_A_WEEK
    rates[0] = old
    start = Arrivals(MONDAY // H, tuple(rates), seen)
    folded = fold(start, placed, MONDAY + hours * H + 5)
    assert folded.rates[0] == learned, why
    assert folded.hour == MONDAY // H + hours
    assert folded.seen == placed


def test_a_fold_is_due_once_an_hour():
    start = Arrivals(MONDAY // H)
    assert due(None, MONDAY)
    assert not due(start, MONDAY + H - 1)
    assert due(start, MONDAY + H)
    assert fold(start, {"a": 3}, MONDAY + H - 1) is start


@pytest.mark.parametrize(
    ("at", "rate", "slots", "why"),
    [
        (MONDAY + 5 * H, 1.0, 0, "05:00: 1 an hour, a 3 % chance of a task in 2 minutes: none"),
        (MONDAY + 6 * H, 2.0, 1, "06:00: 2 an hour, a 6 % chance: one slot"),
        (MONDAY + 6 * H + 44 * 60, 2.0, 1, "06:44: the next 15 minutes stay in the 06:00 hour"),
        (MONDAY + 6 * H + 46 * 60, 30.0, 3, "06:46: they reach 07:00's 30 an hour (1 expected in 2 minutes): 3"),
        (MONDAY + 8 * H, 0.0, 0, "08:00: an hour never seen expects nothing"),
    ],
)
def test_the_next_fifteen_minutes_ask_for_the_busiest_hour_they_touch(at, rate, slots, why):
    seen = history(h5=1.0, h6=2.0, h7=30.0)
    assert expected_rate(seen, at) == rate, why
    assert prewarm_slots(seen, at) == slots, why


def packed(**change: object) -> PoolSettings:
    base = {"pod_template": {"image": "x"}, "min_pods": 0, "max_pods": 10, "headroom_pods": 0}
    return PoolSettings.model_validate({**base, **change})


@pytest.mark.parametrize(
    ("pods", "used", "prewarm", "direction", "target", "why"),
    [
        (2, 6, 2, Direction.UP, 3, "two full pods and 2 pre-warm slots: a third pod before the ramp"),
        (2, 4, 2, Direction.NONE, 2, "2 idle slots already: nothing to start"),
        (3, 3, 0, Direction.NONE, 3, "the ramp is past: the pods fall away only after the delay"),
        (0, 0, 1, Direction.UP, 1, "a cold pool before its morning: a pod before the first task"),
    ],
)
def test_the_packed_rule_keeps_the_pre_warm_slots_idle(pods, used, prewarm, direction, target, why):
    load = Load(pods=pods, capacity=3 * pods, used=used, waiting=0, prewarm=prewarm)
    decision = decide(load, packed(prewarm=True), None, 0)
    assert (decision.direction, decision.target) == (direction, target), why


def test_pre_warm_is_off_by_default():
    assert packed().prewarm is False
