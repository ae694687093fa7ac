"""DynamoDB requests per allocation, counted at moto's HTTP server as they arrive: the budget of
the hot path, and a read that does not grow with the pool.

A new allocation is one Query of the `open_slots` index and one transaction; the task item is read
only from a cancelled transaction's own answer (a repeat, a resume, a re-dispatch). The pool's item
(its `allowed_callers`) is read by a container's first allocation in the pool, then again only
once `CALLERS_MAX_AGE_S` have passed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import CALLERS_MAX_AGE_S, AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.model import TaskStatus, TaskType
from podslots.store import SlotStore
from podslots.tasks import TaskStatusService
from tests.support.pods import given_idle_ready_pods_in_bulk, given_pool, given_ready_pods


def requests_of(server: MotoServer, step: Callable[[], object]) -> Counter[str]:
    before = server.dispatcher.operations.copy()
    step()
    return server.dispatcher.operations - before


def test_the_allocation_hot_path_stays_within_its_request_budget(server: MotoServer):
    # Given a pool of 20 ready pods
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "budget")
    given_ready_pods(store, "budget", count=20)
    allocator, tasks = Allocator(store, RecordingPublisher(), clock), TaskStatusService(store, clock)
    ask = AllocationRequest("budget", "t1", TaskType.PLAN_AND_APPLY)

    # Then the container's first allocation in the pool also reads the pool's item (allowed_callers)
    first = requests_of(server, lambda: allocator.allocate(AllocationRequest("budget", "t0", TaskType.PLAN)))
    assert first == Counter({"GetItem": 1, "Query": 1, "TransactWriteItems": 1})
    # and every new allocation after it is one read of candidates and one transaction
    assert requests_of(server, lambda: allocator.allocate(ask)) == Counter({"Query": 1, "TransactWriteItems": 1})
    # and a repeat learns of its slot from the cancelled transaction's answer (no GetItem)
    assert requests_of(server, lambda: allocator.allocate(ask)) == Counter({"Query": 1, "TransactWriteItems": 1})
    tasks.set_status("t1", TaskStatus.APPLY_PENDING)
    resume = requests_of(server, lambda: allocator.allocate(ask))
    assert resume == Counter({"Query": 1, "TransactWriteItems": 2})
    release = requests_of(server, lambda: tasks.set_status("t1", TaskStatus.APPLIED))
    assert release == Counter({"GetItem": 1, "TransactWriteItems": 1})
    # and the pool's item is read again once what the container knows of it is CALLERS_MAX_AGE_S old
    clock.advance(CALLERS_MAX_AGE_S)
    again = requests_of(server, lambda: allocator.allocate(AllocationRequest("budget", "t2", TaskType.PLAN)))
    assert again == Counter({"GetItem": 1, "Query": 1, "TransactWriteItems": 1})


@pytest.mark.parametrize("pods", [10, 100, 1000])
def test_an_allocation_reads_the_same_few_items_however_large_the_pool(server: MotoServer, pods: int):
    # Given a pool of `pods` idle ready pods, and one pod already partly busy
    store, clock = SlotStore(), ManualClock()
    assert server.table is not None
    given_idle_ready_pods_in_bulk(None, store, "flat", pods, now=1)
    allocator = Allocator(store, RecordingPublisher(), clock)
    first = allocator.allocate(AllocationRequest("flat", "warm", TaskType.PLAN))
    items, bytes_read = server.dispatcher.items_read.copy(), server.dispatcher.bytes_read.copy()

    # When another task is allocated
    second = allocator.allocate(AllocationRequest("flat", "next", TaskType.PLAN))

    # Then it read at most the few candidates (4 pod items), whatever the pool's size
    read = server.dispatcher.items_read - items
    assert read["Query"] <= 4
    assert sum((server.dispatcher.bytes_read - bytes_read).values()) < 4 * 1024
    # and bin-packing held: it went to the partly busy pod
    assert (second.pod, second.slot) == (first.pod, "s1")


def test_three_tasks_on_an_empty_pool_land_on_one_pod(server: MotoServer):
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "pack")
    given_ready_pods(store, "pack", count=3)
    allocator = Allocator(store, RecordingPublisher(), clock)
    placed = {allocator.allocate(AllocationRequest("pack", f"t{i}", TaskType.PLAN)).pod for i in range(3)}
    assert len(placed) == 1


def test_an_allocation_recognises_its_own_write_when_the_answer_was_lost(server: MotoServer):
    # Given a pool, and a table that applies the next transaction but loses its answer
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "lost")
    given_ready_pods(store, "lost", count=2)
    allocator = Allocator(store, RecordingPublisher(), clock)
    server.dispatcher.faults.next("TransactWriteItems", Fault.ANSWER_LOST)

    # When a task is allocated (botocore retries; the retry meets the applied write)
    done = allocator.allocate(AllocationRequest("lost", "t1", TaskType.PLAN))

    # Then it is a new allocation (201), in the slot the first attempt took, and only that one
    assert done.created
    assert server.dispatcher.faults.injected[Fault.ANSWER_LOST] == 1
    busy = [(p.name, k) for p in store.pods("lost") for k, s in p.slots.items() if not s.is_idle]
    assert busy == [(done.pod, done.slot)]


def test_a_transaction_conflict_is_retried_not_reported(server: MotoServer):
    # Given a table that cancels the next two transactions for a conflict on one item
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "busy")
    given_ready_pods(store, "busy", count=2)
    allocator = Allocator(store, RecordingPublisher(), clock, sleep=lambda _s: None)
    server.dispatcher.faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, times=2)

    # When a task is allocated, Then it gets a slot on the third try
    done = allocator.allocate(AllocationRequest("busy", "t1", TaskType.PLAN))
    assert done.created
    assert server.dispatcher.faults.injected[Fault.TRANSACTION_CONFLICT] == 2
