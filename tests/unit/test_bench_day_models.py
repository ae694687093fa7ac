"""The bench's plain models (bench/day): the HPA's replica rule and the lower bound, as tables."""

from __future__ import annotations

import pytest

from bench.day.hpa import recommend, up_limit
from bench.day.ledger import Ledger


@pytest.mark.parametrize(
    ("busy", "replicas", "expected", "why"),
    [
        (8, 4, 4, "8 busy of 4 pods at 2.1 a pod: ratio 0.95, within the 10 % tolerance"),
        (6, 4, 3, "ratio 0.71: ceil(6 / 2.1)"),
        (9, 3, 5, "ratio 1.43: ceil(9 / 2.1)"),
        (2, 4, 1, "ratio 0.24: ceil(2 / 2.1)"),
        (0, 3, 1, "nothing busy: minReplicas"),
        (300, 3, 60, "never above maxReplicas"),
        (3, 0, 2, "no replica yet: the plain recommendation"),
    ],
)
def test_the_hpa_recommends_busy_slots_over_its_per_pod_target_within_its_tolerance(busy, replicas, expected, why):
    assert recommend(busy, replicas, per_pod=2.1, min_replicas=1, max_replicas=60) == expected, why


@pytest.mark.parametrize(("before", "limit"), [(0, 4), (1, 5), (4, 8), (10, 20)])
def test_the_hpa_scales_up_by_the_higher_of_four_pods_and_double_a_minute(before, limit):
    assert up_limit(before) == limit


def test_the_lower_bound_pays_for_min_pods_while_the_pool_is_idle():
    # Given a pool whose floor is one pod, idle for an hour, then 4 busy slots (2 pods) for an hour
    ledger = Ledger(["p"], slots_per_pod=3, floor_pods=1)
    ledger.advance(3600)
    ledger.add("p", running=3, reserved=1)
    ledger.advance(7200)
    # Then the bound is 1 pod-hour for the idle hour and 2 for the busy one
    assert ledger.bound_seconds == 3 * 3600
