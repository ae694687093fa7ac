"""The scaling rules (docs/architecture.md, "Scaling") as tables of cases, and a steady load that does not oscillate.

`packed` is the default; the `utilization` cases below keep the rule of earlier releases unchanged.
"""

from __future__ import annotations

import math

import pytest

from podslots.scaling import Direction, Load, decide
from podslots.settings import PoolSettings, ScalingRule


def settings(**change: object) -> PoolSettings:
    """The `utilization` rule's settings (the rule these first cases were written for)."""
    return packed(scaling="utilization", **change)


def packed(**change: object) -> PoolSettings:
    base = {"pod_template": {"image": "x"}, "min_pods": 0, "max_pods": 10, "scale_down_delay_s": 300}
    return PoolSettings.model_validate({**base, **change})


@pytest.mark.parametrize(
    ("pods", "used", "waiting", "direction", "target", "why"),
    [
        (0, 0, 1, Direction.UP, 1, "cold start: an empty pool and one waiting task"),
        (0, 0, 7, Direction.UP, 3, "ceil(7 / (3 x 0.8)) = 3"),
        (2, 5, 0, Direction.UP, 3, "5/6 = 83% > 80%: ceil(5 / 2.4) = 3"),
        (2, 4, 0, Direction.NONE, 2, "4/6 = 67%: steady"),
        (3, 6, 2, Direction.UP, 4, "ceil(8 / 2.4) = 4"),
        (10, 30, 5, Direction.NONE, 10, "at max_pods: no more"),
        (4, 1, 0, Direction.DOWN, 1, "1/12 = 8% < 20% for the delay: ceil(1 / (3 x 0.5)) = 1"),
        (4, 0, 0, Direction.DOWN, 0, "nothing used: down to min_pods (0)"),
        (3, 2, 0, Direction.NONE, 3, "2/9 = 22%: not low"),
    ],
)
def test_the_utilization_rule(pods: int, used: int, waiting: int, direction: Direction, target: int, why: str):
    load = Load(pods=pods, capacity=pods * 3, used=used, waiting=waiting)
    decision = decide(load, settings(), low_since=0, now=10_000)
    assert (decision.direction, decision.target) == (direction, target), why


def test_down_waits_for_the_delay_and_restarts_it_when_load_returns():
    s = settings(scale_down_delay_s=300)
    low = Load(pods=4, capacity=12, used=1, waiting=0)
    first = decide(low, s, low_since=None, now=1000)
    assert (first.direction, first.low_since) == (Direction.NONE, 1000)
    assert decide(low, s, low_since=1000, now=1299).direction is Direction.NONE
    assert decide(low, s, low_since=1000, now=1300).direction is Direction.DOWN
    busy = Load(pods=4, capacity=12, used=6, waiting=0)
    assert decide(busy, s, low_since=1000, now=1200).low_since is None


def test_min_and_max_pods_bound_every_step():
    s = settings(min_pods=2, max_pods=3)
    assert decide(Load(0, 0, 0, 0), s, None, 0).target == 2
    assert decide(Load(3, 9, 9, 9), s, None, 0).target == 3
    assert decide(Load(5, 15, 15, 0), s, None, 0).target == 3  # max_pods dropped below the pool
    assert decide(Load(3, 9, 0, 0), s, low_since=0, now=10_000).target == 2


def test_a_steady_load_does_not_oscillate_over_60_minutes():
    # Given a steady 7 running tasks, and a pool that starts empty
    s, pods, used = settings(scale_down_delay_s=120), 0, 7
    history, low = [], None
    for minute in range(60):
        load = Load(pods=pods, capacity=pods * 3, used=min(used, pods * 3), waiting=max(0, used - pods * 3))
        decision = decide(load, s, low_since=low, now=minute * 60)
        low = decision.low_since
        pods = decision.target
        history.append(pods)
    # Then it scales up once, to what 7 tasks need at 80%, and stays there
    assert history[0] == math.ceil(7 / (3 * 0.8)) == 3
    assert set(history) == {3}


def test_a_pool_that_names_no_rule_scales_packed_with_one_pod_of_headroom_and_no_warm_slots():
    s = PoolSettings.model_validate({"pod_template": {"image": "x"}})
    assert (s.scaling, s.headroom_pods, s.warm_slots) == (ScalingRule.PACKED, 1, 0)


def test_a_stored_document_from_before_the_packed_rule_reads_as_packed():
    # Given a settings document stored before `scaling` existed (none of the new fields)
    stored = {"pod_template": {"image": "x"}, "scale_up_utilization": 0.8, "scale_down_utilization": 0.2}
    # Then it reads as the new default: the pool scales packed from the first run after the upgrade
    assert PoolSettings.from_stored(stored).scaling is ScalingRule.PACKED


@pytest.mark.parametrize(
    ("pods", "used", "waiting", "change", "direction", "target", "why"),
    [
        (0, 0, 0, {}, Direction.UP, 1, "an empty pool keeps its pod of headroom"),
        (0, 0, 0, {"headroom_pods": 0}, Direction.NONE, 0, "no headroom: an idle pool has no pod"),
        (0, 0, 1, {"headroom_pods": 0}, Direction.UP, 1, "cold start: one waiting task, one pod"),
        (0, 0, 7, {}, Direction.UP, 4, "ceil(7 / 3) + 1 = 4, at once"),
        (2, 6, 0, {}, Direction.UP, 3, "two full pods: a third as headroom"),
        (3, 6, 0, {}, Direction.NONE, 3, "ceil(6 / 3) + 1 = 3: steady"),
        (3, 4, 2, {}, Direction.NONE, 3, "4 used + 2 waiting fill 2 pods, + 1"),
        (5, 4, 0, {}, Direction.DOWN, 3, "ceil(4 / 3) + 1 = 3, after the delay"),
        (5, 0, 0, {}, Direction.DOWN, 1, "nothing used: down to the headroom"),
        (5, 0, 0, {"headroom_pods": 0, "min_pods": 2}, Direction.DOWN, 2, "never below min_pods"),
        (10, 40, 5, {}, Direction.NONE, 10, "at max_pods: no more"),
        (12, 3, 0, {}, Direction.DOWN, 10, "above max_pods: down to it"),
        (3, 6, 0, {"headroom_pods": 2}, Direction.UP, 4, "two pods of headroom"),
        (1, 0, 0, {"headroom_pods": 0, "warm_slots": 2}, Direction.NONE, 1, "one idle pod holds 2 warm slots"),
        (1, 2, 0, {"headroom_pods": 0, "warm_slots": 2}, Direction.UP, 2, "2 used + 2 warm need 2 pods"),
        (2, 2, 0, {"headroom_pods": 1, "warm_slots": 2}, Direction.NONE, 2, "headroom already gives 4 idle"),
        (2, 2, 0, {"headroom_pods": 1, "warm_slots": 6}, Direction.UP, 3, "8 slots: the warm slots ask more"),
        (4, 2, 0, {"headroom_pods": 0, "warm_slots": 4}, Direction.DOWN, 2, "2 used + 4 warm: 2 pods"),
        (0, 0, 0, {"headroom_pods": 0, "warm_slots": 1}, Direction.UP, 1, "a warm slot on an empty pool"),
    ],
)
def test_the_packed_rule(
    pods: int, used: int, waiting: int, change: dict[str, int], direction: Direction, target: int, why: str
):
    load = Load(pods=pods, capacity=pods * 3, used=used, waiting=waiting)
    decision = decide(load, packed(**change), low_since=0, now=10_000)
    assert (decision.direction, decision.target) == (direction, target), why


def test_the_packed_rule_goes_up_at_once_and_down_only_after_the_delay():
    s = packed(scale_down_delay_s=300)
    assert decide(Load(1, 3, 3, 0), s, low_since=None, now=1000).direction is Direction.UP
    quiet = Load(pods=4, capacity=12, used=1, waiting=0)  # wants 2
    first = decide(quiet, s, low_since=None, now=1000)
    assert (first.direction, first.low_since) == (Direction.NONE, 1000)
    assert decide(quiet, s, low_since=1000, now=1299).direction is Direction.NONE
    assert decide(quiet, s, low_since=1000, now=1300).target == 2
    busier = Load(pods=4, capacity=12, used=9, waiting=0)  # wants 4: no longer low
    assert decide(busier, s, low_since=1000, now=1200).low_since is None


def test_the_packed_rule_holds_a_steady_load_without_oscillating():
    s, pods, used = packed(scale_down_delay_s=120), 0, 7
    history, low = [], None
    for minute in range(60):
        load = Load(pods=pods, capacity=pods * 3, used=min(used, pods * 3), waiting=max(0, used - pods * 3))
        decision = decide(load, s, low_since=low, now=minute * 60)
        low, pods = decision.low_since, decision.target
        history.append(pods)
    assert set(history) == {math.ceil(7 / 3) + 1}


def test_the_utilization_rule_ignores_headroom_and_warm_slots():
    load = Load(pods=3, capacity=9, used=4, waiting=0)
    plain = decide(load, settings(), low_since=0, now=10_000)
    assert decide(load, settings(headroom_pods=5, warm_slots=20), low_since=0, now=10_000) == plain
