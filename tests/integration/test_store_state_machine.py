"""A hypothesis state machine over the store and the steps, on moto, with a controlled clock.

Any sequence of allocate, reserve, resume, release, drain, heartbeat and time passing keeps every
invariant of docs/architecture.md ("Invariants"), checked against the whole table after each step;
repeating a call gives the same answer and changes nothing.
"""

from __future__ import annotations

import boto3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from moto import mock_aws

from local.template import table_definition
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import PodSlotsError
from podslots.heartbeat import HeartbeatService
from podslots.model import PodState, TaskStatus, TaskType
from podslots.observability import metrics
from podslots.store import SlotStore, bind_table, new_pod
from podslots.tasks import TaskStatusService
from tests.conftest import TABLE
from tests.support.pods import given_pool

POOL = "machine"
TASKS = [f"t{i}" for i in range(8)]
PODS = [f"{POOL}-{i}" for i in range(3)]
ENDS = [TaskStatus.SUCCESS, TaskStatus.APPLIED, TaskStatus.FAILED, TaskStatus.CANCELLED]
# Each task id keeps one type, as a queue would; half of them are plan_and_apply.
KIND = {
    t: [TaskType.PLAN_AND_APPLY, TaskType.PLAN, TaskType.PLAN_AND_APPLY, TaskType.APPLY][i % 4]
    for i, t in enumerate(TASKS)
}


class SlotLifeCycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.mock = mock_aws()
        self.mock.start()
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        bind_table(TABLE)
        self.clock = ManualClock()
        self.store = SlotStore()
        self.bus = RecordingPublisher()
        self.allocator = Allocator(self.store, self.bus, self.clock)
        self.tasks = TaskStatusService(self.store, self.clock)
        self.agents = HeartbeatService(self.store, self.clock)
        self.created_pods: list[str] = []
        self.dispatched: list[str] = []

    def teardown(self) -> None:
        metrics.clear_metrics()
        self.mock.stop()

    def _outcome(self, call):
        try:
            return ("ok", call())
        except PodSlotsError as exc:
            return (type(exc).__name__, exc.message)

    def _snapshot(self):
        """The whole table, in one read (the test's view; the code under test never scans)."""
        items = boto3.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
        return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))

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

    @initialize()
    def a_pool_with_one_ready_pod(self) -> None:
        given_pool(self.store, POOL, reservation_ttl_s=3600)
        self.a_pod_starts(PODS[0], 2)
        self.agents.beat(POOL, PODS[0], [], None)

    @rule(pod=st.sampled_from(PODS), slots=st.integers(1, 3))
    def a_pod_starts(self, pod: str, slots: int) -> None:
        if pod in self.created_pods:
            return
        self.store.put_pod(new_pod(POOL, pod, slots, int(self.clock.now()), uid=f"uid-{pod}"))
        self.created_pods.append(pod)

    @precondition(lambda self: bool(self.created_pods))
    @rule(data=st.data())
    def an_agent_beats(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(self.created_pods))
        held = data.draw(st.lists(st.sampled_from(TASKS), max_size=3))
        self._twice(lambda: self.agents.beat(POOL, pod, held, "10.1.2.3"))

    @rule(task=st.sampled_from(TASKS))
    def dispatch(self, task: str) -> None:
        self._twice(lambda: self.allocator.allocate(AllocationRequest(POOL, task, KIND[task])))
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
    def scale_down_drains_and_removes(self, data: st.DataObject) -> None:
        pod = data.draw(st.sampled_from(self.created_pods))
        before = self.store.get_pod(POOL, pod)
        drained = self.store.start_draining(POOL, pod, (PodState.READY, PodState.UNHEALTHY))
        if before is not None and before.busy > 0:
            assert not drained, "a busy pod must never start draining"
        if drained:
            assert self.store.get_pod(POOL, pod).busy == 0  # type: ignore[union-attr]
            self.store.remove_drained_pod(POOL, pod)
            self.created_pods.remove(pod)

    @rule(seconds=st.integers(1, 4000))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def the_table_keeps_every_invariant(self) -> None:
        """Checked on the raw items, read in one scan, independently of the store's own parsing."""
        items = self._snapshot()
        pods = [i for i in items if i["sk"]["S"].startswith("POD#")]
        tasks = {i["task_id"]["S"]: i for i in items if i["sk"]["S"] == "#TASK"}
        holders: dict[str, tuple[str, str]] = {}
        for pod in pods:
            slots = pod["slots"]["M"]
            busy = sum(1 for s in slots.values() if s["M"]["status"]["S"] != "idle")
            # busy is the number of non-idle slots
            assert int(pod["busy"]["N"]) == busy
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
            # the sparse indexes' keys exist exactly while they mean something
            assert ("rsv_until" in task) == (status is TaskStatus.APPLY_PENDING)
            assert ("wait_since" in task) == (status is TaskStatus.PENDING)
            assert ("expires_at" in task) == status.is_end


TestSlotLifeCycle = SlotLifeCycle.TestCase
TestSlotLifeCycle.settings = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
