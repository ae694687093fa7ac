"""The bench's plain models (bench/day): the HPA's replica rule, the lower bound, and the merge of
workers' ledgers, and the verdict on issue 19's targets, as tables."""

from __future__ import annotations

import pytest

from bench.day.figures import Figures
from bench.day.hpa import recommend, up_limit
from bench.day.ledger import Ledger
from bench.day.report import placement_table, targets_table, verdict
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


def _row(policy: str, pod_hours: float, p95: float = 0.0, interrupted: int = 0, lost: int = 0) -> Figures:
    return Figures(
        policy=policy,
        tasks=100,
        completed=100 - interrupted,
        interrupted=interrupted,
        interrupted_running=0,
        interrupted_reserved=interrupted,
        apply_lost=lost,
        pod_hours=pod_hours,
        bound_hours=50.0,
        wait_p50=0.0,
        wait_p95=p95,
        wait_max=p95,
        expired=0,
        scale_up=1,
        scale_down=1,
        wall_s=1.0,
    )


@pytest.mark.parametrize(
    ("pod_hours", "p95", "interrupted", "said"),
    [
        (70.0, 30.0, 0, "met"),  # both limits are inclusive
        (64.0, 0.0, 0, "met; stretch met"),  # 1.28x its bound of 50
        (70.1, 0.0, 0, "pod-hours not met"),
        (70.0, 40.0, 0, "p95 wait not met"),
        (80.0, 40.0, 1, "interruptions and pod-hours and p95 wait not met"),
    ],
)
def test_a_podslots_row_is_judged_against_the_deployment_on_the_same_trace(pod_hours, p95, interrupted, said):
    """Given the Deployment's 100 pod-hours, a podslots row meets the targets at 0.7x of them,
    a p95 wait of 30 s and nothing interrupted; the stretch at 1.3x its own bound."""
    deployment = _row("(a) Deployment", 100.0)

    assert verdict(_row("(d) podslots", pod_hours, p95, interrupted), deployment) == said


def test_the_targets_table_has_a_line_per_podslots_row_beside_a_deployment():
    runs = {
        "seed 1": [_row("(a) Deployment", 100.0), _row("(d) podslots", 65.0), _row("(e) HPA", 40.0, interrupted=3)],
        "week, podslots alone": [_row("(d) podslots", 65.0)],  # no (a) beside it: nothing to judge against
    }

    lines = targets_table(runs).splitlines()

    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert {"policy", "interrupted (run/rsv)", "pod-h", "pod-h / bound", "p95 s"} <= set(header)  # the columns
    assert lines[2:] == ["| (d) podslots | seed 1 | 0 (0/0) | 0 | 65.0 | 100.0 | 0.65 | 0 | 1.30 | met; stretch met |"]


def test_the_placement_table_sets_reservation_aware_placement_beside_fullness_alone():
    aware = _row("(d) podslots", 90.0)
    fullness = _row("(l) podslots, placement by fullness alone", 95.0)
    runs = {"seed 1": [aware, fullness], "seed 2": [aware]}  # seed 2 has no (l): no line

    lines = placement_table(runs).splitlines()

    assert [line.split("|")[1].strip() for line in lines[2:]] == [fullness.policy, aware.policy]
    assert lines[3].endswith("| 5.0 (nan) |")  # (d) saves 5 pod-hours; these rows carry no pinned pod-hours


def test_exactly_seven_tenths_of_the_deployment_meets_the_target_despite_float_rounding():
    """63 / 90 is 0.7 in floats, though 0.7 * 90 is 62.99999999999999: the ratio is compared, not a product."""
    assert verdict(_row("(d) podslots", 63.0), _row("(a) Deployment", 90.0)) == "met; stretch met"
