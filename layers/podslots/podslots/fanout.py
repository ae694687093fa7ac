"""The fan-out: the schedules and CapacityShortage become one message per pool on the step's SQS
FIFO queue (`Dispatcher`), and a step function runs one pool per message (`pool_of`, `is_sqs_batch`).

Why a dispatcher and queues (docs/architecture.md, "Fan-out per pool"): one invocation per pool and
minute, isolated (a slow or failing cluster costs its own pool's run only), at most one run per pool
and step at a time (the message group), bounded concurrency (the event source mapping), retries of
the failed pool alone (partial batch failures) and a dead-letter queue, from one registry Query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, ValidationError

from podslots.clock import Clock
from podslots.names import PoolNameStr
from podslots.observability import logger
from podslots.ports import PoolNames
from podslots.step_queues import PoolRun, Step, StepQueues


class PoolRunMessage(BaseModel):
    """A fan-out message's body: the pool to run the step for."""

    model_config = ConfigDict(extra="forbid")
    pool: PoolNameStr


class FanOutFailed(Exception):
    """Some pools' messages were not sent; the dispatch raises, so EventBridge delivers it again
    (what was sent is deduplicated by SQS)."""


@dataclass
class DispatchReport:
    step: Step
    trigger: str
    sent: int = 0
    unsent: list[str] = field(default_factory=list)


def dedup_id(step: Step, pool: str, trigger: str) -> str:
    """`<step>:<pool>:<trigger>`: within SQS's 128 characters (a pool name has at most 40, the
    trigger is `minute-<n>`, `event-<EventBridge id>` or `registered-<n>`)."""
    return f"{step}:{pool}:{trigger}"


class Dispatcher:
    """One message per pool for a step: every registered pool (a schedule), or one (an event)."""

    def __init__(self, store: PoolNames, queues: StepQueues, clock: Clock) -> None:
        self.store = store
        self.queues = queues
        self.clock = clock

    def dispatch(self, step: Step, pool: str | None = None, trigger: str | None = None) -> DispatchReport:
        """Send the step's messages. A scheduled run's trigger is its minute, so a retried delivery of
        the same schedule sends nothing twice; an event's is given (`triggers.fan_out_run`). Pools with
        unreadable settings get their message too: their run reports them (`PoolSettingsUnreadable`)."""
        trigger = trigger or f"minute-{int(self.clock.now() // 60)}"
        pools = [pool] if pool is not None else self.store.list_pools()
        report = DispatchReport(step, trigger)
        report.unsent = self.queues.send(step, [PoolRun(p, dedup_id(step, p, trigger)) for p in pools])
        report.sent = len(pools) - len(report.unsent)
        if report.unsent:
            logger.error("pool runs not dispatched", extra={"step": step, "pools": report.unsent})
            raise FanOutFailed(f"{len(report.unsent)} of {len(pools)} {step} messages not sent")
        return report


def is_sqs_batch(event: Any) -> bool:
    """An SQS event source mapping's batch, as opposed to a direct invocation (`{}`, `{"pool": p}`)."""
    if not isinstance(event, dict) or set(event) != {"Records"} or not isinstance(event["Records"], list):
        return False
    return all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in event["Records"])


def pool_of(body: str) -> str:
    """The pool a message names; pydantic.ValidationError for anything else (the message fails, and
    after the queue's maxReceiveCount goes to the dead-letter queue)."""
    return PoolRunMessage.model_validate_json(body).pool


TIME_MARGIN_S = 5  # a message not started with less than this left of the invocation is failed (retried)


class OutOfTime(Exception):
    """Too little of the invocation is left to start this pool's run: SQS delivers it again."""


def run_batch(event: dict[str, Any], context: Any, run_pool: Callable[[str], object]) -> dict[str, Any]:
    """Run each message's pool; answer the failed ones (`batchItemFailures`), so SQS delivers those
    alone again (the mapping's `ReportBatchItemFailures`).

    `SqsFifoPartialProcessor` with `skip_group_on_error`: Powertools' BatchProcessor for FIFO queues
    (EventType.SQS); after a failure it fails the rest of that pool's messages in the batch, unrun,
    so a pool's runs never overtake each other, and goes on with the other pools.
    """

    def one(record: SQSRecord) -> None:
        if context.get_remaining_time_in_millis() / 1000 < TIME_MARGIN_S:
            raise OutOfTime
        try:
            pool = pool_of(record.body)
        except ValidationError:
            logger.error("fan-out message unreadable; it fails", extra={"message_id": record.message_id})
            raise UnreadableMessage from None  # the body, not ours to quote, stays out of every record
        run_pool(pool)

    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    # A failed pool is that pool's (PoolStepFailed, the dead letters), not the function's: the answer
    # names it even when it was the whole batch, and the invocation succeeds.
    processor.raise_on_entire_batch_failure = False
    return dict(process_partial_response(event=event, record_handler=one, processor=processor, context=context))


class UnreadableMessage(Exception):
    """A message whose body is not `{"pool": name}`: it fails, and ends in the dead-letter queue."""
