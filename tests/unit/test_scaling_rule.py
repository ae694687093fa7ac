"""The scaling rule (docs/architecture.md, "Scaling") as a table of cases, and a steady load that does not oscillate."""

from __future__ import annotations

import math

import pytest

from podslots.scaling import Direction, Load, decide
from podslots.settings import PoolSettings


def settings(**change: object) -> PoolSettings:
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
def test_the_scaling_rule(pods: int, used: int, waiting: int, direction: Direction, target: int, why: str):
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
