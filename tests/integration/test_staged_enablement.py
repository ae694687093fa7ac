"""Staged enablement, through the real handlers on moto and the Kubernetes API stand-in: a pool in
`observe` mode adopts an existing Deployment's pods and records what it would do while the cluster
sees no write; `paused` stops scale steps and deletions while allocation goes on; `active` acts."""

from __future__ import annotations

from typing import Any

import pytest

from local.kube_api import KubeApiStandIn
from podslots.clock import ManualClock
from podslots.model import ADOPTED, PodState
from podslots.names import CLAIM_ANNOTATION
from podslots.store import SlotStore
from tests.integration.conftest import Api
from tests.integration.test_rollout import NS, POOL, World

DEPLOYMENT_LABELS = {"app": "tf-agent", "pod-template-hash": "5d8f7"}
WRITES = ("create", "delete", "patch")


def deployment_pods(kube: KubeApiStandIn, count: int) -> list[str]:
    """Pods as a Deployment's ReplicaSet made them: its labels, none of podslots'."""
    names = []
    for i in range(count):
        name = f"tf-agent-5d8f7-{i:05d}"
        kube.add_pod(
            NS,
            {
                "metadata": {"name": name, "labels": dict(DEPLOYMENT_LABELS)},
                "spec": {"containers": [{"name": "agent", "image": "registry.example/tf-agent:1.8"}]},
                "status": {"phase": "Running", "podIP": f"10.1.0.{i + 1}"},
            },
        )
        names.append(name)
    return names


def observed(mode: str = "observe", **more: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "adopt_selector": {"app": "tf-agent"},
        "min_pods": 1,
        "max_pods": 6,
        "scale_down_delay_s": 0,
        "startup_timeout_s": 300,
        "pod_template": {"image": "registry.example/tf-agent:1.9"},
        **more,
    }


@pytest.fixture
def world(api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> World:
    return World(api, store, kube, clock)


def claim(kube: KubeApiStandIn, name: str) -> str | None:
    pod = kube.pod(NS, name)
    assert pod is not None
    return (pod["metadata"].get("annotations") or {}).get(CLAIM_ANNOTATION)


def cluster_writes(kube: KubeApiStandIn) -> dict[str, int]:
    calls = kube.calls()
    return {verb: calls[verb] for verb in WRITES if calls[verb]}


def test_observe_adopts_a_deployments_pods_and_records_what_it_would_do_without_a_cluster_write(world: World):
    # Given a Deployment's three pods, two of whose agents beat (the podslots sidecar), one silent
    pods = deployment_pods(world.kube, 3)
    assert world.api.put_pool(POOL, observed()).status == 201
    world.kube.clear_requests()
    # When podslots observes the pool for ten minutes
    for _ in range(10):
        world.clock.advance(60)
        for name in pods[:2]:
            world.api.beat(POOL, name)
        world.reconciler.run(POOL)
        world.autoscaler.run(POOL)
    # Then it knows every pod of the Deployment: the beating ones ready, as adopted (not its own make)
    items = {p.name: p for p in world.store.pods(POOL)}
    assert set(items) == set(pods)
    assert {items[n].state for n in pods[:2]} == {PodState.READY}
    assert {p.revision for p in items.values()} == {ADOPTED}
    # And the cluster saw no create or delete; its one write is each pod's claim for the pool, once
    assert cluster_writes(world.kube) == {"patch": 3}
    assert all(world.kube.pod(NS, name) is not None for name in pods)
    assert {claim(world.kube, name) for name in pods} == {POOL}
    # And the silent pod, running before podslots saw it, is not taken for one that never came up:
    # it stays `starting`, counted busy, and nothing would delete it
    assert items[pods[2]].state is PodState.STARTING
    assert world.events("WouldDelete") == []
    # And the history holds the scale step it would have taken
    would_scale = world.events("WouldScale")
    assert would_scale
    assert all(e["mode"] == "observe" for e in would_scale)
    assert world.events("PoolScaled") == []


def test_observe_allocates_on_the_adopted_pods_that_beat(world: World):
    pods = deployment_pods(world.kube, 2)
    world.api.put_pool(POOL, observed())
    world.clock.advance(60)
    world.reconciler.run(POOL)
    for name in pods:
        world.api.beat(POOL, name)
    placed = world.api.allocate(POOL, "run-1", "plan")
    assert (placed.status, placed.body["pod"] in pods) == (201, True)


def test_paused_allocates_but_takes_no_scale_step_and_deletes_nothing(world: World):
    # Given an active pool of 3 idle pods above its minimum of 1 (no headroom: it wants only its minimum)
    world.put(min_pods=3, max_pods=6, headroom_pods=0)
    world.minute()
    world.minute()
    assert len(world.pods()) == 3
    # When it is paused with min_pods 1 (it would scale down), and a pod's agent falls silent
    world.put(min_pods=1, max_pods=6, mode="paused", headroom_pods=0)
    world.kube.clear_requests()
    for _ in range(5):
        world.minute()
    # Then no pod was deleted or created, and the step it would take is recorded
    assert len(world.pods()) == 3
    assert "create" not in cluster_writes(world.kube)
    assert "delete" not in cluster_writes(world.kube)
    (would,) = world.events("WouldScale")
    assert (would["mode"], would["direction"], len(would["delete"])) == ("paused", "down", 2)
    # And allocation goes on
    assert world.api.allocate(POOL, "run-1", "plan").status == 201
    # When it is active again, the step is taken: the idle pods go, the busy one stays
    world.put(min_pods=1, max_pods=6, mode="active", headroom_pods=0)
    world.minute()
    assert len(world.pods()) == 1


def test_switching_an_observed_pool_to_active_replaces_the_deployments_pods_without_killing_a_task(world: World):
    # Given an observed Deployment of two beating pods, one running a task
    pods = deployment_pods(world.kube, 2)
    world.api.put_pool(POOL, observed(min_pods=2))
    world.clock.advance(60)
    world.reconciler.run(POOL)
    for name in pods:
        world.api.beat(POOL, name)
    busy = world.api.allocate(POOL, "run-1", "plan").body["pod"]
    # When the pool becomes active (the Deployment orphaned its pods first: docs/architecture.md)
    world.api.put_pool(POOL, observed("active", min_pods=2))
    for _ in range(6):
        world.minute()
    # Then the idle adopted pod was replaced, and the busy one kept while its task runs
    assert busy in world.pods()
    assert world.kube.pod(NS, busy) is not None
    # When its task ends, it goes too, and only podslots' own pods remain
    world.api.status("run-1", "success")
    for _ in range(4):
        world.minute()
    assert not set(pods) & set(world.pods())
    assert len(world.pods()) == 2
    assert world.deleted_busy == []
    assert world.events("RolloutFinished")


def test_deleting_an_observed_pool_forgets_its_pods_and_leaves_them_running(world: World):
    pods = deployment_pods(world.kube, 2)
    world.api.put_pool(POOL, observed())
    world.clock.advance(60)
    world.reconciler.run(POOL)
    world.kube.clear_requests()
    assert world.api.call("DELETE", "/pools/{pool}", pool=POOL).status == 202
    world.clock.advance(60)
    world.autoscaler.run(POOL)
    assert world.api.get_pool(POOL).status == 404
    assert all(world.kube.pod(NS, name) is not None for name in pods)
    assert cluster_writes(world.kube) == {}


def test_a_mode_or_selector_the_api_does_not_know_is_a_named_422(world: World):
    bad_mode = world.api.put_pool(POOL, observed("sleeping"))
    assert (bad_mode.status, bad_mode.body["problems"][0]["field"]) == (422, "mode")
    empty = world.api.put_pool(POOL, observed(adopt_selector={}))
    assert (empty.status, empty.body["problems"][0]["field"]) == (422, "adopt_selector")
    bad_label = world.api.put_pool(POOL, observed(adopt_selector={"app": "not a label"}))
    assert bad_label.status == 422
    surge = world.api.put_pool(POOL, observed(max_surge=0))
    assert (surge.status, surge.body["problems"][0]["field"]) == (422, "max_surge")
