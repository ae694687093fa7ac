"""The bench's plain models (bench/day): the HPA's replica rule, the lower bound, and the merge of
workers' ledgers, as tables."""

from __future__ import annotations

import pytest

from bench.day.hpa import recommend, up_limit
from bench.day.ledger import Ledger
from bench.day.traffic import make_trace
from bench.day.workers import merge, share


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


def test_workers_share_the_pools_round_robin_with_their_tasks():
    # Given a trace of five pools
    trace = make_trace(seed=1, hours=6, pools=5, start_hour=8)
    # When it is shared between two workers
    first, second = share(trace, 0, 2), share(trace, 1, 2)
    # Then each has every other pool and exactly their tasks, and together they have all of it
    assert (first.pools, second.pools) == (["tf-00", "tf-02", "tf-04"], ["tf-01", "tf-03"])
    assert all(t.pool in first.pools for t in first.tasks)
    assert sorted(t.task_id for t in first.tasks + second.tasks) == sorted(t.task_id for t in trace.tasks)
    assert first.end_of_traffic == second.end_of_traffic == trace.end_of_traffic  # the same horizon


def test_merged_ledgers_add_up_to_one_ledger_of_every_pool():
    # Given the same two pools' histories, played in one ledger and in one ledger per pool
    whole = Ledger(["a", "b"], slots_per_pod=3, floor_pods=1)
    parts = {"a": Ledger(["a"], slots_per_pod=3, floor_pods=1), "b": Ledger(["b"], slots_per_pod=3, floor_pods=1)}
    steps = [(0, "a", 2, 4, 1), (90, "b", 1, 0, 2), (200, "a", 1, 1, 0), (400, "b", 3, 5, 3)]
    for t, pool, pods, running, reserved in steps:
        for ledger in (whole, parts[pool]):
            ledger.advance(t)
            ledger.set(pool, pods, running, reserved, pinned=min(pods, reserved))
    for ledger in (whole, *parts.values()):
        ledger.advance(600)
        ledger.fate(f"task-of-{ledger.pools[0]}").done = True
    # When the per-pool ledgers are merged
    merged = merge(list(parts.values()), ["a", "b"])
    # Then pod-, bound- and pinned-seconds, the samples and the fates are the whole run's
    assert (merged.pod_seconds, merged.bound_seconds, merged.pinned_seconds) == (
        whole.pod_seconds,
        whole.bound_seconds,
        whole.pinned_seconds,
    )
    assert merged.samples == whole.samples
    assert set(merged.fates) == {"task-of-a", "task-of-b"}
