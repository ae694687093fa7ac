"""A DynamoDB fault that says nothing about the data is never a 5xx of ours, nor a wrong answer.

Throttling past botocore's retries, or a transaction that keeps being cancelled for a conflict,
tells the caller nothing about the pool or the task: every operation is safe to retry, so the
answer is 503 `store_busy` with Retry-After (nothing moved), or a 409 to try again, never a 500 or
a 404 for a pool that exists. Through the real handlers, with the table faults in process.
"""

from __future__ import annotations

from local.table_faults import Fault, TableFaults, faults_in_process
from podslots.store import SlotStore
from tests.integration.conftest import Api

POOL = "outage"
SETTINGS = {"pod_template": {"image": "registry.example/tf-agent:1.9"}}


def test_an_allocation_throttled_past_the_retries_is_a_503_to_retry_and_changes_nothing(api: Api, store: SlotStore):
    # Given a pool, and DynamoDB throttling every read and write of the allocation (retries included)
    assert api.put_pool(POOL, SETTINGS).status == 201
    faults = TableFaults()
    faults.next("Query", Fault.THROTTLE, times=20)
    faults.next("GetItem", Fault.THROTTLE, times=20)
    # When the queue asks for a slot
    with faults_in_process(faults, transient=False):
        answer = api.allocate(POOL, "t1")
    # Then it is told to come back, in JSON, and nothing was recorded for the task
    assert answer.status == 503
    assert answer.body["error"] == "store_busy"
    assert answer.headers["Retry-After"] == "1"
    assert store.get_task("t1") is None
    # And once DynamoDB answers again, the same request is an ordinary answer (no pod yet: waiting)
    again = api.allocate(POOL, "t1")
    assert (again.status, again.body["error"]) == (503, "no_capacity")


def test_a_pool_delete_that_meets_a_conflict_deletes_the_pool_not_a_404(api: Api, store: SlotStore):
    # Given a pool, and the DELETE's mark meets one TransactionConflict
    assert api.put_pool(POOL, SETTINGS).status == 201
    faults = TableFaults()
    faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT)
    # When the operator deletes it
    with faults_in_process(faults, transient=False):
        answer = api.call("DELETE", "/pools/{pool}", pool=POOL)
    # Then the conflict is tried again: the pool is deleting, not reported missing
    assert (answer.status, answer.body["status"]) == (202, "deleting")
    record = store.pool_state(POOL)
    assert record is not None
    assert record.deleting


def test_a_pool_delete_that_keeps_meeting_conflicts_is_a_409_to_retry_never_a_404(api: Api, store: SlotStore):
    # Given a pool whose mark keeps meeting conflicts
    assert api.put_pool(POOL, SETTINGS).status == 201
    faults = TableFaults()
    faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, times=50)
    # When the operator deletes it
    with faults_in_process(faults, transient=False):
        answer = api.call("DELETE", "/pools/{pool}", pool=POOL)
    # Then the answer says to try again, and the pool is there, untouched
    assert (answer.status, answer.body["error"]) == (409, "conflict")
    record = store.pool_state(POOL)
    assert record is not None
    assert not record.deleting
    # And a DELETE of a pool that really is not there is still a 404
    assert api.call("DELETE", "/pools/{pool}", pool="never-made").status == 404
