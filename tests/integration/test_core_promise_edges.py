"""The core promise on its edges: each failure found by trying podslots as an adversary would,
reproduced through the real steps on moto and the Kubernetes API stand-in.

A "concurrent" Lambda is played by a store whose read runs another real step right after it
answers: the step under test then acts on what it read, exactly as it would when another
invocation slipped in between its read and its write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.errors import Conflict, NoCapacity, UnreadableSettings
from podslots.expiry import Expirer
from podslots.model import CREATE_GRACE_S, Pod, PodState, TaskStatus, TaskType, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, SLOTS_ANNOTATION
from podslots.pools import PoolService
from podslots.reconcile import Reconciler
from podslots.settings import PoolSettings
from podslots.store import SlotStore
from podslots.store.keys import CONFIG_SK, REGISTRY_PK, pool_pk
from podslots.tasks import TaskStatusService
from tests.conftest import TABLE
from tests.support.least_privilege import as_another_process
from tests.support.pods import given_pool

NS, POOL = "agents", "terraform"


class StoreWithAnInterloper(SlotStore):
    """The real store; after its next read of a pool's pods, another invocation acts once."""

    def __init__(self) -> None:
        super().__init__()
        self.after_next_read: Callable[[], object] | None = None

    def pods(self, pool: str) -> list[Pod]:
        read = super().pods(pool)
        interloper, self.after_next_read = self.after_next_read, None
        if interloper is not None:
            as_another_process(interloper)
        return read


class World:
    def __init__(self, store: StoreWithAnInterloper, kube: KubeApiStandIn, clock: ManualClock) -> None:
        self.store, self.kube, self.clock = store, kube, clock
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        self.bus = RecordingPublisher()
        self.reconciler = Reconciler(store, lambda pool: gateway, self.bus, clock)
        self.autoscaler = Autoscaler(store, lambda pool: gateway, self.bus, clock, "https://api.example/v1")
        self.allocator = Allocator(store, self.bus, clock)
        self.pools = PoolService(store, clock)

    def now(self) -> int:
        return int(self.clock.now())

    def cluster_pod(self, name: str, phase: str = "Running", slots: str | None = None, pool: str = POOL) -> str:
        annotations = {SLOTS_ANNOTATION: slots} if slots is not None else {}
        created = self.kube.add_pod(
            NS,
            {
                "metadata": {
                    "name": name,
                    "labels": {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY},
                    "annotations": annotations,
                },
                "spec": {"containers": [{"name": "agent", "image": "x"}]},
            },
        )
        self.kube.set_phase(NS, name, phase)
        return str(created["metadata"]["uid"])

    def cluster_names(self) -> set[str]:
        return {p["metadata"]["name"] for p in self.kube.pods(NS)}


@pytest.fixture
def world(aws: None, kube: KubeApiStandIn, clock: ManualClock) -> World:
    store = StoreWithAnInterloper()
    given_pool(store, POOL, now=int(clock.now()), max_pods=5, scale_down_delay_s=0, startup_timeout_s=60)
    return World(store, kube, clock)


def test_reconcile_spares_a_slow_pod_that_registered_and_took_a_task_after_it_looked(world: World):
    # Given a pod that has been starting for longer than its startup timeout
    uid = world.cluster_pod(f"{POOL}-slow")
    world.store.put_pod(new_pod(POOL, f"{POOL}-slow", 3, world.now(), uid=uid))
    world.clock.advance(120)
    # and, right after reconcile reads the items, its agent registers and it takes a task
    world.store.after_next_read = lambda: (
        world.store.heartbeat(POOL, f"{POOL}-slow", [], None, world.now()),
        world.allocator.allocate(AllocationRequest(POOL, "run-1", TaskType.PLAN)),
    )

    # When reconcile acts on the starting item it read
    (report,) = world.reconciler.run(POOL)

    # Then the pod is not deleted under its task: the conditional drain lost to the registration
    assert f"{POOL}-slow" in world.cluster_names()
    task = world.store.get_task("run-1")
    assert task is not None
    assert (task.status, task.pod) == (TaskStatus.RUNNING, f"{POOL}-slow")
    assert f"{POOL}-slow" not in report.removed_pods


def test_a_pod_that_never_came_up_is_drained_then_deleted_then_forgotten(world: World):
    # Given a pod starting for longer than its startup timeout, that never beat
    uid = world.cluster_pod(f"{POOL}-stuck", phase="Pending")
    world.store.put_pod(new_pod(POOL, f"{POOL}-stuck", 3, world.now(), uid=uid))
    world.clock.advance(120)
    # When reconcile runs, Then the pod and its item are gone
    (report,) = world.reconciler.run(POOL)
    assert report.removed_pods == [f"{POOL}-stuck"]
    assert world.cluster_names() == set()
    assert world.store.pods(POOL) == []


def test_a_scale_up_racing_a_pool_delete_creates_no_pod_nothing_would_visit(world: World):
    # Given a pool asked to grow (a task waits), and a DELETE that lands right after autoscale
    # read the pool's pods
    with pytest.raises(NoCapacity):
        world.allocator.allocate(AllocationRequest(POOL, "waits", TaskType.PLAN))
    world.store.after_next_read = lambda: world.pools.delete(POOL)

    # When autoscale runs its step on what it read
    (report,) = world.autoscaler.run(POOL)

    # Then no pod was created (its item is refused while the pool is being deleted)
    assert world.cluster_names() == set()
    assert world.store.pods(POOL) == []
    assert report.errors
    # and the next run finishes the delete: the pool is gone, nothing is left behind
    world.autoscaler.run(POOL)
    assert world.store.pool_state(POOL) is None


def test_a_pool_delete_after_a_crash_before_the_uid_was_recorded_deletes_the_pod(world: World):
    # Given a pod created in the cluster whose uid never reached its item (a crash in between)
    world.cluster_pod(f"{POOL}-crashed", phase="Pending")
    world.store.put_pod(new_pod(POOL, f"{POOL}-crashed", 3, world.now()))
    world.clock.advance(CREATE_GRACE_S + 1)

    # When the pool is deleted and autoscale drains it
    world.pools.delete(POOL)
    world.autoscaler.run(POOL)

    # Then the Kubernetes pod is deleted too (found by name), and the pool goes
    assert world.cluster_names() == set()
    world.autoscaler.run(POOL)
    assert world.store.pool_state(POOL) is None


def test_a_pool_delete_removes_a_stray_pod_the_table_never_knew(world: World):
    # Given a pool with one idle ready pod, and a labelled pod of the pool in the cluster with no item
    uid = world.cluster_pod(f"{POOL}-a")
    world.store.put_pod(new_pod(POOL, f"{POOL}-a", 3, world.now(), uid=uid))
    world.store.heartbeat(POOL, f"{POOL}-a", [], None, world.now())
    world.cluster_pod(f"{POOL}-stray")
    # When the pool is deleted and autoscale drains it
    world.pools.delete(POOL)
    world.autoscaler.run(POOL)
    world.autoscaler.run(POOL)
    # Then the stray pod is deleted and the pool is gone
    assert world.cluster_names() == set()
    assert world.store.pool_state(POOL) is None


def test_a_deleted_pool_turns_new_tasks_away_through_its_cordoned_pods(world: World):
    # Given a pool with a ready pod running one task
    uid = world.cluster_pod(f"{POOL}-a")
    world.store.put_pod(new_pod(POOL, f"{POOL}-a", 3, world.now(), uid=uid))
    world.store.heartbeat(POOL, f"{POOL}-a", [], None, world.now())
    world.allocator.allocate(AllocationRequest(POOL, "before", TaskType.PLAN_AND_APPLY))
    # When the pool is deleted
    world.pools.delete(POOL)
    # Then a new task is refused with 409 though the pod has idle slots
    with pytest.raises(Conflict, match="being deleted"):
        world.allocator.allocate(AllocationRequest(POOL, "after", TaskType.PLAN))
    # and the task already there still finds its slot (a repeat), and its pod is kept
    again = world.allocator.allocate(AllocationRequest(POOL, "before", TaskType.PLAN_AND_APPLY))
    assert (again.pod, again.created) == (f"{POOL}-a", False)
    world.autoscaler.run(POOL)
    assert world.cluster_names() == {f"{POOL}-a"}


@pytest.mark.parametrize("annotation", ["²", "20000", "0", "abc"])
def test_reconcile_adopts_a_pod_with_a_strange_slots_annotation_at_the_pools_slot_count(world: World, annotation: str):
    # Given a labelled orphan whose slots annotation podslots could not have written
    world.cluster_pod(f"{POOL}-odd", slots=annotation)
    # When reconcile runs
    (report,) = world.reconciler.run(POOL)
    # Then it is adopted with the pool's own slot count, and nothing failed
    assert report.adopted == [f"{POOL}-odd"]
    assert report.errors == []
    item = world.store.get_pod(POOL, f"{POOL}-odd")
    assert item is not None
    assert item.slot_count == 3


def test_two_overlapping_reconcile_runs_adopt_an_orphan_once_and_neither_fails(world: World):
    # Given a labelled orphan, and a second run that adopts it right after the first run's read
    world.cluster_pod(f"{POOL}-orphan", slots="3")
    other = Reconciler(world.store, world.reconciler.cluster_for, RecordingPublisher(), world.clock)
    world.store.after_next_read = lambda: other.run(POOL)
    # When the first run goes on
    (report,) = world.reconciler.run(POOL)
    # Then it does not claim the adoption, and reports no failure
    assert report.adopted == []
    assert report.errors == []
    assert [p.name for p in world.store.pods(POOL)] == [f"{POOL}-orphan"]


def test_one_pools_unreadable_settings_stop_no_other_pool(world: World):
    # Given a second pool with a due reservation, a waiting task and a pod to reconcile
    given_pool(world.store, "other", now=world.now(), max_pods=3)
    uid = world.cluster_pod("other-a", pool="other")
    world.store.put_pod(new_pod("other", "other-a", 3, world.now(), uid=uid))
    world.store.heartbeat("other", "other-a", [], None, world.now())
    world.allocator.allocate(AllocationRequest("other", "held", TaskType.PLAN_AND_APPLY))
    TaskStatusService(world.store, world.clock).set_status("held", TaskStatus.APPLY_PENDING)
    # and this pool's settings corrupted directly in the table (a document no version accepts)
    table = boto3.resource("dynamodb").Table(TABLE)
    for key in ({"pk": pool_pk(POOL), "sk": CONFIG_SK}, {"pk": REGISTRY_PK, "sk": pool_pk(POOL)}):
        table.update_item(
            Key=key, UpdateExpression="SET settings.slots_per_pod = :z", ExpressionAttributeValues={":z": 0}
        )
    world.clock.advance(86400 + 1)

    # When reconcile, autoscale and expire run over every pool
    reconciled = world.reconciler.run()
    scaled = world.autoscaler.run()
    expired = Expirer(world.store, world.bus, world.clock).run()

    # Then the other pool was reconciled, scaled and expired in the same runs
    assert [r.pool for r in reconciled] == ["other"]
    assert [r.pool for r in scaled] == ["other"]
    assert [(r.pool, r.expired) for r in expired] == [("other", ["held"])]
    # and the broken pool answers a clear 409, and a whole new document repairs it
    with pytest.raises(UnreadableSettings, match="cannot be read"):
        world.pools.get(POOL)
    assert not world.pools.put(POOL, PoolSettings.model_validate({"pod_template": {"image": "x"}}))
    assert world.pools.get(POOL).record.settings.slots_per_pod == 3


def test_a_step_that_fails_in_one_pool_is_recorded_there_and_the_run_goes_on(world: World):
    # Given two pools, and a cluster gateway that fails for the first one only
    given_pool(world.store, "second", now=world.now())

    def gateway_for(pool: Any) -> KubeGateway:
        if pool.name == POOL:
            raise RuntimeError("the kubeconfig secret is malformed")
        return KubeGateway(new_client_from_config_dict(world.kube.kubeconfig(NS)))

    reconciler = Reconciler(world.store, gateway_for, RecordingPublisher(), world.clock)
    # When reconcile runs over every pool
    reports = {r.pool: r for r in reconciler.run()}
    # Then the failure is that pool's only, and recorded in its history
    assert reports[POOL].errors
    assert not reports["second"].errors
    assert [e.kind for e in world.store.events(POOL, 10)].count("PoolStepFailed") == 1


# ---- retries that meet their own writes (a lost answer), on moto's server with the fault injector


def test_a_pool_put_whose_answer_was_lost_is_still_a_creation(server: MotoServer, clock: ManualClock):
    store = SlotStore()
    server.dispatcher.faults.next("TransactWriteItems", Fault.ANSWER_LOST)
    created = PoolService(store, clock).put("fresh", PoolSettings.model_validate({"pod_template": {"image": "x"}}))
    assert created
    assert server.dispatcher.faults.injected[Fault.ANSWER_LOST] == 1


def test_a_pod_put_and_a_drain_whose_answers_were_lost_report_success(server: MotoServer, clock: ManualClock):
    store = SlotStore()
    given_pool(store, POOL)
    server.dispatcher.faults.next("TransactWriteItems", Fault.ANSWER_LOST)  # the pod put bumps the pool's count
    assert store.put_pod(new_pod(POOL, f"{POOL}-a", 3, int(clock.now()), uid="u-a"))
    assert store.pool_state(POOL).pod_puts == 1  # type: ignore[union-attr]  # counted once, not per try
    store.heartbeat(POOL, f"{POOL}-a", [], None, int(clock.now()))
    server.dispatcher.faults.next("UpdateItem", Fault.ANSWER_LOST)
    assert store.start_draining(POOL, f"{POOL}-a", (PodState.READY,))
    assert server.dispatcher.faults.injected[Fault.ANSWER_LOST] == 2


def test_a_status_report_rides_out_transaction_conflicts(server: MotoServer, clock: ManualClock):
    # Given a running task, and a table that cancels the next six transactions for a conflict
    store = SlotStore()
    given_pool(store, POOL)
    store.put_pod(new_pod(POOL, f"{POOL}-a", 3, int(clock.now()), uid="u-a"))
    store.heartbeat(POOL, f"{POOL}-a", [], None, int(clock.now()))
    Allocator(store, RecordingPublisher(), clock).allocate(AllocationRequest(POOL, "t", TaskType.PLAN))
    server.dispatcher.faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, times=6)
    # When the task reports success, Then it ends and its slot is free
    change = TaskStatusService(store, clock, sleep=lambda _s: None).set_status("t", TaskStatus.SUCCESS)
    assert change.changed
    pod = store.get_pod(POOL, f"{POOL}-a")
    assert pod is not None
    assert pod.busy == 0
