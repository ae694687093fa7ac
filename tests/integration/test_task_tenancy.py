"""Tasks belong to the queue that allocated them (issue 17, finding 5), through the real handlers.

Each caller is the identity API Gateway puts in the event (`requestContext.identity.userArn`): the
task queue's role through one session or another, another queue's role, an operator's role, an API
key. Another caller's task is unknown to it (the 404 of a task that does not exist, byte for byte),
its id is taken (409 `task_id_taken`, nothing told of the task), and nothing it sends moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from functions.allocate import app as allocate_app
from local.apigw import ACCOUNT, TASK_QUEUE_SESSION, proxy_event
from podslots.allocation import CALLERS_MAX_AGE_S
from podslots.clock import ManualClock
from podslots.model import SlotStatus, Task, TaskStatus
from podslots.store import SlotStore
from podslots.store.keys import TASK_SK, task_pk
from podslots.tenancy import OPERATOR_ROLE_ARNS_VAR
from tests.conftest import TABLE
from tests.integration.conftest import Answer, Api
from tests.support.callers import TASK_QUEUE_ROLE
from tests.support.pods import AGENT_IMAGE, given_pool, given_ready_pods

POOL, OTHER_POOL, TASK = "terraform", "other", "run-42"
QUEUE = TASK_QUEUE_SESSION  # the task queue's role, session `session` (the events/ files' caller)
QUEUE_AGAIN = f"arn:aws:sts::{ACCOUNT}:assumed-role/task-queue/i-0fed42"  # the same role, a new session
OTHER = f"arn:aws:sts::{ACCOUNT}:assumed-role/other-queue/i-0abc"
OPERATOR = f"arn:aws:sts::{ACCOUNT}:assumed-role/podslots-operator/alice"


class As:
    """The contract's calls, made by one caller."""

    def __init__(self, api: Api, user_arn: str | None, **identity: str) -> None:
        self.api, self.user_arn, self.identity = api, user_arn, identity

    def call(self, method: str, resource: str, body: Any = None, **path: str) -> Answer:
        event = proxy_event(method, resource, path, body, user_arn=self.user_arn)
        event["requestContext"]["identity"].update(self.identity)
        return self.api.invoke(event)

    def allocate(self, task_id: str = TASK, task_type: str = "plan_and_apply", pool: str = POOL, **more: str) -> Answer:
        return self.call(
            "POST", "/pools/{pool}/allocations", {"task_id": task_id, "task_type": task_type, **more}, pool=pool
        )

    def status(self, status: str, task_id: str = TASK) -> Answer:
        return self.call("PUT", "/tasks/{task_id}/status", {"status": status}, task_id=task_id)

    def task(self, task_id: str = TASK) -> Answer:
        return self.call("GET", "/tasks/{task_id}", task_id=task_id)


@pytest.fixture
def queue(api: Api) -> As:
    return As(api, QUEUE)


@pytest.fixture
def other(api: Api) -> As:
    return As(api, OTHER)


@pytest.fixture
def pool(store: SlotStore) -> str:
    given_pool(store, POOL)
    given_ready_pods(store, POOL, count=2)
    return POOL


def raw_task(task_id: str = TASK) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": task_pk(task_id)}, "sk": {"S": TASK_SK}})
    return dict(item.get("Item") or {})


def slots(store: SlotStore, pool: str = POOL) -> dict[tuple[str, str], tuple[SlotStatus, str | None]]:
    return {(p.name, k): (s.status, s.task_id) for p in store.pods(pool) for k, s in p.slots.items()}


def unknown_answers(caller: As, task_id: str = TASK) -> tuple[Answer, ...]:
    """What the caller is answered for a task id nobody has used: the answers to compare with."""
    return caller.task(task_id), caller.status("success", task_id), caller.status("apply_pending", task_id)


# ---- another caller's task is unknown to it -----------------------------------------------------


def test_another_callers_get_and_put_of_a_task_are_the_404_of_an_unknown_task_and_move_nothing(
    queue: As, other: As, store: SlotStore, pool: str
):
    # Given the other queue's answers for the id before any task has it
    before = unknown_answers(other)
    assert [a.status for a in before] == [404, 404, 404]
    # and the task queue's plan_and_apply running under that id (owned by its role, not its session)
    placed = queue.allocate()
    assert placed.status == 201
    assert raw_task()["owner"] == {"S": TASK_QUEUE_ROLE}
    held = slots(store)

    # When the other queue reads it, reserves it and ends it
    after = unknown_answers(other)

    # Then each answer is exactly the unknown task's: existence is not revealed
    assert [(a.status, a.body) for a in after] == [(a.status, a.body) for a in before]
    # and nothing moved: the task runs where it was placed, its slot still holds it
    mine = queue.task()
    assert (mine.status, mine.body["status"], mine.body["pod"]) == (200, "running", placed.body["pod"])
    assert slots(store) == held


def test_a_reserved_task_cannot_be_ended_by_another_caller(queue: As, other: As, store: SlotStore, pool: str):
    # Given the queue's plan waiting for approval on its reserved slot
    assert queue.allocate().status == 201
    assert queue.status("apply_pending").status == 200
    held = slots(store)
    # When another caller ends it, or approves it by PUT running
    # Then both are the unknown task's 404, and the reservation stands
    assert other.status("cancelled").status == 404
    assert other.status("running").status == 404
    assert queue.task().body["status"] == "apply_pending"
    assert slots(store) == held


# ---- allocations under another caller's task id ------------------------------------------------


def taken(answer: Answer) -> None:
    """A 409 that tells the id is taken and nothing else: no pool, pod, slot, status or type."""
    assert answer.status == 409
    assert answer.body == {
        "error": "task_id_taken",
        "message": f"task id {TASK} is taken by another caller's task; dispatch under another id",
        "task_id": TASK,
    }


@pytest.mark.parametrize("state", ["running", "apply_pending", "success"])
def test_an_allocation_under_another_callers_task_id_is_a_409_that_tells_nothing_and_moves_nothing(
    queue: As, other: As, store: SlotStore, pool: str, state: str
):
    # Given the queue's task, running, waiting for approval, or ended, and another pool with room
    given_pool(store, OTHER_POOL)
    given_ready_pods(store, OTHER_POOL)
    assert queue.allocate().status == 201
    if state != "running":
        assert queue.status(state).status == 200
    held, mine = slots(store), queue.task().body

    # When another caller dispatches a task under the same id, in the same pool and in the other
    # (a reserved task would otherwise be resumed: an approval it never gave)
    same_pool = other.allocate()
    other_pool = other.allocate(pool=OTHER_POOL)
    other_type = other.allocate(task_type="plan")

    # Then each is the same 409, naming no pool, pod, slot, status or type of the task
    for answer in (same_pool, other_pool, other_type):
        taken(answer)
    # and nothing moved
    assert slots(store) == held
    assert queue.task().body == mine
    assert all(s is SlotStatus.IDLE for s, _t in slots(store, OTHER_POOL).values())


def test_a_waiting_task_is_not_taken_over_by_another_callers_allocation(
    queue: As, other: As, store: SlotStore, clock: ManualClock
):
    # Given the queue's task waiting for capacity in a pool with no pod
    given_pool(store, POOL)
    assert queue.allocate().status == 503
    # When another caller asks for the same id: in the full pool, then once a pod is ready
    full = other.allocate()
    given_ready_pods(store, POOL)
    with_room = other.allocate()
    # Then both are the 409 (not a 503 that would record its wait, not a placement under its name)
    taken(full)
    taken(with_room)
    # and the task is still the queue's, waiting, and the queue's own ask places it
    assert raw_task()["owner"] == {"S": TASK_QUEUE_ROLE}
    assert queue.task().body["status"] == "pending"
    assert queue.allocate().status == 201


def test_an_approval_by_another_caller_is_answered_as_for_an_unknown_task_and_resumes_nothing(
    queue: As, other: As, store: SlotStore, pool: str
):
    # Given the other caller's answer to an approval of an id nobody has used
    unknown = other.allocate(expect="resume")
    assert (unknown.status, unknown.body["error"], unknown.body["task_status"]) == (409, "reservation_gone", None)
    # and then the queue's plan waiting for approval under that id
    assert queue.allocate().status == 201
    assert queue.status("apply_pending").status == 200
    held = slots(store)
    # When the other caller approves it
    approval = other.allocate(expect="resume")
    # Then it is answered exactly as for the unknown task, and the reservation stands
    assert (approval.status, approval.body) == (unknown.status, unknown.body)
    assert slots(store) == held
    assert queue.task().body["status"] == "apply_pending"
    # and the queue's own approval resumes it
    assert queue.allocate(expect="resume").body["outcome"] == "resumed"


# ---- who shares a task ----------------------------------------------------------------------------


def test_the_sessions_of_one_role_share_its_tasks(api: Api, queue: As, store: SlotStore, pool: str):
    # Given a task the queue's role allocated through one session
    placed = queue.allocate()
    assert placed.status == 201
    # When a new session of the same role repeats the dispatch, reads it, and reserves it
    again = As(api, QUEUE_AGAIN)
    repeat = again.allocate()
    # Then the repeat is the task's own slot (200 repeated), and the rest is as for the first session
    assert (repeat.status, repeat.body["outcome"], repeat.body["slot"]) == (200, "repeated", placed.body["slot"])
    assert again.task().status == 200
    assert again.status("apply_pending").status == 200
    # and the first session's approval resumes it where the plan ran
    resumed = queue.allocate(expect="resume")
    assert (resumed.status, resumed.body["outcome"], resumed.body["pod"]) == (200, "resumed", placed.body["pod"])


def test_an_operator_reads_any_task_and_moves_none(
    api: Api, queue: As, store: SlotStore, pool: str, monkeypatch: pytest.MonkeyPatch
):
    # Given the stack's OperatorRoleArns, written for aws:PrincipalArn (the role's path included)
    monkeypatch.setenv(OPERATOR_ROLE_ARNS_VAR, f"arn:aws:iam::{ACCOUNT}:role/ops/podslots-operator")
    operator = As(api, OPERATOR)
    before = unknown_answers(operator)
    # and the queue's running task
    assert queue.allocate().status == 201
    # When an operator reads it, Then it sees what the queue sees
    read = operator.task()
    assert (read.status, read.body) == (200, queue.task().body)
    # When it reserves or ends it, Then those are the unknown task's 404 (operators never move a task)
    assert [(a.status, a.body) for a in unknown_answers(operator)[1:]] == [(a.status, a.body) for a in before[1:]]
    assert queue.task().body["status"] == "running"
    # and another role is no operator
    assert As(api, OTHER).task().status == 404


def test_a_task_stored_before_owners_were_recorded_stays_open_to_every_queue(
    queue: As, other: As, store: SlotStore, pool: str
):
    # Given a running task whose item has no owner (as every item written before this version)
    assert queue.allocate().status == 201
    boto3.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": {"S": task_pk(TASK)}, "sk": {"S": TASK_SK}},
        UpdateExpression="REMOVE #owner",
        ExpressionAttributeNames={"#owner": "owner"},
    )
    # When another queue reads it, repeats its dispatch and ends it
    # Then it may, as before
    assert other.task().status == 200
    assert other.allocate().body["outcome"] == "repeated"
    assert other.status("success").status == 200
    ended = store.get_task(TASK)
    assert ended is not None
    assert ended.status is TaskStatus.SUCCESS


def test_api_key_callers_own_their_tasks_by_the_keys_id_never_by_the_key(api: Api, store: SlotStore, pool: str):
    # Given API_KEY mode: no userArn, the key and its id in the identity
    first = As(api, None, apiKey="trial-key-value-1", apiKeyId="k1a2b3c4d5")
    second = As(api, None, apiKey="trial-key-value-2", apiKeyId="k9z8y7x6w5")
    # When the first key allocates a task
    assert first.allocate().status == 201
    # Then the task is that key's (its id recorded, not the key), and another key's read is a 404
    assert raw_task()["owner"] == {"S": "apikey:k1a2b3c4d5"}
    assert "trial-key-value-1" not in str(raw_task())
    assert first.task().status == 200
    assert second.task().status == 404


# ---- a pool's allowed_callers ---------------------------------------------------------------------


def test_a_pool_with_allowed_callers_refuses_every_other_caller_with_a_403_naming_the_pool(
    api: Api, queue: As, other: As, store: SlotStore
):
    # Given a pool that lets only the task queue's roles (a pattern) allocate
    settings = {"pod_template": {"image": AGENT_IMAGE}, "allowed_callers": [f"arn:aws:iam::{ACCOUNT}:role/task-*"]}
    assert api.put_pool(POOL, settings).status == 201
    given_ready_pods(store, POOL)
    # When the task queue allocates, Then it gets a slot
    assert queue.allocate("mine").status == 201
    # When another role, an API key or an anonymous caller allocates
    refused = [
        other.allocate("theirs"),
        As(api, None, apiKeyId="k1a2b3c4d5").allocate("theirs"),
        As(api, None).allocate("theirs"),
    ]
    # Then each is a 403 that names the pool, not its patterns, and records nothing
    for answer in refused:
        assert answer.status == 403
        assert answer.body == {
            "error": "caller_not_allowed",
            "message": f"pool {POOL} does not allow this caller to allocate (its allowed_callers)",
            "pool": POOL,
        }
    assert raw_task("theirs") == {}


def test_a_narrowed_allowed_callers_reaches_allocation_within_its_max_age(
    api: Api, queue: As, store: SlotStore, pool: str, clock: ManualClock
):
    # Given an open pool in which the queue allocates (the allocate function now knows the pool)
    assert queue.allocate("first", "plan").status == 201
    # When an operator narrows the pool to another role
    settings = {"pod_template": {"image": AGENT_IMAGE}, "allowed_callers": [f"arn:aws:iam::{ACCOUNT}:role/ci"]}
    assert api.put_pool(POOL, settings).status == 200
    # Then a container that read the pool less than CALLERS_MAX_AGE_S ago may still let the queue in
    assert queue.allocate("second", "plan").status == 201
    # and once that read is CALLERS_MAX_AGE_S old, the queue is refused
    clock.advance(CALLERS_MAX_AGE_S)
    assert queue.allocate("third", "plan").status == 403


class WaitRacedStore(SlotStore):
    """The real store; right before its next wait is recorded, another caller's request runs."""

    def __init__(self) -> None:
        super().__init__()
        self.before_wait: Callable[[], object] | None = None

    def record_waiting(self, task: Task, now: int, signal_every_s: int) -> tuple[bool, int]:
        step, self.before_wait = self.before_wait, None
        if step is not None:
            step()
        return super().record_waiting(task, now, signal_every_s)


def test_a_wait_recorded_in_a_race_never_takes_over_the_task_another_caller_made_meanwhile(
    queue: As, other: As, store: SlotStore, monkeypatch: pytest.MonkeyPatch
):
    # Given a pool with no pod, and an allocate function whose next wait is preceded by the queue's
    # own ask for the same id (it read no task; the queue's request slips in before its write)
    given_pool(store, POOL)
    raced = WaitRacedStore()
    monkeypatch.setattr(allocate_app.allocator, "store", raced)
    raced.before_wait = queue.allocate
    # When the other caller asks
    answer = other.allocate()
    # Then its wait is refused by the write's own condition: the 409, and the task stays the queue's
    taken(answer)
    assert raw_task()["owner"] == {"S": TASK_QUEUE_ROLE}
    assert queue.task().body["status"] == "pending"
