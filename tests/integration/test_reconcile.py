"""Reconcile, each rule through the handler: moto for AWS, the Kubernetes API stand-in for the cluster.

The handler reads the kubeconfig from (moto's) Secrets Manager and talks real HTTP to the stand-in
through the official client, exactly as it would to a cluster.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import kubernetes
import pytest
from aws_lambda_powertools.utilities import parameters
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from local.apigw import load_event
from local.kube_api import KubeApiStandIn
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import EventBridgePublisher, RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster_pods import BUSY_LABEL, DO_NOT_DISRUPT
from podslots.model import PodState, TaskStatus, TaskType, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, SLOTS_ANNOTATION
from podslots.store import SlotStore
from tests.conftest import BusTap, LambdaContext
from tests.support.pods import given_pool

NS = "agents"
POOL = "terraform"
SECRET = "podslots/dev/kubeconfig"  # under the environment's prefix, as the template requires


class ClusterWorld:
    """A pool whose pods exist both as items and as pods in the stand-in."""

    def __init__(self, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, handler: ModuleType) -> None:
        self.store, self.kube, self.clock, self.handler = store, kube, clock, handler
        self.allocator = Allocator(store, RecordingPublisher(), clock)

    def reconcile(self) -> dict[str, Any]:
        result: dict[str, Any] = self.handler.lambda_handler(load_event("reconcile_schedule.json"), LambdaContext())
        return next((p for p in result["pools"] if p["pool"] == POOL), {})

    def pod(self, name: str, slots: int = 3, ready: bool = True, labelled_only: bool = False) -> str:
        """A running pod in the cluster, and (unless `labelled_only`) its item, beating if `ready`."""
        created = self.kube.add_pod(
            NS,
            {
                "metadata": {
                    "name": name,
                    "labels": {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY},
                    "annotations": {SLOTS_ANNOTATION: str(slots)},
                },
                "spec": {"containers": [{"name": "agent", "image": "x"}], "restartPolicy": "Never"},
            },
        )
        self.kube.set_phase(NS, name, "Running")
        self.kube.set_pod_ip(NS, name, "10.9.0.7")
        if not labelled_only:
            now = int(self.clock.now())
            self.store.put_pod(new_pod(POOL, name, slots, now, uid=created["metadata"]["uid"]))
            if ready:
                self.store.heartbeat(POOL, name, [], "10.9.0.7", now)
        return name

    def allocate(self, task_id: str, kind: TaskType = TaskType.PLAN) -> tuple[str, str]:
        done = self.allocator.allocate(AllocationRequest(POOL, task_id, kind))
        return done.pod, done.slot

    def holder(self, task_id: str) -> str:
        task = self.store.get_task(task_id)
        assert task is not None
        assert task.pod is not None
        return task.pod

    def beat(self, pod: str, held: list[str]) -> None:
        self.store.heartbeat(POOL, pod, held, "10.9.0.7", int(self.clock.now()))

    def labels(self, pod: str) -> dict[str, str]:
        found = self.kube.pod(NS, pod)
        assert found is not None
        return dict(found["metadata"].get("labels") or {})

    def annotations(self, pod: str) -> dict[str, str]:
        found = self.kube.pod(NS, pod)
        assert found is not None
        return dict(found["metadata"].get("annotations") or {})


@pytest.fixture
def kube(clock: ManualClock) -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(token="reconcile-token", clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as k:
        yield k


@pytest.fixture
def world(
    store: SlotStore, bus: BusTap, kube: KubeApiStandIn, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> ClusterWorld:
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(kube.kubeconfig(NS)))
    monkeypatch.setenv("KUBECONFIG_SECRET", SECRET)
    monkeypatch.setenv("KUBE_READ_TIMEOUT_S", "1")
    parameters.clear_caches()
    handler = importlib.import_module("functions.reconcile.app")
    from podslots.kubeconfig import ClusterConnections

    # A fresh provider: Powertools' cache would otherwise keep the last test's secret
    provider = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    monkeypatch.setattr(handler, "connections", ClusterConnections(provider=provider))
    monkeypatch.setattr(handler.reconciler, "clock", clock)
    monkeypatch.setattr(handler.reconciler, "bus", EventBridgePublisher())
    given_pool(store, POOL, now=int(clock.now()), heartbeat_timeout_s=120, startup_timeout_s=600, leak_grace_s=600)
    return ClusterWorld(store, kube, clock, handler)


def lost_events(bus: BusTap) -> list[dict[str, Any]]:
    return [e["detail"] for e in bus.events("TaskLost")]


def test_a_vanished_pod_has_its_tasks_reported_lost_and_its_item_removed(world: ClusterWorld, bus: BusTap):
    # Given a pod running two tasks
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.allocate("t2")
    # When the pod disappears from the cluster (node loss, kubectl delete)
    world.kube.remove(NS, pod)
    report = world.reconcile()
    # Then both tasks are lost, announced once each, and the item is gone
    assert sorted(report["lost_tasks"]) == ["t1", "t2"]
    assert sorted(e["task_id"] for e in lost_events(bus)) == ["t1", "t2"]
    assert {e["reason"] for e in lost_events(bus)} == {"vanished"}
    assert world.store.get_pod(POOL, pod) is None
    assert world.store.get_task("t1").status is TaskStatus.LOST  # type: ignore[union-attr]
    # And a second run finds nothing more to report
    world.reconcile()
    assert len(lost_events(bus)) == 2


def test_a_failed_pod_loses_its_tasks_and_is_deleted(world: ClusterWorld, bus: BusTap):
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.kube.set_phase(NS, pod, "Failed")
    report = world.reconcile()
    assert report["lost_tasks"] == ["t1"]
    assert lost_events(bus)[0]["reason"] == "pod failed"
    assert world.kube.pod(NS, pod) is None


def test_a_replaced_pod_loses_the_old_tasks_and_the_new_pod_is_adopted(world: ClusterWorld, bus: BusTap):
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.kube.remove(NS, pod)
    world.pod(pod, labelled_only=True)  # same name, new uid
    report = world.reconcile()
    assert report["lost_tasks"] == ["t1"]
    assert lost_events(bus)[0]["reason"] == "replaced"
    world.reconcile()
    adopted = world.store.get_pod(POOL, pod)
    assert adopted is not None
    assert adopted.state is PodState.STARTING
    assert adopted.uid == world.kube.pod(NS, pod)["metadata"]["uid"]  # type: ignore[index]


def test_a_starting_pod_past_its_startup_timeout_is_removed(world: ClusterWorld):
    pod = world.pod(f"{POOL}-slow", ready=False)
    world.clock.advance(599)
    assert world.reconcile().get("removed_pods") is None
    world.clock.advance(2)
    assert world.reconcile()["removed_pods"] == [pod]
    assert world.store.get_pod(POOL, pod) is None
    assert world.kube.pod(NS, pod) is None


def test_a_pod_without_a_heartbeat_turns_unhealthy_and_back_when_it_beats(world: ClusterWorld):
    pod = world.pod(f"{POOL}-a")
    world.clock.advance(121)
    assert world.reconcile()["unhealthy"] == [pod]
    assert world.store.get_pod(POOL, pod).state is PodState.UNHEALTHY  # type: ignore[union-attr]
    # An unhealthy pod takes no new task
    with pytest.raises(Exception, match="no ready pod"):
        world.allocate("t1")
    world.beat(pod, [])
    assert world.store.get_pod(POOL, pod).state is PodState.READY  # type: ignore[union-attr]
    assert world.allocate("t1")[0] == pod


def test_a_slot_the_agent_no_longer_holds_is_released_after_the_grace(world: ClusterWorld, bus: BusTap):
    # Given a task on a pod whose agent, beating, has forgotten it
    pod = world.pod(f"{POOL}-a")
    world.allocate("kept")
    world.allocate("forgotten")
    world.clock.advance(300)
    world.beat(pod, ["kept"])
    # When the grace has not passed: nothing
    assert world.reconcile().get("released") is None
    # When it has (and the agent still beats without it)
    world.clock.advance(301)
    world.beat(pod, ["kept"])
    report = world.reconcile()
    # Then that slot is released and recorded; the held one stays
    assert report["released"] == ["forgotten"]
    assert world.store.get_task("forgotten").status is TaskStatus.LOST  # type: ignore[union-attr]
    assert world.store.get_task("kept").status is TaskStatus.RUNNING  # type: ignore[union-attr]
    assert world.store.get_pod(POOL, pod).busy == 1  # type: ignore[union-attr]
    assert [e["reason"] for e in lost_events(bus)] == ["leaked"]
    history = world.store.events(POOL, 20)
    assert any(e.kind == "TaskLost" and e.detail["task_id"] == "forgotten" for e in history)


def test_a_labelled_pod_without_an_item_is_adopted_as_starting(world: ClusterWorld):
    pod = world.pod(f"{POOL}-stray", slots=4, labelled_only=True)
    assert world.reconcile()["adopted"] == [pod]
    adopted = world.store.get_pod(POOL, pod)
    assert adopted is not None
    assert (adopted.state, adopted.slot_count) == (PodState.STARTING, 4)
    # Its first beat makes it ready like any other pod
    world.beat(pod, [])
    assert world.allocate("t1")[0] == pod


def test_a_draining_pod_that_still_exists_has_its_delete_retried(world: ClusterWorld):
    pod = world.pod(f"{POOL}-a")
    assert world.store.start_draining(POOL, pod, (PodState.READY,))
    assert world.reconcile()["deletes_retried"] == [pod]
    assert world.kube.pod(NS, pod) is None
    assert world.reconcile()["removed_pods"] == [pod]
    assert world.store.get_pod(POOL, pod) is None


def test_pod_uid_and_ip_are_recorded(world: ClusterWorld):
    pod = world.pod(f"{POOL}-a")
    world.kube.set_pod_ip(NS, pod, "10.9.9.9")
    world.reconcile()
    assert world.store.get_pod(POOL, pod).pod_ip == "10.9.9.9"  # type: ignore[union-attr]


def test_busy_pods_are_protected_from_consolidation_and_idle_pods_are_not(world: ClusterWorld):
    busy, idle = world.pod(f"{POOL}-a"), world.pod(f"{POOL}-b")
    world.allocate("t1")  # bin-packing puts it on one pod
    holder = world.holder("t1")
    world.reconcile()
    assert all(world.annotations(holder).get(k) == v for k, v in DO_NOT_DISRUPT.items())
    other = idle if holder == busy else busy
    assert not set(DO_NOT_DISRUPT) & set(world.annotations(other))
    # Patched only when that changes
    world.kube.clear_requests()
    world.reconcile()
    assert world.kube.count(verb="patch") == 0
    # Once the task ends, the protection goes
    task = world.store.get_task("t1")
    assert task is not None
    world.store.release(task, TaskStatus.SUCCESS, int(world.clock.now()))
    world.reconcile()
    assert not set(DO_NOT_DISRUPT) & set(world.annotations(holder))


def evict(kube: KubeApiStandIn, pod: str) -> int:
    """What `kubectl drain` and a node-group upgrade send: POST pods/{pod}/eviction; its HTTP status."""
    client = kubernetes.config.new_client_from_config_dict(kube.kubeconfig(NS))
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NS}}
    try:
        CoreV1Api(client).create_namespaced_pod_eviction(pod, NS, body)  # type: ignore[arg-type]
    except ApiException as refused:
        return int(refused.status)
    finally:
        client.close()
    return 201


def test_a_busy_pod_refuses_eviction_until_reconcile_finds_it_idle(world: ClusterWorld, bus: BusTap):
    # Given a pod running a task and a pod holding a plan reserved for its apply
    world.pod(f"{POOL}-a", slots=1)
    world.pod(f"{POOL}-b", slots=1)
    running, _ = world.allocate("t-run")
    reserved, _ = world.allocate("t-plan", TaskType.PLAN_AND_APPLY)
    world.store.reserve(world.store.get_task("t-plan"), int(world.clock.now()) + 3600, int(world.clock.now()))  # type: ignore[arg-type]
    # When reconcile runs
    world.reconcile()
    # Then both carry the busy label, valued with the pool, and the pool's budget selects them
    assert world.labels(running)[BUSY_LABEL] == world.labels(reserved)[BUSY_LABEL] == POOL
    (budget,) = world.kube.budgets(NS)
    assert budget["spec"]["selector"]["matchLabels"] == {BUSY_LABEL: POOL}
    assert budget["spec"]["maxUnavailable"] == 0
    # And `kubectl drain` cannot evict either of them: 429, both pods still there
    assert (evict(world.kube, running), evict(world.kube, reserved)) == (429, 429)
    assert world.kube.pod(NS, running) is not None
    assert world.kube.pod(NS, reserved) is not None
    # When the running task ends, then the next run takes its pod's label and annotations off
    world.store.release(world.store.get_task("t-run"), TaskStatus.SUCCESS, int(world.clock.now()))  # type: ignore[arg-type]
    world.reconcile()
    assert BUSY_LABEL not in world.labels(running)
    assert not set(DO_NOT_DISRUPT) & set(world.annotations(running))
    # And its eviction goes through, while the reserved pod still refuses: its apply will find it
    assert evict(world.kube, running) == 201
    assert evict(world.kube, reserved) == 429
    assert world.store.get_task("t-plan").status is TaskStatus.APPLY_PENDING  # type: ignore[union-attr]
    assert lost_events(bus) == []


def test_the_budget_costs_one_create_while_pods_stay_busy_and_none_for_an_idle_pool(world: ClusterWorld):
    # Given an idle pod: reconcile runs send no budget request
    world.pod(f"{POOL}-a")
    world.reconcile()
    assert world.kube.count("budget-create") == 0
    assert world.kube.budgets(NS) == []
    # When a task keeps it busy through ten runs a minute apart
    world.allocate("t1")
    for _ in range(10):
        world.reconcile()
        world.clock.advance(60)
    # Then the budget was created once (the runs after it remembered it), label and annotations in one patch
    assert world.kube.count("budget-create") == 1
    assert world.kube.count("patch") == 1
    assert len(world.kube.budgets(NS)) == 1


def test_an_observed_pool_neither_labels_its_busy_pods_nor_creates_a_budget(world: ClusterWorld, store: SlotStore):
    given_pool(store, POOL, heartbeat_timeout_s=120, startup_timeout_s=600, leak_grace_s=600, mode="observe")
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.reconcile()
    assert BUSY_LABEL not in world.labels(pod)
    assert world.kube.calls()["budget-create"] == 0


def test_a_budget_the_role_may_not_create_is_reported_and_the_pod_is_still_labelled(world: ClusterWorld):
    # Given a Role from before budgets (the create is forbidden) and a busy pod
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.kube.fail_next(403, verb="budget-create")
    # When reconcile runs, then it says so (the call and status, not the server's words) and labels anyway
    report = world.reconcile()
    assert report["errors"] == ["disruption budget: create poddisruptionbudget failed (403)"]
    assert world.labels(pod)[BUSY_LABEL] == POOL
    assert all(world.annotations(pod).get(k) == v for k, v in DO_NOT_DISRUPT.items())
    # And the next run creates it
    assert "errors" not in world.reconcile()
    assert len(world.kube.budgets(NS)) == 1


def test_figures_are_emitted_and_recorded_only_when_they_change(world: ClusterWorld):
    world.pod(f"{POOL}-a")
    world.allocate("t1")
    report = world.reconcile()
    assert report["figures"]["slots_total"] == 3
    assert report["figures"]["slots_running"] == 1
    world.reconcile()
    recorded = [e for e in world.store.events(POOL, 50) if e.kind == "PoolFigures"]
    assert len(recorded) == 1
    world.clock.advance(60)
    world.allocate("t2")
    world.reconcile()
    recorded = [e for e in world.store.events(POOL, 50) if e.kind == "PoolFigures"]
    assert [e.detail["slots_running"] for e in recorded] == [2, 1]


def test_an_api_failure_skips_the_pool_and_the_next_run_converges(world: ClusterWorld, bus: BusTap):
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    world.kube.remove(NS, pod)
    world.kube.fail_next(500, verb="list")
    report = world.reconcile()
    assert report["errors"]
    assert world.store.get_task("t1").status is TaskStatus.RUNNING  # type: ignore[union-attr]
    assert lost_events(bus) == []
    assert world.reconcile()["lost_tasks"] == ["t1"]
    world.reconcile()
    assert len(lost_events(bus)) == 1


def test_a_slow_list_times_out_and_the_next_run_converges(world: ClusterWorld):
    pod = world.pod(f"{POOL}-a")
    world.kube.remove(NS, pod)
    world.kube.slow_next(2, verb="list")
    assert world.reconcile()["errors"]
    assert world.store.get_pod(POOL, pod) is not None
    assert world.reconcile()["removed_pods"] == [pod]


def test_a_dropped_connection_part_way_frees_no_busy_slot_and_loses_no_task_twice(world: ClusterWorld, bus: BusTap):
    # Given a failed pod with a task, and a healthy busy pod
    failed, healthy = world.pod(f"{POOL}-a", slots=1), world.pod(f"{POOL}-b", slots=1)
    world.allocate("t-failed")
    world.allocate("t-healthy")
    failed_holder = world.holder("t-failed")
    healthy_holder = healthy if failed_holder == failed else failed
    world.kube.set_phase(NS, failed_holder, "Failed")
    # When the delete of the failed pod and a patch drop their connections
    world.kube.drop_next(verb="delete")
    world.kube.drop_next(verb="patch")
    first = world.reconcile()
    assert first["errors"]
    # Then runs converge: the lost task reported once, the busy slot kept
    world.reconcile()
    world.reconcile()
    assert [e["task_id"] for e in lost_events(bus)] == ["t-failed"]
    assert world.store.get_task("t-healthy").status is TaskStatus.RUNNING  # type: ignore[union-attr]
    assert world.store.get_pod(POOL, healthy_holder).busy == 1  # type: ignore[union-attr]
    assert world.kube.pod(NS, failed_holder) is None
    assert all(world.annotations(healthy_holder).get(k) == v for k, v in DO_NOT_DISRUPT.items())


def test_a_run_for_one_pool_leaves_the_others(world: ClusterWorld, store: SlotStore):
    given_pool(store, "other")
    result = world.handler.lambda_handler({"pool": "other"}, LambdaContext())
    assert [p["pool"] for p in result["pools"]] == ["other"]


# ---- a pod being deleted in the cluster (deletionTimestamp set) ------------------------------------


def test_a_pod_someone_else_is_deleting_has_its_tasks_reported_lost_and_its_item_removed(
    world: ClusterWorld, bus: BusTap
):
    # Given a running pod with a task
    pod = world.pod(f"{POOL}-a")
    world.allocate("t1")
    # When someone else deletes it (a drain of its node, `kubectl delete`): it is still Running,
    # but its deletionTimestamp is set, so it will not run the task to its end
    world.kube.mark_deleting(NS, pod)
    world.kube.clear_requests()
    report = world.reconcile()
    # Then its task is lost, for that reason, and its item goes
    assert report["lost_tasks"] == ["t1"]
    assert [(e["task_id"], e["reason"]) for e in lost_events(bus)] == [("t1", "deleted")]
    assert world.store.get_task("t1").status is TaskStatus.LOST  # type: ignore[union-attr]
    assert world.store.get_pod(POOL, pod) is None
    # And reconcile does not delete it a second time: its delete is already under way
    assert world.kube.count(verb="delete") == 0
    assert world.kube.pod(NS, pod) is not None


def test_a_draining_pod_whose_delete_is_under_way_is_not_deleted_again_and_goes_once_it_is_gone(
    world: ClusterWorld,
):
    # Given a draining pod whose delete (graceful: it terminates for its grace period) was sent
    pod = world.pod(f"{POOL}-a")
    world.kube.set_graceful_deletion(NS, pod)
    assert world.store.start_draining(POOL, pod, (PodState.READY,))
    assert world.reconcile()["deletes_retried"] == [pod]
    terminating = world.kube.pod(NS, pod)
    assert terminating is not None
    assert terminating["metadata"].get("deletionTimestamp")
    # When reconcile runs again while the pod is still terminating
    world.kube.clear_requests()
    report = world.reconcile()
    # Then no second delete is sent, and the item waits, still draining
    assert world.kube.count(verb="delete") == 0
    assert "deletes_retried" not in report
    assert "removed_pods" not in report
    assert world.store.get_pod(POOL, pod).state is PodState.DRAINING  # type: ignore[union-attr]
    # And once the pod is gone, the next run removes its item
    world.kube.finish_deletion(NS, pod)
    assert world.reconcile()["removed_pods"] == [pod]
    assert world.store.get_pod(POOL, pod) is None


def test_a_labelled_pod_being_deleted_without_an_item_is_not_adopted(world: ClusterWorld):
    # Given a labelled pod without an item (its item went with a scale-down) that is still terminating
    pod = world.pod(f"{POOL}-leaving", labelled_only=True)
    world.kube.mark_deleting(NS, pod)
    world.kube.clear_requests()
    # When reconcile runs
    report = world.reconcile()
    # Then it is not adopted: no item is written for a pod on its way out, and it is not deleted again
    assert "adopted" not in report
    assert world.store.get_pod(POOL, pod) is None
    assert world.kube.count(verb="delete") == 0
    assert report["figures"]["pods_total"] == 0
