"""Reconcile's loss of a vanished pod is conditional on the slots it judged from.

Reconcile reads the pod items, sees a pod gone from the cluster, and removes its item with its
tasks made `lost` in one transaction. The item is still open while it does: an allocation can land
on it between the read and the write. That write must then be refused (the next run loses the pod
with the new task in it, reported), never remove the item with an unreported task in its slot.
Through the real allocate and reconcile handlers, on moto and the Kubernetes API stand-in.
"""

from __future__ import annotations

import pytest

from podslots.model import Pod, TaskStatus
from tests.conftest import BusTap
from tests.integration.conftest import Api
from tests.integration.test_reconcile import NS, POOL, ClusterWorld, kube, lost_events, world

__all__ = ["kube", "world"]  # the reconcile tests' fixtures: a pool in moto and in the stand-in


def test_an_allocation_between_reconciles_read_and_its_loss_of_the_pod_is_reported_lost_not_left_running(
    world: ClusterWorld, api: Api, bus: BusTap, monkeypatch: pytest.MonkeyPatch
):
    # Given a ready pod running t1, and the pod vanishes from the cluster (its node went)
    pod = world.pod(f"{POOL}-a", slots=3)
    assert api.allocate(POOL, "t1").body["pod"] == pod
    world.kube.remove(NS, pod)
    # When t2 is allocated onto the pod (its item is still open) after reconcile read it, before its write
    store = world.handler.reconciler.store
    lose = store.lose_pod
    stepped: list[int] = []

    def stepped_in(item: Pod, reason: str, now: int, event_id: str) -> list[tuple[str, str]]:
        if not stepped:
            answer = api.allocate(POOL, "t2")
            stepped.append(answer.status)
            assert (answer.status, answer.body["pod"]) == (201, pod)
        return lose(item, reason, now, event_id)

    monkeypatch.setattr(store, "lose_pod", stepped_in)
    first = world.reconcile()
    # Then that write is refused: the item stays, with both tasks in it, and the pod is left to the next run
    assert stepped == [201]
    assert "removed_pods" not in first
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert sorted(s.task_id for s in item.slots.values() if s.task_id) == ["t1", "t2"]
    # And the next run loses the pod with both tasks, each reported lost
    second = world.reconcile()
    assert second["removed_pods"] == [pod]
    assert world.store.get_pod(POOL, pod) is None
    for task_id in ("t1", "t2"):
        task = world.store.get_task(task_id)
        assert task is not None
        assert task.status is TaskStatus.LOST
    assert sorted(e["task_id"] for e in lost_events(bus)) == ["t1", "t2"]
