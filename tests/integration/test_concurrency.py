"""Races over moto's HTTP server (its dispatcher serialized: see tests/support/moto_server.py).

Many threads, each with its own HTTP connection, call the real store and steps at once. What is
checked is the table afterwards: no slot holds two tasks, no task holds two slots, `busy` is true.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.moto_server import MotoServer
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import NoCapacity
from podslots.model import PodState, TaskStatus, TaskType
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


def test_32_threads_allocating_100_tasks_into_30_slots(store: SlotStore):
    # Given 10 ready pods of 3 slots
    given_pool(store, "race", max_pods=10)
    given_ready_pods(store, "race", count=10)
    allocator = Allocator(store, RecordingPublisher(), ManualClock())
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
            except NoCapacity:
                with lock:
                    refused.append(task_id)

    # When 32 threads allocate them all at once
    with ThreadPoolExecutor(max_workers=32) as pool:
        for _ in range(32):
            pool.submit(worker)
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


def test_allocation_racing_a_drain_of_the_same_pod_never_both(store: SlotStore):
    allocator = Allocator(store, RecordingPublisher(), ManualClock())
    outcomes = {"allocated": 0, "drained": 0}
    jitter = random.Random(7)

    def allocate(pool: str, start: threading.Barrier) -> bool:
        start.wait()
        try:
            allocator.allocate(AllocationRequest(pool, f"{pool}-task", TaskType.PLAN))
            return True
        except NoCapacity:
            return False

    def drain(pool: str, pod: str, start: threading.Barrier, delay: float) -> bool:
        start.wait()
        time.sleep(delay)
        return store.start_draining(pool, pod, (PodState.READY,))

    with ThreadPoolExecutor(max_workers=2) as ex:
        # The allocation reads twice before it writes, so the drain alone would nearly always win:
        # measure one allocation here, then give the drain a head start varied over that span,
        # so that both orders, and the close calls between them, happen over the rounds.
        given_pool(store, "warm-up")
        given_ready_pods(store, "warm-up")
        began = time.perf_counter()
        assert ex.submit(allocate, "warm-up", threading.Barrier(1)).result()
        span = (time.perf_counter() - began) * 1.5
        for round_ in range(200):
            # Given a pool whose only pod is ready and idle
            pool = f"r{round_}"
            given_pool(store, pool)
            (pod,) = given_ready_pods(store, pool)
            start = threading.Barrier(2)
            # When an allocation and a scale-down's drain race for it
            got_slot = ex.submit(allocate, pool, start)
            drained = ex.submit(drain, pool, pod, start, jitter.uniform(0, span))
            allocated, was_drained = got_slot.result(), drained.result()
            # Then exactly one of them won: the pod is drained or it holds the task, never both
            assert allocated != was_drained, f"round {round_}: allocated={allocated} drained={was_drained}"
            (item,) = store.pods(pool)
            assert (item.state is PodState.DRAINING) == was_drained
            assert item.busy == (1 if allocated else 0)
            task = store.get_task(f"{pool}-task")
            assert task is not None
            assert task.status is (TaskStatus.RUNNING if allocated else TaskStatus.PENDING)
            outcomes["allocated" if allocated else "drained"] += 1
    # Both orders happened, so the race was real
    assert outcomes["allocated"] > 0, outcomes
    assert outcomes["drained"] > 0, outcomes
