"""The recording under the least-privilege check (tests/support/least_privilege.py): a handler's
calls are recorded as IAM authorises them, on the template's resources; other calls are nobody's."""

from __future__ import annotations

import boto3

from podslots.store import SlotStore
from tests.conftest import TABLE
from tests.integration.conftest import Api
from tests.support import least_privilege
from tests.support.least_privilege import Call
from tests.support.pods import given_pool, given_ready_pods

SLOT_TABLE = "arn:aws:dynamodb:us-east-1:111122223333:table/SlotTable"


def recorder() -> least_privilege.Recorder:
    assert least_privilege.RECORDER is not None, "tests/conftest.py installs the recorder"
    return least_privilege.RECORDER


def test_an_allocations_transaction_is_recorded_per_item_and_its_query_on_the_index(api: Api, store: SlotStore):
    # Given a pool with a ready pod
    given_pool(store, "p")
    given_ready_pods(store, "p")
    # When the allocate handler places a task (one Query of open_slots, one TransactWriteItems; and
    # the container's first read of the pool's state, its allowed callers, kept for a few seconds)
    with recorder().fresh() as seen:
        assert api.allocate("p", "t-1").status == 201
    # Then the calls are allocate's, as IAM authorises them: the pool's read, the index's Query, each
    # item's write
    assert set(seen) == {
        Call("AllocateFunction", "dynamodb:GetItem", SLOT_TABLE),
        Call("AllocateFunction", "dynamodb:Query", f"{SLOT_TABLE}/index/open_slots"),
        Call("AllocateFunction", "dynamodb:PutItem", SLOT_TABLE),
        Call("AllocateFunction", "dynamodb:UpdateItem", SLOT_TABLE),
    }
    assert all(
        t.endswith("test_an_allocations_transaction_is_recorded_per_item_and_its_query_on_the_index")
        for t in seen.values()
    )


def test_a_shortage_is_recorded_on_the_functions_own_bus(api: Api, store: SlotStore):
    # Given a pool with no pod
    given_pool(store, "p")
    # When an allocation finds no slot (503) and signals CapacityShortage
    with recorder().fresh() as seen:
        assert api.allocate("p", "t-1").status == 503
    # Then the publish is on the bus the template gives the function (EVENT_BUS_NAME is EventBus)
    bus = "arn:aws:events:us-east-1:111122223333:event-bus/podslots-dev"
    keys = (("events:detail-type", "CapacityShortage"), ("events:source", "podslots"))
    assert Call("AllocateFunction", "events:PutEvents", bus, context=keys) in seen


def test_a_call_made_outside_any_handler_is_nobodys(aws: None):
    # When the test itself writes to the table (setup, as many tests do)
    with recorder().fresh() as seen:
        boto3.client("dynamodb").put_item(TableName=TABLE, Item={"pk": {"S": "x"}, "sk": {"S": "y"}})
    # Then no function is charged with it
    assert seen == {}


def test_the_heartbeat_may_put_pod_registered_on_the_bus_and_no_other_event():
    # Given the heartbeat's role as the template resolves it, and the bus it publishes on
    bus = str(least_privilege._resolver("dev").resolve({"Fn::GetAtt": "EventBus.Arn"}))

    def put(detail_type: str, source: str = "podslots") -> Call:
        keys = (("events:detail-type", detail_type), ("events:source", source))
        return Call("HeartbeatFunction", "events:PutEvents", bus, context=keys)

    # When it puts its PodRegistered, then IAM allows it
    assert least_privilege.check([put("PodRegistered")], whole_run=False, allowances=()) == []
    # And anything else the agents' door could be made to put is refused: another event, another source
    for refused in (put("TaskLost"), put("CapacityShortage"), put("PodRegistered", source="someone.else")):
        assert least_privilege.check([refused], whole_run=False, allowances=()) == [
            f"NOT GRANTED: HeartbeatFunction calls events:PutEvents on {bus}"
        ]
