"""Issue 19, pre-warm: allocation counts the pool's arrivals on the pod items it writes anyway,
autoscale folds them into the pool's one history item once an hour, and a week later starts pods
ahead of the ramp it learned. Through the real handlers (the allocate and status routes,
functions/autoscale/app.py) on moto and the Kubernetes API stand-in."""

from __future__ import annotations

from types import ModuleType

import pytest

from local.kube_api import KubeApiStandIn
from podslots.clock import ManualClock
from podslots.prewarm import hour_of_week
from podslots.store import SlotStore
from tests.integration.conftest import Api
from tests.integration.test_packing import NS, POOL, ready_pod, run
from tests.support.handlers import wired_autoscale_handler
from tests.support.pods import given_pool

MONDAY = 1_799_625_600  # 2027-01-11 00:00 UTC
H, WEEK = 3600, 7 * 86400


@pytest.fixture
def autoscale(kube: KubeApiStandIn, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return wired_autoscale_handler(kube, NS, clock, monkeypatch)


def busy_hour(api: Api, clock: ManualClock, tasks: int) -> None:
    """`tasks` plans, one after another over the hour, each placed and ended through the API."""
    for n in range(tasks):
        clock.advance(H // (tasks + 1))
        assert api.allocate(POOL, f"{clock.now():.0f}-{n}").status == 201
        assert api.status(f"{clock.now():.0f}-{n}", "success").status == 200


def test_allocation_counts_each_placement_on_the_pod_it_writes(
    api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given a pool with one ready pod
    given_pool(store, POOL, now=int(clock.now()), prewarm=True)
    pod = ready_pod(store, kube, clock, "counted")
    # When two plans are placed and end, and a third asks again for its slot (a retry, not an arrival)
    busy_hour(api, clock, 2)
    assert api.allocate(POOL, "third").status == 201
    assert api.allocate(POOL, "third").status == 200
    # Then the pod counted three arrivals
    counted = store.get_pod(POOL, pod)
    assert counted is not None
    assert counted.placed == 3


@pytest.mark.parametrize("prewarm", [True, False])
def test_autoscale_starts_a_pod_ahead_of_the_ramp_it_learned_a_week_before(
    api: Api, autoscale: ModuleType, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, prewarm: bool
):
    # Given a pool of one pod (min_pods 1, no headroom) that pre-warms or not
    clock.set(MONDAY + 7 * H + 30)
    given_pool(store, POOL, now=int(clock.now()), prewarm=prewarm, headroom_pods=0, min_pods=1)
    pod = ready_pod(store, kube, clock, "only")
    run(autoscale)  # Monday 07:00: the history starts counting
    # And a busy Monday 07:00 hour (30 tasks), folded by the first run after 08:00
    busy_hour(api, clock, 30)
    clock.set(MONDAY + 8 * H + 30)
    run(autoscale)
    # When, a week later at 06:50, the one pod is full and autoscale runs
    clock.set(MONDAY + WEEK + 6 * H + 50 * 60)
    for n in range(3):
        assert api.allocate(POOL, f"long-{n}").status == 201
    report = run(autoscale)
    pods = store.pods(POOL)
    if prewarm:
        # Then the pool learned 30 tasks an hour for Monday 07:00
        arrivals = store.arrivals(POOL)
        assert arrivals is not None
        assert arrivals.rates[hour_of_week((MONDAY + 7 * H) // H)] == 30
        # And before the ramp it starts a pod, so the 07:00 tasks find 3 idle slots
        assert report["direction"] == "up"
        assert "3 pre-warm slot(s)" in report["reason"]
        assert len(pods) == 2
        assert len(kube.pods(NS)) == 2
    else:
        # Then without pre-warm the full pod is all it has until a task waits
        assert report.get("direction", "none") == "none"
        assert [p.name for p in pods] == [pod]
        assert store.arrivals(POOL) is None


def test_the_history_is_written_once_an_hour_not_by_a_quiet_pool_minute(
    api: Api, autoscale: ModuleType, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given a pre-warming pool of one ready pod, its history folded at 10:00
    clock.set(MONDAY + 10 * H + 5)
    given_pool(store, POOL, now=int(clock.now()), prewarm=True, headroom_pods=0, min_pods=1)
    ready_pod(store, kube, clock, "only")
    run(autoscale)
    folded, lease = store.arrivals(POOL), store.read_lease(POOL)
    assert folded is not None
    assert folded.hour == (MONDAY + 10 * H) // H
    # When autoscale runs every minute of the hour, and two tasks come and go
    busy_hour(api, clock, 2)
    clock.set(MONDAY + 10 * H + 60)
    for _ in range(58):
        assert run(autoscale)["reason"] == "steady"
        clock.advance(60)
    # Then the history is as the 10:00 fold left it, and every run was quiet (it took no lease)
    assert store.arrivals(POOL) == folded
    assert store.read_lease(POOL) == lease
    # And the first run after 11:00 folds the hour's two tasks in
    clock.set(MONDAY + 11 * H + 1)
    run(autoscale)
    after = store.arrivals(POOL)
    assert after is not None
    assert after.rates[hour_of_week((MONDAY + 10 * H) // H)] == 2
