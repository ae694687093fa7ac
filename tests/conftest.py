"""Shared fixtures: the environment every Lambda would see, moto's AWS, the table from the template.

The environment is set before any podslots module is imported, as Lambda sets it before the
handler module loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "podslots-test",
        "EVENT_BUS_NAME": "podslots-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "PodSlots",
        "POWERTOOLS_SERVICE_NAME": "podslots-tests",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)

import boto3
from moto import mock_aws

from local.template import table_definition
from podslots.clock import ManualClock
from podslots.store import SlotStore, bind_table

TABLE = os.environ["TABLE_NAME"]
BUS = os.environ["EVENT_BUS_NAME"]


@dataclass
class LambdaContext:
    """What Powertools reads from the Lambda context object."""

    function_name: str = "podslots-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:podslots-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 55_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class BusTap:
    """Reads back what reached the bus: a rule on `source = podslots` forwards to an SQS queue."""

    def __init__(self) -> None:
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        self.queue_url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": ["podslots"]}))
        events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
        self._sqs = sqs
        self.seen: list[dict[str, Any]] = []

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        while True:
            got = self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if not messages:
                break
            for m in messages:
                self.seen.append(json.loads(m["Body"]))
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return [e for e in self.seen if detail_type is None or e["detail-type"] == detail_type]


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        bind_table(TABLE)
        yield


@pytest.fixture
def bus(aws: None) -> BusTap:
    return BusTap()


@pytest.fixture
def store(aws: None) -> SlotStore:
    return SlotStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()
