"""Races over moto's HTTP server, its dispatcher serialized by one lock (local/moto_server.py):
moto checks a condition and applies the update in separate steps, so without the lock two
concurrent conditional writes could both succeed there, which DynamoDB never allows. The lock
must stay, or these tests would test moto instead of podslots' conditions.

Many threads, each with its own HTTP connection, call the real store and steps at once. What is
checked is the table afterwards: no slot holds two tasks, no task holds two slots, `busy` is true.
The race of an allocation and a drain of the same pod is in test_scale_down_race.py, through
autoscale's whole scaling step.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import NoCapacity
from podslots.model import TaskType
from podslots.store import SlotStore
from tests.support.pods import given_pool, given_ready_pods

pytestmark = pytest.mark.slow


@pytest.fixture
def store(server: MotoServer) -> SlotStore:
    return SlotStore()


def assert_slot_invariants(store: SlotStore, pool: str) -> dict[str, tuple[str, str]]:
    """Every invariant of docs/architecture.md that the table can show; returns task -> (pod, slot)."""
    holders: dict[str, tuple[str, str]] = {}
    for pod in store.pods(pool):
        assert pod.busy == sum(1 for s in pod.slots.values() if not s.is_idle)
        for key, slot in pod.slots.items():
            if slot.task_id is None:
                continue
            assert slot.task_id not in holders, f"{slot.task_id} holds two slots"
            holders[slot.task_id] = (pod.name, key)
    for task_id, (pod_name, key) in holders.items():
        task = store.get_task(task_id)
        assert task is not None
        assert task.status.holds_slot
        assert (task.pod, task.slot) == (pod_name, key)
    return holders


CHAOS = {Fault.TRANSACTION_CONFLICT: 0.05, Fault.THROTTLE: 0.03, Fault.ANSWER_LOST: 0.03}


@pytest.mark.parametrize("faults", ["no faults", "table faults"])
def test_32_threads_allocating_100_tasks_into_30_slots(store: SlotStore, server: MotoServer, faults: str):
    # Given 10 ready pods of 3 slots (and, in the second run, a table that cancels transactions
    # for conflicts, throttles, and loses answers of writes it applied, as DynamoDB can)
    given_pool(store, "race", max_pods=10)
    given_ready_pods(store, "race", count=10)
    allocator = Allocator(store, RecordingPublisher(), ManualClock())
    if faults == "table faults":
        server.dispatcher.faults.chaos(CHAOS, seed=5)
    tasks: queue.Queue[str] = queue.Queue()
    for i in range(100):
        tasks.put(f"task-{i:03d}")
    placed: list[tuple[str, str, str]] = []
    refused: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                task_id = tasks.get_nowait()
            except queue.Empty:
                return
            try:
                done = allocator.allocate(AllocationRequest("race", task_id, TaskType.PLAN))
                with lock:
                    placed.append((task_id, done.pod, done.slot))
            except NoCapacity as exc:
                if exc.details.get("contended"):
                    tasks.put(task_id)  # lost every race this time: the queue asks again
                    continue
                with lock:
                    refused.append(task_id)

    # When 32 threads allocate them all at once
    with ThreadPoolExecutor(max_workers=32) as pool:
        for _ in range(32):
            pool.submit(worker)
    server.dispatcher.faults.clear()
    # Then exactly 30 got a slot, each a different one, and the table agrees
    assert len(placed) == 30
    assert len(refused) == 70
    assert len({(pod, slot) for _, pod, slot in placed}) == 30
    holders = assert_slot_invariants(store, "race")
    assert holders == {task: (pod, slot) for task, pod, slot in placed}


def test_one_task_from_8_threads_at_once_gets_one_slot(store: SlotStore):
    given_pool(store, "race")
    given_ready_pods(store, "race", count=3)
    allocator = Allocator(store, RecordingPublisher(), ManualClock())
    start = threading.Barrier(8)

    def dispatch() -> tuple[str, str, bool]:
        start.wait()
        done = allocator.allocate(AllocationRequest("race", "the-task", TaskType.APPLY))
        return done.pod, done.slot, done.created

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: dispatch(), range(8)))
    assert len({(pod, slot) for pod, slot, _ in answers}) == 1
    assert sum(created for *_, created in answers) == 1
    assert len(assert_slot_invariants(store, "race")) == 1
