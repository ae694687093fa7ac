"""Dispatch: the schedules (Input `{"step": name}`) and each CapacityShortage become one message per
pool on that step's SQS FIFO queue, which the step's function consumes (podslots.fanout)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.clock import SystemClock
from podslots.fanout import Dispatcher
from podslots.observability import logger, tracer
from podslots.step_queues import SqsStepQueues
from podslots.store import SlotStore
from podslots.triggers import fan_out_run

dispatcher = Dispatcher(SlotStore(), SqsStepQueues(), SystemClock())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step, pool, trigger = fan_out_run(event)
    report = dispatcher.dispatch(step, pool, trigger)
    return {"step": report.step, "trigger": report.trigger, "sent": report.sent}
