"""Expire, every 5 minutes (EventBridge schedule, Input `{}`; `{"pool": name}` for one pool).

Frees reservations past their deadline: the task becomes `expired` and a ReservationExpired event
tells the task queue that the plan must run again.
"""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.expiry import Expirer
from podslots.observability import logger, tracer
from podslots.store import SlotStore
from podslots.triggers import ScheduledRun

expirer = Expirer(SlotStore(), EventBridgePublisher(), SystemClock())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=ScheduledRun)
def lambda_handler(event: ScheduledRun, context: LambdaContext) -> dict[str, Any]:
    reports = expirer.run(event.pool, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"pools": [{"pool": r.pool, "expired": r.expired} for r in reports]}
