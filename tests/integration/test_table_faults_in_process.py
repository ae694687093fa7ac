"""The table faults in process (`faults_in_process`) are honest: a conflict and a throttle apply
nothing, a lost answer applies and then fails, on in-process moto as on its HTTP server."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from local.table_faults import Fault, TableFaults, faults_in_process
from tests.conftest import TABLE


def item(key: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": key}, "sk": {"S": "#T"}}


def stored(key: str) -> bool:
    return "Item" in boto3.client("dynamodb").get_item(TableName=TABLE, Key=item(key))


def test_a_conflicted_transaction_applies_nothing_and_names_one_part(aws: None):
    # Given the next transaction meets a TransactionConflict
    faults = TableFaults()
    faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT)
    client = boto3.client("dynamodb")
    parts = [{"Put": {"TableName": TABLE, "Item": item(k)}} for k in ("a", "b")]
    # When it is sent
    with faults_in_process(faults), pytest.raises(ClientError) as refused:
        client.transact_write_items(TransactItems=parts)
    # Then it is cancelled with one part in conflict, and neither part was written
    codes = [r["Code"] for r in refused.value.response["CancellationReasons"]]
    assert sorted(codes) == ["None", "TransactionConflict"]
    assert not stored("a")
    assert not stored("b")
    assert faults.injected == {Fault.TRANSACTION_CONFLICT: 1}


def test_throttles_past_the_retries_apply_nothing(aws: None):
    # Given every attempt of the next put is throttled (botocore's retries included)
    faults = TableFaults()
    client = boto3.client("dynamodb", config=boto3.session.Config(retries={"total_max_attempts": 3}))
    faults.next("PutItem", Fault.THROTTLE, times=3)
    with faults_in_process(faults, transient=False), pytest.raises(ClientError) as refused:
        client.put_item(TableName=TABLE, Item=item("t"))
    # Then the caller sees the throttling, and nothing was written
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert not stored("t")
    assert faults.injected == {Fault.THROTTLE: 3}


def test_a_lost_answer_was_applied_and_the_retry_meets_the_write(aws: None):
    # Given the answer to the next conditional put is lost
    faults = TableFaults()
    faults.next("PutItem", Fault.ANSWER_LOST)
    client = boto3.client("dynamodb")
    # When it is sent (botocore retries the 500 once)
    with faults_in_process(faults), pytest.raises(ClientError) as refused:
        client.put_item(TableName=TABLE, Item=item("l"), ConditionExpression="attribute_not_exists(pk)")
    # Then the first attempt was applied: the retry fails its condition on the item it wrote
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert stored("l")
    assert faults.injected == {Fault.ANSWER_LOST: 1}


def test_a_transient_throttle_lets_the_retry_through(aws: None):
    # Given throttles due on the next three puts, transient (the default)
    faults = TableFaults()
    faults.next("PutItem", Fault.THROTTLE, times=3)
    with faults_in_process(faults):
        # When one put is sent
        boto3.client("dynamodb").put_item(TableName=TABLE, Item=item("r"))
    # Then its first attempt was throttled, and botocore's retry of it went through
    assert stored("r")
    assert faults.injected == {Fault.THROTTLE: 1}
