"""Reads back what reached an EventBridge bus (moto): a rule on `source = podslots` feeds an SQS queue.

The tests use it to see the events the functions put, and the local stack to deliver them to the
functions whose rules match, as EventBridge would.
"""

from __future__ import annotations

import json
from typing import Any

import boto3


class BusTap:
    """Reads back what reached the bus: a rule on `source = podslots` forwards to an SQS queue."""

    def __init__(self, bus: str) -> None:
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        events.create_event_bus(Name=bus)
        self.queue_url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="tap", EventBusName=bus, EventPattern=json.dumps({"source": ["podslots"]}))
        events.put_targets(Rule="tap", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
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
