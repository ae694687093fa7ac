"""The SQS gateway: the only module that sends the fan-out's messages, one per pool and step.

Each step has its own FIFO queue (template.yaml: ReconcileQueue, AutoscaleQueue, ExpireQueue). A
message names one pool; its group is the pool, so one run per pool and step at a time and the pools
in parallel; its deduplication id names the pool, the step and what triggered it, so SQS drops a
resend of the same trigger (a retried dispatch) and never an event-driven run in the minute of a
scheduled one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Step = Literal["reconcile", "autoscale", "expire"]
STEPS: tuple[Step, ...] = ("reconcile", "autoscale", "expire")
QUEUE_URL_VARIABLES: Mapping[Step, str] = {
    "reconcile": "RECONCILE_QUEUE_URL",
    "autoscale": "AUTOSCALE_QUEUE_URL",
    "expire": "EXPIRE_QUEUE_URL",
}
BATCH = 10  # SendMessageBatch's most entries per call


@dataclass(frozen=True)
class PoolRun:
    """One message: run `step` for `pool`, deduplicated by `dedup`."""

    pool: str
    dedup: str


class StepQueues(Protocol):
    def send(self, step: Step, runs: Sequence[PoolRun]) -> list[str]:
        """Send every run; the pools whose message was not accepted."""
        ...


class SqsStepQueues:
    """Sends in batches of 10. A batch the service refuses as a whole (after botocore's retries)
    counts its pools as unsent; the next batches still go."""

    def __init__(self, urls: Mapping[Step, str] | None = None, client: Any = None) -> None:
        self.urls = (
            dict(urls) if urls is not None else {s: os.environ.get(v, "") for s, v in QUEUE_URL_VARIABLES.items()}
        )
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 (the dispatcher alone sends; the steps only receive from Lambda)

            self._client = boto3.client("sqs", endpoint_url=os.environ.get("SQS_ENDPOINT") or None)
        return self._client

    def send(self, step: Step, runs: Sequence[PoolRun]) -> list[str]:
        unsent: list[str] = []
        for start in range(0, len(runs), BATCH):
            chunk = runs[start : start + BATCH]
            unsent += self._send_batch(self.urls[step], chunk)
        return unsent

    def _send_batch(self, url: str, chunk: Sequence[PoolRun]) -> list[str]:
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps({"pool": run.pool}),
                "MessageGroupId": run.pool,
                "MessageDeduplicationId": run.dedup,
            }
            for i, run in enumerate(chunk)
        ]
        try:
            answer = self.client.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception:
            return [run.pool for run in chunk]
        return [chunk[int(failed["Id"])].pool for failed in answer.get("Failed", [])]


class RecordingQueues:
    """An in-memory StepQueues for unit tests and the benchmark's model: it keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Step, PoolRun]] = []

    def send(self, step: Step, runs: Sequence[PoolRun]) -> list[str]:
        self.sent += [(step, run) for run in runs]
        return []
