"""The expire handler's two failure paths, through the handler: a pool whose step fails is recorded
in its history, and an expiry that meets a conflict is checked against its own write. These are
the calls (dynamodb:PutItem, dynamodb:GetItem) expire's role grants for them (least privilege)."""

from __future__ import annotations

import importlib
from types import ModuleType

import boto3
import pytest

from local.apigw import load_event
from local.table_faults import Fault, TableFaults, faults_in_process
from podslots.bus import EventBridgePublisher
from podslots.clock import ManualClock
from podslots.model import TaskStatus
from podslots.store import SlotStore
from podslots.store.keys import TASK_SK, task_pk
from tests.conftest import TABLE, BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.pods import given_pool, given_ready_pods

POOL = "terraform"


@pytest.fixture
def expire(bus: BusTap, clock: ManualClock) -> ModuleType:
    handler = importlib.import_module("functions.expire.app")
    handler.expirer.clock = clock
    handler.expirer.bus = EventBridgePublisher()  # a fresh client inside this moto mock
    return handler


def run(expire: ModuleType) -> list[dict[str, object]]:
    result = expire.lambda_handler(load_event("expire_schedule.json"), LambdaContext())
    pools: list[dict[str, object]] = result["pools"]
    return pools


def given_a_reservation_past_its_deadline(api: Api, store: SlotStore, clock: ManualClock) -> None:
    given_pool(store, POOL)
    given_ready_pods(store, POOL)
    assert api.allocate(POOL, "plan-1", "plan_and_apply").status == 201
    deadline = api.status("plan-1", "apply_pending").body["reserved_until"]
    clock.set(deadline + 1)


def test_an_expiry_that_meets_a_conflict_keeps_the_reservation_for_the_next_run(
    api: Api, store: SlotStore, clock: ManualClock, expire: ModuleType
):
    # Given a reservation past its deadline
    given_a_reservation_past_its_deadline(api, store, clock)
    # When the expire handler's write meets a conflict (another writer moved an item)
    faults = TableFaults()
    faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT)
    with faults_in_process(faults):
        first = run(expire)
    # Then it reads the task, finds the write was not its own, and expires nothing
    assert faults.injected == {Fault.TRANSACTION_CONFLICT: 1}
    assert first == [{"pool": POOL, "expired": []}]
    task = store.get_task("plan-1")
    assert task is not None
    assert task.status is TaskStatus.APPLY_PENDING
    # And the next run frees it
    assert run(expire) == [{"pool": POOL, "expired": ["plan-1"]}]


def test_a_reservation_the_step_cannot_read_fails_that_pool_and_is_recorded_in_its_history(
    store: SlotStore, clock: ManualClock, expire: ModuleType
):
    # Given a pool, and a reserved task item of a status this version does not know (a newer
    # version's, or written by hand)
    given_pool(store, POOL)
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": task_pk("odd")},
            "sk": {"S": TASK_SK},
            "task_id": {"S": "odd"},
            "pool": {"S": POOL},
            "task_type": {"S": "plan_and_apply"},
            "status": {"S": "paused"},
            "updated_at": {"N": "1"},
            "rsv_pool": {"S": POOL},
            "rsv_until": {"N": "1"},
        },
    )
    clock.set(100)
    # When the expire handler runs
    (report,) = run(expire)
    # Then the pool's step failed, and its history says so
    assert report["pool"] == POOL
    failed = [e for e in store.events(POOL, 10) if e.kind == "PoolStepFailed"]
    assert [e.detail["step"] for e in failed] == ["expire"]
