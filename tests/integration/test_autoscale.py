"""Autoscale and expiry on moto and the Kubernetes API stand-in: the promise that no running or
reserved task is ever killed by a scale-down, and that the pool is no larger than its work needs."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from kubernetes.config import new_client_from_config_dict

from local.apigw import load_event
from local.kube_api import KubeApiStandIn
from podslots.allocation import AllocationRequest, Allocator
from podslots.autoscale import Autoscaler
from podslots.bus import EventBridgePublisher, RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.errors import NoCapacity
from podslots.expiry import Expirer
from podslots.model import PodState, Task, TaskStatus, TaskType, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL
from podslots.reconcile import Reconciler
from podslots.store import SlotStore
from podslots.tasks import TaskStatusService
from tests.conftest import BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.handlers import wired_autoscale_handler
from tests.support.pods import given_pool

NS, POOL = "agents", "terraform"


class Pool:
    """A pool under autoscale: the store, the stand-in cluster and agents that come up when told."""

    def __init__(self, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> None:
        self.store, self.kube, self.clock = store, kube, clock
        self.bus = RecordingPublisher()
        self.gateway = gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        self.autoscaler = Autoscaler(store, lambda pool: gateway, self.bus, clock, "https://api.example/v1")
        self.allocator = Allocator(store, self.bus, clock)
        self.tasks = TaskStatusService(store, clock)

    def scale(self) -> dict[str, Any]:
        (report,) = self.autoscaler.run(POOL)
        return report.summary()

    def agents_start(self) -> list[str]:
        """Every created pod runs and its agent sends its first beat."""
        started = []
        for pod in self.kube.pods(NS):
            name = pod["metadata"]["name"]
            item = self.store.get_pod(POOL, name)
            if item is not None and item.state is PodState.STARTING:
                self.kube.set_phase(NS, name, "Running")
                self.store.heartbeat(POOL, name, [], "10.0.0.1", int(self.clock.now()))
                started.append(name)
        return started

    def ready_pod(self, name: str, slots: int = 3) -> str:
        created = self.kube.add_pod(
            NS,
            {
                "metadata": {"name": name, "labels": {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY}},
                "spec": {"containers": [{"name": "agent", "image": "x"}]},
                "status": {"phase": "Running"},
            },
        )
        now = int(self.clock.now())
        self.store.put_pod(new_pod(POOL, name, slots, now, uid=created["metadata"]["uid"]))
        self.store.heartbeat(POOL, name, [], "10.0.0.1", now)
        return name

    def task_on(self, pod: str, task_id: str, slot: str = "s0") -> None:
        """Place a task on a chosen pod (the given of the one-task-per-pod scenario)."""
        item = self.store.get_pod(POOL, pod)
        assert item is not None
        task = Task(task_id, POOL, TaskType.PLAN, TaskStatus.RUNNING)
        self.store.allocate(task, item, slot, None, int(self.clock.now()))

    def allocate(self, task_id: str, kind: TaskType = TaskType.PLAN) -> tuple[str, str]:
        done = self.allocator.allocate(AllocationRequest(POOL, task_id, kind))
        return done.pod, done.slot

    def pod_names(self) -> set[str]:
        return {p.name for p in self.store.pods(POOL)} | {p["metadata"]["name"] for p in self.kube.pods(NS)}


@pytest.fixture
def pool(store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> Pool:
    given_pool(
        store,
        POOL,
        now=int(clock.now()),
        min_pods=0,
        max_pods=10,
        scale_down_delay_s=0,
        slots_per_pod=6,
        headroom_pods=0,
    )
    return Pool(store, kube, clock)


def test_scale_down_spares_every_pod_that_holds_a_task(pool: Pool):
    # Given three pods with one task each: 3 of 18 slots, utilization 17%, below 20%
    pods = [pool.ready_pod(f"{POOL}-{i}", slots=6) for i in range(3)]
    for i, pod in enumerate(pods):
        pool.task_on(pod, f"t{i}")
    # When autoscale wants to scale down (to ceil(3 / (6 x 0.5)) = 1 pod)
    report = pool.scale()
    # Then no pod is deleted: the step is recorded as blocked instead (not as a `PoolScaled` 3 -> 3)
    assert report["direction"] == "down"
    assert report["blocked"] == 2
    assert "removed" not in report
    assert pool.pod_names() == set(pods)
    blocked = [e for e in pool.store.events(POOL, 10) if e.kind == "ScaleBlocked"]
    assert blocked[0].detail["blocked"] == 2
    assert pool.bus.of("ScaleBlocked")[0]["blocked"] == 2
    assert [e for e in pool.store.events(POOL, 10) if e.kind == "PoolScaled"] == pool.bus.of("PoolScaled") == []


def test_scale_down_removes_only_the_idle_pod(pool: Pool):
    busy = [pool.ready_pod(f"{POOL}-{i}", slots=6) for i in range(3)]
    for i, pod in enumerate(busy):
        pool.task_on(pod, f"t{i}")
    idle = pool.ready_pod(f"{POOL}-idle", slots=6)
    report = pool.scale()
    assert report["removed"] == [idle]
    assert pool.pod_names() == set(busy)
    assert pool.kube.pod(NS, idle) is None


def test_a_reserved_plan_keeps_its_pod_through_30_minutes_of_low_load(pool: Pool):
    # Given a plan_and_apply whose plan is done and waits for approval, on the only busy pod
    pods = [pool.ready_pod(f"{POOL}-{i}", slots=6) for i in range(3)]
    holder, slot = pool.allocate("plan-1", TaskType.PLAN_AND_APPLY)
    pool.tasks.set_status("plan-1", TaskStatus.APPLY_PENDING)
    # When autoscale runs every minute for 30 minutes of low utilization
    for _ in range(30):
        pool.clock.advance(60)
        pool.scale()
    # Then the idle pods went, and the pod holding the reservation stayed
    assert pool.pod_names() == {holder}
    assert all(pool.kube.pod(NS, p) is None for p in pods if p != holder)
    # And the approved apply lands on the same pod and slot
    assert pool.allocate("plan-1", TaskType.PLAN_AND_APPLY) == (holder, slot)
    # After the end, the pod may go
    pool.tasks.set_status("plan-1", TaskStatus.APPLIED)
    pool.clock.advance(60)
    assert pool.scale()["removed"] == [holder]
    assert pool.pod_names() == set()


def test_cold_start_through_the_api_the_bus_and_the_autoscale_handler(
    api: Api, store: SlotStore, bus: BusTap, kube: KubeApiStandIn, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
):
    # Given an empty pool, and autoscale wired to the stand-in through its kubeconfig secret
    given_pool(store, POOL, now=int(clock.now()), min_pods=0, headroom_pods=0)
    handler = wired_autoscale_handler(kube, NS, clock, monkeypatch)
    # When a task is dispatched: 503, and a CapacityShortage on the bus
    first = api.allocate(POOL, "run-1")
    assert first.status == 503
    (shortage,) = bus.events("CapacityShortage")
    # And EventBridge delivers that event to autoscale
    result = handler.lambda_handler(shortage, LambdaContext())
    # Then a pod is created at once, in the cluster, starting
    (scaled,) = result["pools"]
    assert scaled["direction"] == "up"
    assert scaled["reason"].startswith("cold start")
    (created,) = scaled["created"]
    assert kube.pod(NS, created) is not None
    manifest_env = {e["name"]: e.get("value") for e in kube.pod(NS, created)["spec"]["containers"][0]["env"]}  # type: ignore[index]
    assert manifest_env["PODSLOTS_POOL"] == POOL
    # And the agent's first beat (through the API) makes it ready; the retried dispatch lands there
    assert api.beat(POOL, created, pod_ip="10.0.3.4").body["state"] == "ready"
    clock.advance(10)
    retried = api.allocate(POOL, "run-1")
    assert (retried.status, retried.body["pod"]) == (201, created)


def test_the_events_file_of_a_shortage_parses_as_autoscale_expects():
    from podslots.triggers import trigger_pool

    assert trigger_pool(load_event("capacity_shortage.json")) == POOL
    assert trigger_pool(load_event("autoscale_schedule.json")) is None


def test_a_failed_create_removes_the_item_records_it_and_the_next_run_converges(pool: Pool):
    pool.store.record_waiting(Task("w-1", POOL, TaskType.PLAN, TaskStatus.PENDING), int(pool.clock.now()), 60)
    pool.kube.fail_next(500, verb="create")
    report = pool.scale()
    assert report["errors"]
    assert pool.store.pods(POOL) == []
    assert any(e.kind == "PodCreateFailed" for e in pool.store.events(POOL, 10))
    pool.clock.advance(60)
    assert len(pool.scale()["created"]) == 1
    assert len(pool.kube.pods(NS)) == len(pool.store.pods(POOL)) == 1


def test_a_failed_delete_leaves_the_pod_draining_and_reconcile_finishes_it(pool: Pool):
    idle = pool.ready_pod(f"{POOL}-idle", slots=6)
    pool.kube.fail_next(500, verb="delete")
    report = pool.scale()
    assert report["removed"] == [idle]
    item = pool.store.get_pod(POOL, idle)
    assert item is not None
    assert item.state is PodState.DRAINING
    # Nothing can be allocated onto it meanwhile
    with pytest.raises(NoCapacity):
        pool.allocate("t1")
    # And reconcile retries the delete, then removes the item
    reconciler = Reconciler(pool.store, lambda _: pool.gateway, pool.bus, pool.clock)
    reconciler.run(POOL)
    assert pool.kube.pod(NS, idle) is None
    reconciler.run(POOL)
    assert pool.store.get_pod(POOL, idle) is None


def test_a_run_that_died_holding_the_lease_blocks_others_only_until_it_expires(pool: Pool):
    pool.ready_pod(f"{POOL}-idle", slots=6)
    assert pool.store.acquire_lease(POOL, "crashed-run", int(pool.clock.now()), 120) is not None
    assert pool.scale()["skipped"] == "another run holds the lease"
    pool.clock.advance(121)
    assert pool.scale()["removed"] == [f"{POOL}-idle"]


def test_demand_drops_tasks_that_got_a_slot_or_stopped_asking(pool: Pool):
    now = int(pool.clock.now())
    for t in ("asks", "stopped"):
        pool.store.record_waiting(Task(t, POOL, TaskType.PLAN, TaskStatus.PENDING), now, 60)
    pool.clock.advance(301)
    pool.store.record_waiting(Task("asks", POOL, TaskType.PLAN, TaskStatus.PENDING), int(pool.clock.now()), 60)
    report = pool.scale()
    assert report["reason"].startswith("cold start")
    assert len(report["created"]) == 1  # for the one task still asking, not two
    assert [t.task_id for t in pool.store.waiting(POOL)] == ["asks"]
    pool.agents_start()
    pool.allocate("asks")
    assert pool.store.waiting(POOL) == []


def test_a_deleted_pool_drains_its_idle_pods_and_goes_with_the_last(pool: Pool):
    busy, idle = pool.ready_pod(f"{POOL}-busy", slots=6), pool.ready_pod(f"{POOL}-idle", slots=6)
    pool.task_on(busy, "t1")
    pool.store.mark_pool_deleting(POOL, int(pool.clock.now()))
    assert pool.scale()["removed"] == [idle]
    assert pool.pod_names() == {busy}
    pool.tasks.set_status("t1", TaskStatus.SUCCESS)
    pool.scale()
    assert pool.pod_names() == set()
    assert pool.store.get_pool(POOL) is None


def test_a_deleted_pools_disruption_budget_goes_with_it_and_not_before(pool: Pool):
    # Given the pool's budget (reconcile made it for a busy pod) and that busy pod, in a deleting pool
    busy = pool.ready_pod(f"{POOL}-busy", slots=6)
    pool.task_on(busy, "t1")
    pool.gateway.ensure_disruption_budget(NS, POOL, now=pool.clock.now())
    pool.store.mark_pool_deleting(POOL, int(pool.clock.now()))
    # When autoscale runs while the pod is busy, then the budget stays: a drain still waits for it
    pool.scale()
    assert [b["metadata"]["name"] for b in pool.kube.budgets(NS)] == [f"podslots-{POOL}"]
    # When the task ends and the budget's delete fails once, then the pool waits for the next run
    pool.tasks.set_status("t1", TaskStatus.SUCCESS)
    pool.kube.fail_next(500, verb="budget-delete")
    pool.scale()
    assert pool.store.get_pool(POOL) is not None
    # And the next run deletes the budget, then the pool
    pool.scale()
    assert pool.kube.budgets(NS) == []
    assert pool.store.get_pool(POOL) is None


# ---- expiry -------------------------------------------------------------------------------------


def test_a_reservation_expires_at_its_deadline_and_not_a_second_before(pool: Pool):
    pod = pool.ready_pod(f"{POOL}-a", slots=6)
    pool.allocate("plan-1", TaskType.PLAN_AND_APPLY)
    change = pool.tasks.set_status("plan-1", TaskStatus.APPLY_PENDING)
    deadline = change.task.reserved_until
    assert deadline is not None
    expirer = Expirer(pool.store, pool.bus, pool.clock)
    pool.clock.set(deadline - 1)
    assert expirer.run(POOL)[0].expired == []
    pool.clock.set(deadline)
    assert expirer.run(POOL)[0].expired == ["plan-1"]
    assert pool.store.get_task("plan-1").status is TaskStatus.EXPIRED  # type: ignore[union-attr]
    assert pool.store.get_pod(POOL, pod).busy == 0  # type: ignore[union-attr]
    (event,) = pool.bus.of("ReservationExpired")
    assert (event["task_id"], event["reserved_until"]) == ("plan-1", deadline)
    # And the queue may dispatch it again (a new allocation)
    assert pool.allocator.allocate(AllocationRequest(POOL, "plan-1", TaskType.PLAN_AND_APPLY)).created


def test_a_resumed_task_is_never_expired(pool: Pool):
    pool.ready_pod(f"{POOL}-a", slots=6)
    pool.allocate("plan-1", TaskType.PLAN_AND_APPLY)
    deadline = pool.tasks.set_status("plan-1", TaskStatus.APPLY_PENDING).task.reserved_until
    assert deadline is not None
    pool.allocate("plan-1", TaskType.PLAN_AND_APPLY)  # approved: resumed
    pool.clock.set(deadline + 3600)
    assert Expirer(pool.store, pool.bus, pool.clock).run(POOL)[0].expired == []
    assert pool.store.get_task("plan-1").status is TaskStatus.RUNNING  # type: ignore[union-attr]


def test_the_expire_handler_runs_on_its_schedule_event(store: SlotStore, bus: BusTap, clock: ManualClock):
    given_pool(store, POOL)
    handler = importlib.import_module("functions.expire.app")
    handler.expirer.clock = clock
    handler.expirer.bus = EventBridgePublisher()
    result = handler.lambda_handler(load_event("expire_schedule.json"), LambdaContext())
    assert result == {"pools": [{"pool": POOL, "expired": []}]}
