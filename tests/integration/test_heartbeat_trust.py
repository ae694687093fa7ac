"""A heartbeat cannot lie about the cluster, nor speak for another pod: through the handlers, on moto.

The pod IP that allocation hands to the task queue is the cluster's (reconcile, autoscale's create).
What a beat reports is kept apart and compared; the beat only ever touches the pod its path names.
"""

from __future__ import annotations

import pytest

from podslots.model import new_pod
from podslots.store import SlotStore
from tests.integration.conftest import Api
from tests.support.pods import given_pool, given_ready_pods

POOL = "terraform"


@pytest.fixture
def pool(store: SlotStore) -> str:
    given_pool(store, POOL)
    return POOL


def test_given_a_pod_the_cluster_placed_at_one_ip_when_its_beat_claims_another_then_the_queue_gets_the_clusters(
    api: Api, store: SlotStore, pool: str, capsys: pytest.CaptureFixture[str]
):
    # Given a ready pod whose IP the cluster reported as 10.0.0.1
    (pod,) = given_ready_pods(store, pool)
    capsys.readouterr()
    # When a beat for it claims 10.6.6.6
    answer = api.beat(pool, pod, pod_ip="10.6.6.6")
    # Then the answer and the table keep the cluster's IP, and the claim is kept apart
    assert (answer.status, answer.body["pod_ip"]) == (200, "10.0.0.1")
    item = store.get_pod(pool, pod)
    assert item is not None
    assert (item.pod_ip, item.reported_ip) == ("10.0.0.1", "10.6.6.6")
    # And the mismatch is counted (the handler's EMF record)
    assert '"HeartbeatIpMismatch"' in capsys.readouterr().out
    # And an allocation hands the task queue the cluster's IP
    allocated = api.allocate(pool, "run-1")
    assert (allocated.status, allocated.body["pod_ip"]) == (201, "10.0.0.1")


def test_given_a_pod_the_cluster_has_not_placed_yet_when_its_beat_names_an_ip_then_pod_ip_stays_null(
    api: Api, store: SlotStore, pool: str
):
    # Given a starting pod without an IP from the cluster
    store.put_pod(new_pod(pool, "terraform-new01", 3, 1, uid="uid-1"))
    # When its first beat reports an IP
    answer = api.beat(pool, "terraform-new01", pod_ip="10.6.6.6")
    # Then it is ready, and pod_ip is null (present, in the same shape) until the cluster reports it
    assert (answer.status, answer.body["state"], answer.body["pod_ip"]) == (200, "ready", None)
    allocated = api.allocate(pool, "run-1")
    assert (allocated.status, allocated.body["pod_ip"]) == (201, None)
    # When reconcile records the cluster's IP, Then the queue gets that one
    item = store.get_pod(pool, "terraform-new01")
    assert item is not None
    store.observe_pod(item, "uid-1", "10.0.0.7")
    assert api.call("GET", "/tasks/{task_id}", task_id="run-1").status == 200
    assert api.beat(pool, "terraform-new01", held=["run-1"]).body["pod_ip"] == "10.0.0.7"


def test_given_two_pods_when_one_beats_with_no_held_tasks_then_only_the_pod_of_its_path_is_touched(
    api: Api, store: SlotStore, pool: str
):
    # Given two one-slot pods, each running a task its agent holds
    given_ready_pods(store, pool, count=2, slots=1)
    first = api.allocate(pool, "run-a").body["pod"]
    second = api.allocate(pool, "run-b").body["pod"]
    assert first != second
    api.beat(pool, first, held=["run-a"])
    api.beat(pool, second, held=["run-b"])
    before = store.get_pod(pool, second)
    # When the first pod's path carries a beat that holds nothing
    assert api.beat(pool, first, held=[]).status == 200
    # Then the second pod's item is as it was: its held tasks still protect its slot
    assert store.get_pod(pool, second) == before
    first_item = store.get_pod(pool, first)
    assert first_item is not None
    assert first_item.held_tasks == ()


def test_given_a_beat_whose_body_names_another_pod_then_it_is_refused_and_nothing_is_written(
    api: Api, store: SlotStore, pool: str
):
    # Given two ready pods
    first, second = given_ready_pods(store, pool, count=2)
    before = store.pods(pool)
    # When a beat on the first pod's path names the second pod in its body
    body = {"held_tasks": [], "pod": second}
    answer = api.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", body, pool=pool, pod=first)
    # Then it is a 422 (the path alone says which pod beats), and nothing changed
    assert answer.status == 422
    assert store.pods(pool) == before
