"""DynamoDB requests per allocation, counted at moto's HTTP server as they arrive: the budget of
the hot path (a new allocation: one lookup, one Query, one transaction; a repeat: one GetItem)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from local.moto_server import MotoServer
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.model import TaskStatus, TaskType
from podslots.store import SlotStore
from podslots.tasks import TaskStatusService
from tests.support.pods import given_pool, given_ready_pods


def test_the_allocation_hot_path_stays_within_its_request_budget(server: MotoServer):
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "budget")
    given_ready_pods(store, "budget", count=20)
    allocator, tasks = Allocator(store, RecordingPublisher(), clock), TaskStatusService(store, clock)

    def requests_of(step: Callable[[], object]) -> Counter[str]:
        before = server.dispatcher.operations.copy()
        step()
        return server.dispatcher.operations - before

    new = requests_of(lambda: allocator.allocate(AllocationRequest("budget", "t1", TaskType.PLAN_AND_APPLY)))
    assert new == Counter({"GetItem": 1, "Query": 1, "TransactWriteItems": 1})
    repeat = requests_of(lambda: allocator.allocate(AllocationRequest("budget", "t1", TaskType.PLAN_AND_APPLY)))
    assert repeat == Counter({"GetItem": 1})
    tasks.set_status("t1", TaskStatus.APPLY_PENDING)
    resume = requests_of(lambda: allocator.allocate(AllocationRequest("budget", "t1", TaskType.PLAN_AND_APPLY)))
    assert resume == Counter({"GetItem": 1, "TransactWriteItems": 1})
    release = requests_of(lambda: tasks.set_status("t1", TaskStatus.APPLIED))
    assert release == Counter({"GetItem": 1, "TransactWriteItems": 1})
