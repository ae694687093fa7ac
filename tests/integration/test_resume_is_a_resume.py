"""Resume is a resume, always; and the answer says what happened (issue 16, failures 1 and 10).

Through the real allocate handler, on moto's HTTP server with the table fault injector
(`local/table_faults.py`): a plan waits for approval on `pod/s0`, and the approval (the same
POST again) meets what DynamoDB does under ordinary contention: a cancelled transaction, throttling,
a lost answer. A "concurrent" request is played by a store that runs it, through the handler, right
before the step's own write, exactly as another Lambda slipping in between would.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from functions.allocate import app as allocate_app
from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.expiry import Expirer
from podslots.model import Pod, SlotStatus, Task, TaskStatus, TaskType
from podslots.store import SlotStore
from podslots.store.keys import pod_sk, pool_pk
from tests.integration.conftest import Answer, Api
from tests.support.callers import TASK_QUEUE
from tests.support.least_privilege import as_another_process
from tests.support.pods import given_pool, given_ready_pods

POOL = "terraform"
TASK = "run-42"
DAY = 86400


class SteppedInStore(SlotStore):
    """A real store that runs `before_resume` / `before_allocate` once, right before that write."""

    def __init__(self) -> None:
        super().__init__()
        self.before_resume: Callable[[], None] | None = None
        self.before_allocate: Callable[[], None] | None = None

    def resume(self, task: Task, now: int, *, token: str | None = None) -> None:
        step, self.before_resume = self.before_resume, None
        if step is not None:
            as_another_process(step)
        super().resume(task, now, token=token)

    def allocate(self, *args: Any, **kwargs: Any) -> None:
        step, self.before_allocate = self.before_allocate, None
        if step is not None:
            as_another_process(step)
        super().allocate(*args, **kwargs)


@pytest.fixture
def store(server: MotoServer) -> Iterator[SteppedInStore]:
    stepped = SteppedInStore()
    allocator = allocate_app.allocator
    saved = (allocator.store, allocator.sleep, allocator.bus)
    allocator.store, allocator.sleep, allocator.bus = stepped, lambda _s: None, RecordingPublisher()
    yield stepped
    allocator.store, allocator.sleep, allocator.bus = saved


@pytest.fixture
def api(store: SteppedInStore, clock: ManualClock) -> Api:
    api = Api(clock)
    allocate_app.allocator.bus = RecordingPublisher()  # Api wires a real publisher; no bus here
    return api


@pytest.fixture
def reserved(api: Api, store: SteppedInStore) -> tuple[str, str]:
    """Given a plan_and_apply whose plan waits for approval on one pod of two (the other idle)."""
    given_pool(store, POOL)
    given_ready_pods(store, POOL, count=2)
    first = api.allocate(POOL, TASK, "plan_and_apply")
    assert first.status == 201
    assert api.status(TASK, "apply_pending").status == 200
    return first.body["pod"], first.body["slot"]


def approve(api: Api, expect: str | None = None) -> Answer:
    body: dict[str, Any] = {"task_id": TASK, "task_type": "plan_and_apply"}
    if expect is not None:
        body["expect"] = expect
    return api.call("POST", "/pools/{pool}/allocations", body, pool=POOL)


def slots_naming(store: SlotStore, task_id: str) -> dict[tuple[str, str], SlotStatus]:
    return {
        (pod.name, key): slot.status
        for pod in store.pods(POOL)
        for key, slot in pod.slots.items()
        if slot.task_id == task_id
    }


def assert_table_consistent(store: SlotStore) -> None:
    """Invariant 1 on the raw table: a slot names a task iff the task holds exactly that slot."""
    pods: list[Pod] = store.pods(POOL)
    holders: dict[str, tuple[str, str]] = {}
    for pod in pods:
        assert pod.busy == sum(1 for s in pod.slots.values() if not s.is_idle)
        for key, slot in pod.slots.items():
            if slot.task_id is None:
                continue
            assert slot.task_id not in holders, f"{slot.task_id} holds two slots"
            holders[slot.task_id] = (pod.name, key)
            task = store.get_task(slot.task_id)
            assert task is not None, f"{pod.name}/{key} names a task that does not exist"
            expected = TaskStatus.APPLY_PENDING if slot.status is SlotStatus.RESERVED else TaskStatus.RUNNING
            assert (task.status, task.pod, task.slot) == (expected, pod.name, key)


def assert_resumed_on(store: SlotStore, where: tuple[str, str]) -> None:
    task = store.get_task(TASK)
    assert task is not None
    assert (task.status, task.pod, task.slot) == (TaskStatus.RUNNING, *where)
    assert task.reserved_until is None
    assert slots_naming(store, TASK) == {where: SlotStatus.RUNNING}
    assert_table_consistent(store)


# ---- failure 1: a transient fault never moves an approved apply ---------------------------------


def seed_for_item(index: int) -> int:
    """A seed for the injector's choice of which item of a two-item transaction conflicts."""
    return next(seed for seed in range(100) if random.Random(seed).randrange(2) == index)


@pytest.mark.parametrize("part", ["task", "slot"])
def test_an_approval_whose_resume_meets_a_transaction_conflict_resumes_the_reserved_slot(
    api: Api, store: SteppedInStore, server: MotoServer, reserved: tuple[str, str], part: str
):
    # Given the resume's transaction will be cancelled once, for a conflict on the task or the slot
    faults = server.dispatcher.faults
    faults.chaos({}, seed=seed_for_item({"task": 0, "slot": 1}[part]))
    store.before_resume = lambda: faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT)
    # When the approval comes
    answer = approve(api)
    # Then it is retried as a resume: 200 on the reserved slot, and the table says just that
    assert faults.injected[Fault.TRANSACTION_CONFLICT] == 1
    assert answer.status == 200, answer.body
    assert (answer.body["pod"], answer.body["slot"]) == reserved
    assert (answer.body["outcome"], answer.body["placed_anew"]) == ("resumed", False)
    assert_resumed_on(store, reserved)


def test_an_approval_whose_resume_is_throttled_past_the_sdks_retries_resumes_the_reserved_slot(
    api: Api, store: SteppedInStore, server: MotoServer, reserved: tuple[str, str]
):
    # Given the resume's transaction is throttled more often than botocore retries it
    faults = server.dispatcher.faults
    store.before_resume = lambda: faults.next("TransactWriteItems", Fault.THROTTLE, times=4)
    # When the approval comes
    answer = approve(api)
    # Then it is no 5xx: the resume is tried again and the apply runs on the reserved slot
    assert faults.injected[Fault.THROTTLE] == 4
    assert answer.status == 200, answer.body
    assert (answer.body["pod"], answer.body["slot"], answer.body["outcome"]) == (*reserved, "resumed")
    assert_resumed_on(store, reserved)


def test_an_approval_whose_resume_answer_was_lost_recognises_its_own_write(
    api: Api, store: SteppedInStore, server: MotoServer, reserved: tuple[str, str]
):
    # Given the resume is applied but its answer is lost (botocore's retry meets the write)
    faults = server.dispatcher.faults
    store.before_resume = lambda: faults.next("TransactWriteItems", Fault.ANSWER_LOST)
    # When the approval comes
    answer = approve(api)
    # Then the write is recognised by its token: 200, resumed, on the reserved slot
    assert faults.injected[Fault.ANSWER_LOST] == 1
    assert answer.status == 200, answer.body
    assert (answer.body["pod"], answer.body["slot"], answer.body["outcome"]) == (*reserved, "resumed")
    assert_resumed_on(store, reserved)


def test_two_concurrent_approvals_both_get_the_reserved_slot(
    api: Api, store: SteppedInStore, reserved: tuple[str, str]
):
    # Given a second approval of the same task lands between the first one's read and its resume
    inner: list[Answer] = []
    store.before_resume = lambda: inner.append(approve(api))
    # When the first approval goes on
    outer = approve(api)
    # Then both name the reserved slot: one resumed it, the other finds it resumed
    assert [(a.status, a.body["pod"], a.body["slot"]) for a in (*inner, outer)] == [(200, *reserved)] * 2
    assert sorted(a.body["outcome"] for a in (*inner, outer)) == ["repeated", "resumed"]
    assert_resumed_on(store, reserved)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eight_approvals_at_once_under_table_faults_all_get_the_reserved_slot(
    store: SteppedInStore, server: MotoServer, clock: ManualClock, reserved: tuple[str, str], seed: int
):
    # Given eight approvals of the reserved task at once, each on its own connection, on a table
    # that cancels, throttles and loses the answers of writes at random
    faults = server.dispatcher.faults
    faults.chaos({Fault.TRANSACTION_CONFLICT: 0.2, Fault.THROTTLE: 0.05, Fault.ANSWER_LOST: 0.1}, seed=seed)
    request = AllocationRequest(POOL, TASK, TaskType.PLAN_AND_APPLY, caller=TASK_QUEUE)  # the handler's caller
    allocator = Allocator(SlotStore(), RecordingPublisher(), clock, sleep=time.sleep)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _i: allocator.allocate(request), range(8)))
    faults.clear()
    # Then every one names the reserved slot; exactly one resumed it, and the table agrees
    assert {(a.pod, a.slot) for a in answers} == {reserved}
    assert sorted(a.outcome.value for a in answers) == ["repeated"] * 7 + ["resumed"]
    assert_resumed_on(store, reserved)


def test_a_resume_that_keeps_meeting_conflicts_is_a_409_try_again_and_moves_nothing(
    api: Api, store: SteppedInStore, server: MotoServer, reserved: tuple[str, str]
):
    # Given every transaction of the resume is cancelled for a conflict
    faults = server.dispatcher.faults
    store.before_resume = lambda: faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, times=100)
    # When the approval comes
    answer = approve(api)
    faults.clear()
    # Then the answer names the task and says to try again; the reservation is as it was
    assert answer.status == 409
    assert (answer.body["error"], answer.body["task_id"]) == ("resume_contended", TASK)
    assert slots_naming(store, TASK) == {reserved: SlotStatus.RESERVED}
    assert_table_consistent(store)
    # And the next approval resumes it
    again = approve(api)
    assert (again.status, again.body["pod"], again.body["slot"]) == (200, *reserved)


# ---- a reservation that is really gone: said so, never a new slot --------------------------------


def test_an_approval_racing_the_loss_of_its_pod_is_told_the_task_is_lost_not_given_a_new_slot(
    api: Api, store: SteppedInStore, clock: ManualClock, reserved: tuple[str, str]
):
    # Given reconcile loses the plan's pod between the approval's read and its resume
    pod = store.get_pod(POOL, reserved[0])
    assert pod is not None

    def reconcile_loses_the_pod() -> None:
        store.lose_pod(pod, "vanished", int(clock.now()), "e-1")

    store.before_resume = reconcile_loses_the_pod
    # When the approval goes on
    answer = approve(api)
    # Then 409 reservation_gone, saying the task is lost and why; no slot names the task
    assert answer.status == 409, answer.body
    assert (answer.body["error"], answer.body["task_id"], answer.body["task_status"]) == (
        "reservation_gone",
        TASK,
        "lost",
    )
    assert answer.body["previous"] == {"pod": reserved[0], "slot": reserved[1], "status": "lost", "reason": "vanished"}
    assert slots_naming(store, TASK) == {}
    assert_table_consistent(store)


def test_an_approval_whose_reserved_slot_is_gone_marks_the_task_lost_and_says_so(
    api: Api, store: SteppedInStore, server: MotoServer, reserved: tuple[str, str]
):
    # Given the plan's pod item is gone while the task still says apply_pending
    boto3.client("dynamodb", endpoint_url=server.url).delete_item(
        TableName=server.table, Key={"pk": {"S": pool_pk(POOL)}, "sk": {"S": pod_sk(reserved[0])}}
    )
    # When the approval comes
    answer = approve(api)
    # Then 409 reservation_gone: the task is lost (its slot is gone), and no other slot took it
    assert answer.status == 409, answer.body
    assert (answer.body["error"], answer.body["task_status"]) == ("reservation_gone", "lost")
    assert answer.body["previous"]["reason"] == "reserved slot gone"
    task = store.get_task(TASK)
    assert task is not None
    assert task.status is TaskStatus.LOST
    assert slots_naming(store, TASK) == {}
    assert_table_consistent(store)


# ---- failure 10: the answer says what happened ---------------------------------------------------


def run_expiry(store: SlotStore, clock: ManualClock) -> None:
    assert Expirer(store, RecordingPublisher(), clock).expire_pool(POOL).expired == [TASK]


def expire_the_reservation(store: SlotStore, clock: ManualClock) -> None:
    clock.advance(DAY + 1)
    run_expiry(store, clock)


def test_a_re_dispatch_after_expiry_is_a_201_placed_anew_naming_the_slot_it_had(
    api: Api, store: SteppedInStore, clock: ManualClock, reserved: tuple[str, str]
):
    # Given the reservation expired (nobody approved within 24 h)
    expire_the_reservation(store, clock)
    # When the queue dispatches the task again
    answer = api.allocate(POOL, TASK, "plan_and_apply")
    # Then it is placed anew, and the answer says so and names the slot it had and why that ended
    assert answer.status == 201
    assert (answer.body["outcome"], answer.body["placed_anew"]) == ("placed_anew", True)
    assert answer.body["previous"] == {
        "pod": reserved[0],
        "slot": reserved[1],
        "status": "expired",
        "reason": "reservation expired",
    }
    assert_table_consistent(store)
    # And a repeat is a 200 `repeated` on that new slot, no longer a placement
    again = api.allocate(POOL, TASK, "plan_and_apply")
    assert (again.status, again.body["outcome"], again.body["slot"]) == (200, "repeated", answer.body["slot"])


def test_an_approval_at_the_deadline_that_loses_to_expiry_is_told_so_not_given_a_new_slot(
    api: Api, store: SteppedInStore, clock: ManualClock, reserved: tuple[str, str]
):
    # Given the approval comes at the deadline, and expiry frees the reservation between its read
    # of the task and its resume
    clock.advance(DAY)
    store.before_resume = lambda: run_expiry(store, clock)
    # When the approval goes on (without `expect`)
    answer = approve(api)
    # Then it is a 409 reservation_gone naming the expiry, and the task takes no other slot
    assert answer.status == 409, answer.body
    assert (answer.body["error"], answer.body["task_status"]) == ("reservation_gone", "expired")
    assert answer.body["previous"] == {
        "pod": reserved[0],
        "slot": reserved[1],
        "status": "expired",
        "reason": "reservation expired",
    }
    assert slots_naming(store, TASK) == {}
    assert_table_consistent(store)


def test_an_approval_expecting_a_resume_after_expiry_is_a_409_reservation_gone(
    api: Api, store: SteppedInStore, clock: ManualClock, reserved: tuple[str, str]
):
    # Given the reservation expired
    expire_the_reservation(store, clock)
    # When the approval says it expects a resume
    answer = approve(api, expect="resume")
    # Then 409 reservation_gone names the task and what happened to it; it takes no slot
    assert answer.status == 409
    assert answer.body["error"] == "reservation_gone"
    assert (answer.body["task_id"], answer.body["task_status"]) == (TASK, "expired")
    assert answer.body["previous"]["reason"] == "reservation expired"
    assert TASK in answer.body["message"]
    assert slots_naming(store, TASK) == {}


def test_an_approval_expecting_a_resume_gets_the_reserved_slot(
    api: Api, store: SteppedInStore, reserved: tuple[str, str]
):
    answer = approve(api, expect="resume")
    assert answer.status == 200
    assert (answer.body["pod"], answer.body["slot"], answer.body["outcome"]) == (*reserved, "resumed")
    assert_resumed_on(store, reserved)


def test_an_approval_expecting_a_resume_of_an_unknown_task_takes_no_slot(api: Api, store: SteppedInStore):
    given_pool(store, POOL)
    given_ready_pods(store, POOL)
    answer = approve(api, expect="resume")
    assert (answer.status, answer.body["error"], answer.body["task_status"]) == (409, "reservation_gone", None)
    assert store.get_task(TASK) is None


def test_an_unknown_expect_is_a_422_naming_the_field(api: Api, store: SteppedInStore):
    given_pool(store, POOL)
    answer = approve(api, expect="resume-please")
    assert answer.status == 422
    assert answer.body["problems"][0]["field"] == "expect"


def test_two_concurrent_re_dispatches_after_expiry_both_say_placed_anew_on_one_slot(
    api: Api, store: SteppedInStore, clock: ManualClock, reserved: tuple[str, str]
):
    # Given the reservation expired, and a second dispatch lands between the first's read and write
    expire_the_reservation(store, clock)
    inner: list[Answer] = []
    puts = 0

    def step_in_on_the_re_dispatch() -> None:
        nonlocal puts
        puts += 1
        if puts == 1:  # the first put learns that the task exists; the second is the re-dispatch
            store.before_allocate = step_in_on_the_re_dispatch
            return
        inner.append(api.allocate(POOL, TASK, "plan_and_apply"))

    store.before_allocate = step_in_on_the_re_dispatch
    # When the first dispatch goes on
    outer = api.allocate(POOL, TASK, "plan_and_apply")
    # Then neither answer passes for a resume: both say placed anew, on the one new slot
    assert [(a.status, a.body["outcome"]) for a in (*inner, outer)] == [(201, "placed_anew")] * 2
    assert inner[0].body["slot"] == outer.body["slot"]
    assert inner[0].body["previous"] == outer.body["previous"]
    assert_table_consistent(store)
