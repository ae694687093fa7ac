"""Expire: one pool per message of its SQS queue (the dispatcher fans the 5-minute schedule out), or
directly `{"pool": name}` (that pool) or `{}` (every pool in turn, within the Lambda's time).

Frees reservations past their deadline: the task becomes `expired` and a ReservationExpired event
tells the task queue that the plan must run again.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.expiry import Expirer
from podslots.fanout import is_sqs_batch, run_batch
from podslots.observability import logger, tracer
from podslots.store import SlotStore
from podslots.triggers import ScheduledRun

expirer = Expirer(SlotStore(), EventBridgePublisher(), SystemClock())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_batch(event):
        return run_batch(event, context, lambda pool: expirer.run(pool, strict=True))
    run = ScheduledRun.model_validate(event)
    reports = expirer.run(run.pool, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"pools": [{"pool": r.pool, "expired": r.expired} for r in reports]}
