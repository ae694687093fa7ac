"""A hypothesis state machine over the store and the steps, on moto, with a controlled clock.

Any sequence of allocate, reserve, resume, release, drain, heartbeat, time passing, a pod lost
(reconcile), a leaked slot freed (reconcile), reservations expiring (expire) and autoscale's
scaling step keeps every invariant of docs/architecture.md ("Invariants"), checked against the
whole table after each step; repeating a call gives the same answer and changes nothing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock

import boto3
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from local.template import table_definition
from podslots import autoscale
from podslots.allocation import AllocationRequest, Allocator
from podslots.autoscale import DEMAND_WINDOW_S, Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster_pods import ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.expiry import Expirer
from podslots.heartbeat import HeartbeatService
from podslots.model import Cordon, PodState, TaskStatus, TaskType, new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL
from podslots.observability import metrics
from podslots.pools import PoolService
from podslots.settings import PoolSettings, template_revision
from podslots.store import SlotStore, StoreConflict, bind_table
from podslots.store.keys import POD_PREFIX, TASK_SK
from podslots.tasks import TaskStatusService
from tests.conftest import TABLE
from tests.support.pods import given_pool

pytestmark = pytest.mark.slow

POOL = "machine"
TASKS = [f"t{i}" for i in range(8)]
PODS = [f"{POOL}-{i}" for i in range(3)]
ENDS = [TaskStatus.SUCCESS, TaskStatus.APPLIED, TaskStatus.FAILED, TaskStatus.CANCELLED]
IMAGES = ["registry.example/tf-agent:1.9", "registry.example/tf-agent:1.10"]  # a template change rolls
REVISIONS = [template_revision(PoolSettings.model_validate({"pod_template": {"image": i}})) for i in IMAGES]
# Each task id keeps one type, as a queue would; half of them are plan_and_apply.
KIND = {
    t: [TaskType.PLAN_AND_APPLY, TaskType.PLAN, TaskType.PLAN_AND_APPLY, TaskType.APPLY][i % 4]
    for i, t in enumerate(TASKS)
}


def pool_labels(pool: str) -> dict[str, str]:
    return {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY}


class InMemoryCluster:
    """The `Cluster` protocol over a dict of pods, for autoscale in the machine.

    Its delete is where scale-down's promise would break, so it checks it there: the table must
    show the pod draining and holding nothing at the moment its delete is sent.
    """

    def __init__(self, store: SlotStore) -> None:
        self.store = store
        self.pods: dict[str, ClusterPod] = {}

    def add(self, name: str, uid: str, phase: str = "Running") -> ClusterPod:
        self.pods[name] = ClusterPod(name, uid, phase, None, False, 0.0, labels=pool_labels(POOL))
        return self.pods[name]

    def list_pool_pods(
        self, namespace: str, pool: str, adopt_selector: Mapping[str, str] | None = None
    ) -> list[ClusterPod]:
        return list(self.pods.values())

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> ClusterPod:
        name = manifest["metadata"]["name"]
        return self.add(name, f"uid-{name}", "Pending")

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        item = self.store.get_pod(POOL, name)
        assert item is not None, f"{name}: deleted without an item"
        assert item.state is PodState.DRAINING, f"{name}: deleted while {item.state.value}"
        assert item.busy == 0, f"{name}: deleted while holding {item.busy} task(s)"
        pod = self.pods.get(name)
        if pod is None:
            return False
        if pod.uid != uid:
            raise ClusterError("delete pod", "uid precondition failed", 409)
        del self.pods[name]
        return True

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Annotations are not part of what this machine checks."""

    def patch_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> None:
        """Labels and annotations are not part of what this machine checks."""

    def ensure_disruption_budget(self, namespace: str, pool: str, now: float) -> bool:
        return False  # the machine has no evictions: budgets are the stand-in's tests' business

    def delete_disruption_budget(self, namespace: str, pool: str) -> bool:
        return False

    def claim_pod(self, namespace: str, pod: ClusterPod, pool: str) -> bool:
        """Every pod here carries the pool's label, which is its claim: none is ever claimed again."""
        raise AssertionError(f"{pod.name}: a pod labelled as the pool's was claimed")


class SlotLifeCycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        self.backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
        bind_table(TABLE)
        self.clock = ManualClock()
        self.store = SlotStore()
        self.bus = RecordingPublisher()
        self.allocator = Allocator(self.store, self.bus, self.clock)
        self.tasks = TaskStatusService(self.store, self.clock)
        self.agents = HeartbeatService(self.store, self.clock)
        self.cluster = InMemoryCluster(self.store)
        self.autoscaler = Autoscaler(self.store, lambda _: self.cluster, self.bus, self.clock, "https://api.example/v1")
        self.expirer = Expirer(self.store, self.bus, self.clock)
        self.pools = PoolService(self.store, self.clock)
        self.image = 0
        # Scale-up's pod names are random; the machine's are numbered, so a failure replays.
        numbered = (f"{POOL}-up{i}" for i in itertools.count())
        self.names = mock.patch.object(autoscale, "new_pod_name", side_effect=lambda pool: next(numbered))
        self.names.start()
        self.created_pods: list[str] = []
        self.draining: list[str] = []
        self.dispatched: list[str] = []
        self.forgotten: set[str] = set()  # pending tasks autoscale dropped from the demand
        self.event_ids = itertools.count()

    def teardown(self) -> None:
        self.names.stop()
        metrics.clear_metrics()
        self.mock.stop()

    def _now(self) -> int:
        return int(self.clock.now())

    def _event_id(self) -> str:
        return f"e{next(self.event_ids)}"

    def _outcome(self, call):
        try:
            return ("ok", call())
        except PodSlotsError as exc:
            return (type(exc).__name__, exc.message)

    def _snapshot(self, only: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
        """The whole table (the test's view; the code under test never scans), or the items whose
        sort key passes `only`, as DynamoDB JSON, by key. Read from moto's own table, not through a
        Scan: the items are the same, and writing out a Scan's answer was half the machine's time.
        The table is looked up each time: a cancelled transaction puts back a copy of the tables."""
        items = [item.to_json()["Attributes"] for item in self.backend.get_table(TABLE).all_items()]
        if only is not None:
            items = [i for i in items if only(i["sk"]["S"])]
        return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))

    def _tasks_in_table(self) -> dict[str, dict[str, Any]]:
        tasks = self._snapshot(lambda sk: sk == TASK_SK)
        return {i["task_id"]["S"]: i for i in tasks}

    def _twice(self, call):
        """Do it, then do it again: the second answer equals the first and changes nothing."""
        first = self._outcome(call)
        after_first = self._snapshot()
        second = self._outcome(call)
        if first[0] == "ok" and hasattr(first[1], "created"):
            # A repeated allocation answers 200 with the same slot instead of 201.
            assert second[0] == "ok"
            assert (second[1].pod, second[1].slot) == (first[1].pod, first[1].slot)
        elif first[0] == "ok" and hasattr(first[1], "changed"):
            assert second[0] == "ok"
            assert second[1].task.status is first[1].task.status
            assert second[1].changed is False
        elif first[0] == "ok" and hasattr(first[1], "slots"):
            assert second[0] == "ok"
            assert second[1].slots == first[1].slots
        elif first[0] != "NoCapacity":  # a 503 repeats as a 503, and may record time waited
            assert second[0] == first[0]
        if first[0] != "NoCapacity":
            assert self._snapshot() == after_first
        return first

    def _retry_conflicts_and_changes_nothing(self, call) -> None:
        """A retry of a write that already happened (a run that crashed after it) is refused whole."""
        before = self._snapshot()
        with pytest.raises(StoreConflict):
            call()
        assert self._snapshot() == before

    @initialize()
    def a_pool_with_one_ready_pod(self) -> None:
        # Reservations short enough that steps of time passing cross them; autoscale steps down
        # whenever half the capacity is idle, so its drains happen often among a few small pods
        self._settings()
        self.a_pod_starts(PODS[0], 2, None)
        self.agents.beat(POOL, PODS[0], [], None)

    def _settings(self) -> None:
        given_pool(
            self.store,
            POOL,
            now=self._now(),
            reservation_ttl_s=3600,
            scale_down_delay_s=0,
            scale_down_utilization=0.5,
            pod_template={"image": IMAGES[self.image]},
        )

    @rule(pod=st.sampled_from(PODS), slots=st.integers(1, 3), revision=st.sampled_from([None, *REVISIONS]))
    def a_pod_starts(self, pod: str, slots: int, revision: str | None) -> None:
        if pod in self.created_pods:
            return
        self.store.put_pod(new_pod(POOL, pod, slots, self._now(), uid=f"uid-{pod}", revision=revision))
        self.cluster.add(pod, f"uid-{pod}")
        self.created_pods.append(pod)

    @precondition(lambda self: bool(self.created_pods))
    @rule(data=st.data())
    def an_agent_beats(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(self.created_pods))
        held = data.draw(st.lists(st.sampled_from(TASKS), max_size=3))
        self._twice(lambda: self.agents.beat(POOL, pod, held, "10.1.2.3"))

    @rule(task=st.sampled_from(TASKS))
    def dispatch(self, task: str) -> None:
        closed = {p.name for p in self.store.pods(POOL) if not p.takes_tasks}
        outcome = self._twice(lambda: self.allocator.allocate(AllocationRequest(POOL, task, KIND[task])))
        if outcome[0] == "ok" and outcome[1].created:
            # a new task never lands on a pod that was cordoned, draining or not ready before
            assert outcome[1].pod not in closed, f"{task} placed on closed pod {outcome[1].pod}"
        self.forgotten.discard(task)  # it asked again (or got a slot)
        if task not in self.dispatched:
            self.dispatched.append(task)

    @precondition(lambda self: bool(self.dispatched))
    @rule(data=st.data())
    def plan_waits_for_approval(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.dispatched))
        self._twice(lambda: self.tasks.set_status(task, TaskStatus.APPLY_PENDING))

    @precondition(lambda self: bool(self.dispatched))
    @rule(data=st.data())
    def approval_resumes(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self.dispatched))
        self._twice(lambda: self.tasks.set_status(task, TaskStatus.RUNNING))

    @precondition(lambda self: bool(self.dispatched))
    @rule(data=st.data(), end=st.sampled_from(ENDS))
    def task_ends(self, data: st.DataObject, end: TaskStatus) -> None:
        task = data.draw(st.sampled_from(self.dispatched))
        self._twice(lambda: self.tasks.set_status(task, end))

    @precondition(lambda self: bool(self.created_pods))
    @rule(data=st.data())
    def scale_down_drains_a_pod(self, data: st.DataObject) -> None:
        """The drain protocol's first write, left in place so later steps meet a draining pod."""
        pod = data.draw(st.sampled_from(self.created_pods))
        before = self.store.get_pod(POOL, pod)
        assert before is not None
        drained = self.store.start_draining(POOL, pod, (PodState.READY, PodState.UNHEALTHY))
        if before.busy > 0:
            assert not drained, "a busy pod must never start draining"
        if drained:
            assert self.store.get_pod(POOL, pod).busy == 0  # type: ignore[union-attr]
            if pod not in self.draining:
                self.draining.append(pod)

    @precondition(lambda self: bool(self.draining))
    @rule(data=st.data())
    def a_drained_pod_is_deleted_and_its_item_removed(self, data: st.DataObject) -> None:
        """The drain protocol's end: the delete (the cluster checks it is idle), then the item."""
        pod = data.draw(st.sampled_from(self.draining))
        assert self.cluster.delete_pod("agents", pod, f"uid-{pod}")
        self.store.remove_drained_pod(POOL, pod)
        self.store.remove_drained_pod(POOL, pod)  # idempotent: a retry is harmless
        assert self.store.get_pod(POOL, pod) is None
        self.draining.remove(pod)
        self.created_pods.remove(pod)

    @precondition(lambda self: bool(self.created_pods))
    @rule(data=st.data())
    def an_operator_cordons_a_pod(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(self.created_pods))
        before = self.store.get_pod(POOL, pod)
        assert before is not None
        first = self.pools.cordon(POOL, pod)
        if before.state is PodState.DRAINING and not before.cordon_reasons:
            # a draining pod is already out of service: answered as it is, nothing written
            assert (first.changed, first.pod) == (False, before)
        else:
            assert first.pod.cordoned is not None
        after = self._snapshot()
        again = self.pools.cordon(POOL, pod)
        # a repeat changes nothing
        assert again.changed is False
        assert self._snapshot() == after

    @precondition(lambda self: bool(self.created_pods))
    @rule(data=st.data())
    def an_operator_takes_a_cordon_back(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(self.created_pods))
        before = self.store.get_pod(POOL, pod)
        assert before is not None
        outcome = self._outcome(lambda: self.pools.uncordon(POOL, pod))
        if before.cordoned not in (None, Cordon.OPERATOR) or before.state is PodState.DRAINING:
            # only an operator's cordon is taken back, and never from a draining pod
            assert outcome[0] == "Conflict", outcome
            assert self.store.get_pod(POOL, pod) == before
        else:
            assert outcome[0] == "ok"
            assert outcome[1].pod.cordoned is None

    @rule()
    def the_template_changes(self) -> None:
        """A new image: every pod of the other revision is outdated, and autoscale rolls them."""
        self.image = 1 - self.image
        self._settings()

    @rule()
    def autoscale_runs(self) -> None:
        """Autoscale's whole step (lease, demand, the rule, create or drain) on the in-memory cluster."""
        before = {p.name: p for p in self.store.pods(POOL)}
        waiting = {t for t, i in self._tasks_in_table().items() if "wait_since" in i}
        (report,) = self.autoscaler.run(POOL)
        assert report.errors == []
        after = {p.name: p for p in self.store.pods(POOL)}
        for name in report.retired:
            # a retired pod is outdated, and closed to new tasks
            assert before[name].outdated(REVISIONS[self.image])
            assert name not in after or after[name].cordoned is not None
        for name in report.removed:
            # only a pod that held nothing went, from the table and the cluster both
            assert before[name].busy == 0
            assert name not in after
            assert name not in self.cluster.pods
            self.created_pods.remove(name)
        for name in report.created:
            assert after[name].state is PodState.STARTING
            assert self.cluster.pods[name].uid == after[name].uid
            self.created_pods.append(name)
        tasks = self._tasks_in_table()
        for task_id in waiting - {t for t, i in tasks.items() if "wait_since" in i}:
            # a task leaves the demand only when it stopped asking; it stays pending
            assert tasks[task_id]["status"]["S"] == TaskStatus.PENDING.value
            assert self._now() - int(tasks[task_id]["updated_at"]["N"]) > DEMAND_WINDOW_S
            self.forgotten.add(task_id)

    @precondition(lambda self: any(p not in self.draining for p in self.created_pods))
    @rule(data=st.data())
    def a_pod_vanishes_and_reconcile_loses_it(self, data: st.DataObject) -> None:
        """Reconcile's `lose_pod` for a pod gone from the cluster (a draining one has its own path)."""
        pod = data.draw(st.sampled_from([p for p in self.created_pods if p not in self.draining]))
        item = self.store.get_pod(POOL, pod)
        assert item is not None
        held = {(key, slot.task_id) for key, slot in item.slots.items() if not slot.is_idle}
        del self.cluster.pods[pod]
        lost = self.store.lose_pod(item, "vanished", self._now(), self._event_id())
        # every task it held is lost, and its item is gone
        assert set(lost) == held
        for _, task_id in lost:
            assert self.store.get_task(task_id).status is TaskStatus.LOST  # type: ignore[union-attr]
        assert self.store.get_pod(POOL, pod) is None
        self.created_pods.remove(pod)
        # and a retry loses nothing twice
        self._retry_conflicts_and_changes_nothing(
            lambda: self.store.lose_pod(item, "vanished", self._now(), self._event_id())
        )

    @rule(data=st.data())
    def reconcile_frees_a_leaked_slot(self, data: st.DataObject) -> None:
        """Reconcile's `release_leaked` for a slot whose task the agent no longer holds."""
        held = [(p, k) for p in self.store.pods(POOL) for k, s in sorted(p.slots.items()) if not s.is_idle]
        if not held:
            return
        pod, key = data.draw(st.sampled_from(held))
        task_id = pod.slots[key].task_id
        assert task_id is not None
        self.store.release_leaked(pod, key, self._now(), self._event_id())
        # the task is lost and its slot idle, on a pod that keeps its other slots
        assert self.store.get_task(task_id).status is TaskStatus.LOST  # type: ignore[union-attr]
        assert self.store.get_pod(POOL, pod.name).slots[key].is_idle  # type: ignore[union-attr]
        self._retry_conflicts_and_changes_nothing(
            lambda: self.store.release_leaked(pod, key, self._now(), self._event_id())
        )

    @rule()
    def expiry_runs(self) -> None:
        """Expire frees exactly the reservations whose deadline has come, and each once."""
        now = self._now()
        reserved = {
            t: int(i["rsv_until"]["N"])
            for t, i in self._tasks_in_table().items()
            if i["status"]["S"] == TaskStatus.APPLY_PENDING.value
        }
        due = sorted(t for t, until in reserved.items() if until <= now)
        assert sorted(self.expirer.expire_pool(POOL).expired) == due
        tasks = self._tasks_in_table()
        for task_id, until in reserved.items():
            expected = TaskStatus.EXPIRED if until <= now else TaskStatus.APPLY_PENDING
            assert tasks[task_id]["status"]["S"] == expected.value
        assert self.expirer.expire_pool(POOL).expired == []

    @rule(seconds=st.integers(1, 4000))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def the_table_keeps_every_invariant(self) -> None:
        """Checked on the raw items, read in one go, independently of the store's own parsing."""
        items = self._snapshot(lambda sk: sk.startswith(POD_PREFIX) or sk == TASK_SK)
        pods = [i for i in items if i["sk"]["S"].startswith(POD_PREFIX)]
        tasks = {i["task_id"]["S"]: i for i in items if i["sk"]["S"] == TASK_SK}
        holders: dict[str, tuple[str, str]] = {}
        # every pod item has its pod in the cluster and the other way round (items first, deletes
        # before the item goes, a lost pod loses both)
        assert {p["name"]["S"] for p in pods} == set(self.cluster.pods)
        for pod in pods:
            slots = pod["slots"]["M"]
            busy = sum(1 for s in slots.values() if s["M"]["status"]["S"] != "idle")
            # busy is the number of non-idle slots, and idle (the open_slots index's order) the rest
            assert int(pod["busy"]["N"]) == busy
            assert int(pod["idle"]["N"]) == len(slots) - busy
            # a pod is in the open_slots index exactly while it may take a new task
            takes_tasks = pod["state"]["S"] == PodState.READY.value and "cordoned" not in pod
            assert ("open_pool" in pod) == takes_tasks, f"{pod['name']['S']}: open_pool out of step"
            # in the pool's partition of open_slots, or its second-choice one (outdated pods)
            if "open_pool" in pod:
                assert pod["open_pool"]["S"] in (POOL, f"{POOL}#outdated")
            # a draining pod was idle when drained, and nothing can be allocated onto it
            if pod["state"]["S"] == PodState.DRAINING.value:
                assert busy == 0
            for key, raw in slots.items():
                slot = raw["M"]
                if slot["status"]["S"] == "idle":
                    assert "task_id" not in slot
                    continue
                # a slot holds one task, and a task holds at most one slot
                task_id = slot["task_id"]["S"]
                assert task_id not in holders
                holders[task_id] = (pod["name"]["S"], key)
                task = tasks[task_id]
                # the task's item says it holds exactly this slot, in the matching status
                assert (task["pod"]["S"], task["slot"]["S"]) == holders[task_id]
                expected = {"reserved": "apply_pending", "running": "running"}[slot["status"]["S"]]
                assert task["status"]["S"] == expected
                if expected == "apply_pending":
                    assert slot["reserved_until"]["N"] == task["rsv_until"]["N"]
        for task_id, task in tasks.items():
            status = TaskStatus(task["status"]["S"])
            # a task that holds a slot is found in one; pending and ended tasks hold none
            assert (task_id in holders) == status.holds_slot
            # the sparse indexes' keys exist exactly while they mean something: a reservation's
            # deadline while reserved; a wait while pending, unless autoscale dropped it from the
            # demand because it stopped asking
            assert ("rsv_until" in task) == (status is TaskStatus.APPLY_PENDING)
            waits = status is TaskStatus.PENDING and task_id not in self.forgotten
            assert ("wait_since" in task) == waits
            assert ("expires_at" in task) == status.is_end


TestSlotLifeCycle = SlotLifeCycle.TestCase
TestSlotLifeCycle.settings = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
