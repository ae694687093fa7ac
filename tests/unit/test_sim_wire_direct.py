"""DynamoDB's answers through the simulation's direct writer (`bench/day/sim_wire.py`) are the
answers moto writes, through boto3, for the kinds of answer the store reads: items of every
attribute type, a Query page, an update's returned values, and a cancelled transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

from bench.day.sim_wire import direct_answers
from local.template import table_definition

TABLE = "sim-wire-check"
ITEM = {
    "pk": {"S": "pool#a"},
    "sk": {"S": "pod#1"},
    "busy": {"N": "2"},
    "ready": {"BOOL": True},
    "gone": {"NULL": True},
    "cordons": {"SS": ["pool deleted", "outdated revision"]},
    "held": {"L": [{"S": "t-1"}, {"S": "t-2"}]},
    "slots": {"M": {"s0": {"M": {"status": {"S": "running"}, "since": {"N": "1799661607.5"}}}}},
}


def _answers(context: Callable[[], AbstractContextManager[None]]) -> list[Any]:
    with mock_aws(), context():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        client.put_item(TableName=TABLE, Item=ITEM)
        key = {"pk": ITEM["pk"], "sk": ITEM["sk"]}
        answers: list[Any] = [
            client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"],
            client.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": ITEM["pk"]},
                Limit=1,
            ),
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET busy = busy + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )["Attributes"],
        ]
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": key,
                            "ConditionExpression": "busy = :zero",
                            "ExpressionAttributeValues": {":zero": {"N": "0"}},
                        }
                    }
                ]
            )
        except ClientError as error:
            answers.append((error.response["Error"]["Code"], error.response.get("CancellationReasons")))
        for answer in answers:
            if isinstance(answer, dict):
                answer.pop("ResponseMetadata", None)
        return answers


def test_direct_answers_read_back_as_motos_through_boto3():
    # Given the same table, read and written with moto's serializer and with the direct one
    moto_way = _answers(nullcontext)
    direct_way = _answers(direct_answers)
    # Then boto3 reads the same answers, the cancelled transaction's included
    assert direct_way == moto_way
    assert moto_way[0]["slots"]["M"]["s0"]["M"]["since"] == {"N": "1799661607.5"}
    assert moto_way[3][0] == "TransactionCanceledException"
