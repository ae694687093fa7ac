"""One scale step creates its pods side by side, within a bound, each recorded before it is created.

The cluster is the Kubernetes API stand-in: its `slow_next` keeps creates in flight long enough to
overlap, and `peak` says how many it served at once (from the server's side, no clock involved).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from podslots.autoscale import CREATE_CONCURRENCY, Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.cluster_pods import ClusterPod
from podslots.model import PodState
from podslots.store import SlotStore
from tests.support.pods import given_pool

NS, POOL = "agents", "wide"


class RecordedFirst(KubeGateway):
    """The real gateway, noting at each create whether the table already knew the pod."""

    def __init__(self, kube: KubeApiStandIn, store: SlotStore) -> None:
        super().__init__(new_client_from_config_dict(kube.kubeconfig(NS)))
        self.store = store
        self.known_at_create: list[bool] = []

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> ClusterPod:
        self.known_at_create.append(self.store.get_pod(POOL, manifest["metadata"]["name"]) is not None)
        return super().create_pod(namespace, manifest)


@pytest.fixture
def gateway(store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> RecordedFirst:
    given_pool(store, POOL, now=int(clock.now()), min_pods=10, max_pods=20)
    return RecordedFirst(kube, store)


def scale(store: SlotStore, gateway: RecordedFirst, clock: ManualClock) -> dict[str, Any]:
    autoscaler = Autoscaler(store, lambda _: gateway, RecordingPublisher(), clock, "https://api.example/v1")
    (report,) = autoscaler.run(POOL)
    return report.summary()


def test_a_scale_up_creates_its_pods_side_by_side_within_the_bound(
    store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, gateway: RecordedFirst
):
    # Given a pool that needs 10 pods, and a cluster that takes its time over each create
    kube.slow_next(1.5, verb="create", times=10)  # long enough for a window's 8 items to be put first

    # When autoscale runs
    report = scale(store, gateway, clock)

    # Then the 10 pods were created, at most CREATE_CONCURRENCY at a time and that many at once
    assert len(report["created"]) == 10
    assert kube.peak("create") == CREATE_CONCURRENCY
    # and each was in the table before its create was sent, and is recorded with its uid
    assert gateway.known_at_create == [True] * 10
    items = {p.name: p for p in store.pods(POOL)}
    assert sorted(items) == sorted(report["created"]) == sorted(p["metadata"]["name"] for p in kube.pods(NS))
    assert all(p.state is PodState.STARTING and p.uid for p in items.values())


def test_a_failed_create_among_parallel_ones_removes_its_item_and_sends_no_more(
    store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, gateway: RecordedFirst
):
    # Given a pool that needs 10 pods, and a cluster that refuses the first create of the step
    kube.fail_next(500, verb="create")

    # When autoscale runs
    report = scale(store, gateway, clock)

    # Then the creates already sent were recorded, the failed one's item removed, and no new one sent
    assert kube.count("create") == CREATE_CONCURRENCY
    assert len(report["created"]) == CREATE_CONCURRENCY - 1
    assert report["errors"]
    assert sorted(p.name for p in store.pods(POOL)) == sorted(p["metadata"]["name"] for p in kube.pods(NS))
    assert all(p.uid for p in store.pods(POOL))
    assert [e.kind for e in store.events(POOL, 20)].count("PodCreateFailed") == 1

    # And the next run creates what is still missing
    clock.advance(60)
    assert len(scale(store, gateway, clock)["created"]) == 10 - (CREATE_CONCURRENCY - 1)
    assert len(store.pods(POOL)) == len(kube.pods(NS)) == 10
