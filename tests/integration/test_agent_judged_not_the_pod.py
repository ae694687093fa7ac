"""A pod with podslots' native sidecar is judged by its agent container, not its phase (issue 18 review).

The sidecar (an init container with `restartPolicy: Always`) keeps the pod `Running` and beats from
the held-task files whatever became of the agent. Reconcile reads the agent's state from the pod's
`containerStatuses`, as the kubelet reports it (the stand-in's `set_container_state`), through the
reconcile handler and the official client.
"""

from __future__ import annotations

from typing import Any

import pytest

from podslots.model import PodState, TaskStatus, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, SLOTS_ANNOTATION
from tests.conftest import BusTap
from tests.integration.test_reconcile import NS, POOL, ClusterWorld, kube, lost_events, world

__all__ = ["kube", "world"]  # fixtures

RUNNING: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
EXITED: dict[str, Any] = {"terminated": {"exitCode": 1, "reason": "Error"}}
IMAGE_PULL: dict[str, Any] = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}


def sidecar_pod(world: ClusterWorld, name: str, agent: dict[str, Any], *, item: bool = True) -> str:
    """A pod as podslots makes it with `pod_template.sidecar`: Running, its sidecar running and
    beating (the item is ready), its agent in the state given."""
    world.kube.add_pod(
        NS,
        {
            "metadata": {
                "name": name,
                "labels": {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY},
                "annotations": {SLOTS_ANNOTATION: "2"},
            },
            "spec": {
                "initContainers": [{"name": "podslots-sidecar", "image": "sidecar:1", "restartPolicy": "Always"}],
                "containers": [{"name": "agent", "image": "agent:1"}],
                "restartPolicy": "Never",
            },
        },
    )
    world.kube.set_phase(NS, name, "Running")
    world.kube.set_pod_ip(NS, name, "10.9.0.7")
    world.kube.set_container_state(NS, name, "podslots-sidecar", RUNNING, init=True)
    world.kube.set_container_state(NS, name, "agent", agent)
    if item:
        uid = world.kube.pod(NS, name)["metadata"]["uid"]  # type: ignore[index]
        now = int(world.clock.now())
        world.store.put_pod(new_pod(POOL, name, 2, now, uid=uid))
        world.beat(name, [])  # the sidecar's first beat: the pod is ready
    return name


def test_a_pod_whose_agent_exited_loses_its_tasks_and_is_deleted_though_its_sidecar_keeps_it_running(
    world: ClusterWorld, bus: BusTap
):
    # Given a sidecar pod running a task
    pod = sidecar_pod(world, f"{POOL}-a", RUNNING)
    world.allocate("t1")
    # When its agent exits, while the sidecar runs on and beats the agent's stale held-task file
    world.kube.set_container_state(NS, pod, "agent", EXITED)
    world.clock.advance(30)
    world.beat(pod, ["t1"])
    report = world.reconcile()
    # Then the task is reported lost, with the agent's exit as the reason, and the pod is deleted
    assert report["lost_tasks"] == ["t1"]
    assert [e["reason"] for e in lost_events(bus)] == ["agent exited (1)"]
    assert world.store.get_task("t1").status is TaskStatus.LOST  # type: ignore[union-attr]
    assert world.kube.pod(NS, pod) is None
    # And no new task is placed on it
    assert world.store.get_pod(POOL, pod) is None
    with pytest.raises(Exception, match="no ready pod"):
        world.allocate("t2")


def test_a_pod_whose_agent_never_started_is_removed_past_the_startup_timeout_though_its_sidecar_beats(
    world: ClusterWorld, bus: BusTap
):
    # Given a sidecar pod whose agent image cannot be pulled; the sidecar registered it, and it took a task
    pod = sidecar_pod(world, f"{POOL}-a", IMAGE_PULL)
    world.allocate("t1")
    # When the sidecar beats on until just before the startup timeout (600 s), nothing is judged yet
    world.clock.advance(599)
    world.beat(pod, [])
    assert world.reconcile().get("lost_tasks") is None
    assert world.kube.pod(NS, pod) is not None
    # And past it, the pod never came up: its task is lost, the pod deleted, its item gone
    world.clock.advance(2)
    world.beat(pod, [])
    report = world.reconcile()
    assert report["lost_tasks"] == ["t1"]
    assert [e["reason"] for e in lost_events(bus)] == ["agent never started"]
    assert world.kube.pod(NS, pod) is None
    assert world.store.get_pod(POOL, pod) is None


def test_a_pod_whose_kubelet_has_not_reported_its_agent_is_not_taken_for_dead(world: ClusterWorld):
    # Given a ready pod long past its startup timeout, whose status lists no container yet
    pod = world.pod(f"{POOL}-a")
    world.clock.advance(700)
    world.beat(pod, [])
    # When reconcile runs, then the pod lives on (unknown is not dead)
    assert world.reconcile().get("removed_pods") is None
    assert world.store.get_pod(POOL, pod).state is PodState.READY  # type: ignore[union-attr]


def test_a_pod_without_an_item_whose_agent_exited_is_deleted_not_adopted(world: ClusterWorld):
    # Given a pod podslots made for this pool, no item (its create's answer was lost), its agent exited
    pod = sidecar_pod(world, f"{POOL}-a", EXITED, item=False)
    # When reconcile meets it
    report = world.reconcile()
    # Then it is not adopted (its sidecar would register it and it would take tasks) but deleted
    assert report.get("adopted") is None
    assert world.store.get_pod(POOL, pod) is None
    assert world.kube.pod(NS, pod) is None


@pytest.mark.parametrize(
    ("reported", "recorded"),
    [("not-an-ip; rm -rf /", None), ("10.1.2.3", "10.1.2.3"), ("fd00:0:0::7", "fd00::7"), ("010.1.2.3", None)],
)
def test_a_pod_ip_is_recorded_only_when_the_server_answered_an_address(
    world: ClusterWorld, reported: str, recorded: str | None
):
    # Given a pod whose server answers this podIP, adopted by reconcile with what it reports
    pod = world.pod(f"{POOL}-a", labelled_only=True)
    world.kube.set_pod_ip(NS, pod, reported)
    world.reconcile()
    # Then only an address is recorded (answered by GET /tasks, logged by the heartbeat)
    adopted = world.store.get_pod(POOL, pod)
    assert adopted is not None
    assert adopted.pod_ip == recorded
