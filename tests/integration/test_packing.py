"""Issue 19, the packing rule: the pool sized to its packed work plus headroom, a blocked step down
recorded once, and placement that keeps the tasks that pin a pod together. Through the real
handlers (functions/autoscale/app.py, the allocate route), on moto and the Kubernetes API stand-in."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from local.kube_api import KubeApiStandIn
from podslots.clock import ManualClock
from podslots.model import Task, TaskStatus, TaskType, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL
from podslots.store import SlotStore
from tests.conftest import BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.handlers import wired_autoscale_handler
from tests.support.pods import given_pool

NS, POOL = "agents", "terraform"
SCHEDULE: dict[str, Any] = {}  # the schedule's Input (events/autoscale_schedule.json): every pool


@pytest.fixture
def autoscale(
    api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """The autoscale handler, wired to the stand-in through its kubeconfig secret and the test's clock."""
    return wired_autoscale_handler(kube, NS, clock, monkeypatch)


def run(handler: ModuleType) -> dict[str, Any]:
    (report,) = handler.lambda_handler(SCHEDULE, LambdaContext())["pools"]
    return dict(report)


def ready_pod(store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, name: str, slots: int = 3) -> str:
    """A running pod of the pool, in the cluster and the table, whose agent has beaten."""
    created = kube.add_pod(
        NS,
        {
            "metadata": {"name": name, "labels": {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY}},
            "spec": {"containers": [{"name": "agent", "image": "x"}]},
            "status": {"phase": "Running"},
        },
    )
    now = int(clock.now())
    pod = new_pod(POOL, name, slots, now, uid=created["metadata"]["uid"])
    store.put_pod(pod)
    store.observe_pod(pod, pod.uid, "10.0.0.1")
    store.heartbeat(POOL, name, [], "10.0.0.1", now)
    return name


def task_on(store: SlotStore, clock: ManualClock, pod: str, task_id: str, slot: str, kind: TaskType) -> None:
    """A task already running on a chosen pod (the given of a placement)."""
    item = store.get_pod(POOL, pod)
    assert item is not None
    store.allocate(Task(task_id, POOL, kind, TaskStatus.RUNNING), item, slot, None, int(clock.now()))


def test_a_pool_that_names_no_rule_keeps_one_pod_of_headroom_beyond_its_packed_work(
    autoscale: ModuleType, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given a pool put without a scaling rule (packed, one pod of headroom), five idle pods and
    # four tasks on two of them
    given_pool(store, POOL, now=int(clock.now()), scale_down_delay_s=0)
    pods = [ready_pod(store, kube, clock, f"{POOL}-{i}") for i in range(5)]
    for n, slot in enumerate(("s0", "s1", "s2")):
        task_on(store, clock, pods[0], f"t{n}", slot, TaskType.PLAN)
    task_on(store, clock, pods[1], "t3", "s0", TaskType.PLAN)
    # When autoscale runs
    report = run(autoscale)
    # Then the pool keeps ceil(4 / 3) + 1 = 3 pods: the two busy ones and one idle
    assert (report["direction"], report["after"]) == ("down", 3)
    assert len(report["removed"]) == 2
    assert {pods[0], pods[1]} <= {p.name for p in store.pods(POOL)}


def test_a_blocked_scale_down_is_recorded_once_not_every_minute(
    autoscale: ModuleType, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, bus: BusTap
):
    # Given three pods, each holding one task: the rule wants 2 pods, and none can be drained
    given_pool(store, POOL, now=int(clock.now()), scale_down_delay_s=0)
    pods = [ready_pod(store, kube, clock, f"{POOL}-{i}") for i in range(3)]
    for i, pod in enumerate(pods):
        task_on(store, clock, pod, f"t{i}", "s0", TaskType.PLAN)
    # When autoscale runs every minute for 30 minutes
    reports = []
    for _ in range(30):
        reports.append(run(autoscale))
        clock.advance(60)
    # Then every run reports the block (the ScaleDownBlocked metric counts it every minute)
    assert all(r["blocked"] == 1 for r in reports)
    # But the history and the bus carry it once, as a blocked step (no `PoolScaled` down: 3 -> 3)
    scaled = [e for e in store.events(POOL, 100) if e.kind == "ScaleBlocked"]
    assert [(e.detail["direction"], e.detail["blocked"]) for e in scaled] == [("down", 1)]
    assert [e["detail"]["blocked"] for e in bus.events("ScaleBlocked")] == [1]
    assert bus.events("PoolScaled") == []
    # And when the block changes (a fourth busy pod: 4 pods for a target of 3), it is recorded again, once
    task_on(store, clock, ready_pod(store, kube, clock, f"{POOL}-3"), "t3", "s0", TaskType.PLAN)
    run(autoscale)
    clock.advance(60)
    run(autoscale)
    scaled = [e for e in store.events(POOL, 100) if e.kind == "ScaleBlocked"]
    assert sorted((e.detail["before"], e.detail["blocked"]) for e in scaled) == [(3, 1), (4, 1)]


def test_a_plan_and_apply_joins_the_pod_already_pinned_rather_than_the_fullest(
    api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given a pod pinned by a plan waiting for approval, and a fuller pod running short plans
    given_pool(store, POOL, now=int(clock.now()))
    pinned, busy = (ready_pod(store, kube, clock, name) for name in ("pinned", "busy"))
    ready_pod(store, kube, clock, "empty")
    task_on(store, clock, pinned, "pa-1", "s0", TaskType.PLAN_AND_APPLY)
    assert api.status("pa-1", "apply_pending").status == 200
    task_on(store, clock, busy, "p-1", "s0", TaskType.PLAN)
    task_on(store, clock, busy, "p-2", "s1", TaskType.PLAN)
    # When another plan_and_apply is dispatched
    answer = api.allocate(POOL, "pa-2", "plan_and_apply")
    # Then it goes to the pinned pod: reservations stay together
    assert (answer.status, answer.body["pod"]) == (201, pinned)


def test_a_short_task_stays_off_the_pinned_pod_but_never_opens_an_empty_one(
    api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given a fuller pod pinned by two plan_and_apply tasks, a pod with one plan, and an empty pod
    given_pool(store, POOL, now=int(clock.now()))
    pinned, light = (ready_pod(store, kube, clock, name) for name in ("pinned", "light"))
    ready_pod(store, kube, clock, "empty")
    task_on(store, clock, pinned, "pa-1", "s0", TaskType.PLAN_AND_APPLY)
    task_on(store, clock, pinned, "pa-2", "s1", TaskType.PLAN_AND_APPLY)
    task_on(store, clock, light, "p-1", "s0", TaskType.PLAN)
    # When two plans are dispatched
    first, second = api.allocate(POOL, "p-2"), api.allocate(POOL, "p-3")
    # Then both go to the unpinned pod that is already used, never to the empty one
    assert [first.body["pod"], second.body["pod"]] == [light, light]


def test_three_plan_and_apply_tasks_on_an_empty_pool_share_one_pod(
    api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given three idle three-slot pods
    given_pool(store, POOL, now=int(clock.now()))
    for name in ("a", "b", "c"):
        ready_pod(store, kube, clock, name)
    # When three plan_and_apply tasks are dispatched one after another
    pods = {api.allocate(POOL, f"pa-{n}", "plan_and_apply").body["pod"] for n in range(3)}
    # Then they share one pod
    assert len(pods) == 1
