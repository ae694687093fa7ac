"""Autoscale: one pool per message of its SQS queue (the dispatcher fans out the minute's schedule,
and each CapacityShortage as a message for that event's pool, so a cold pool gets its first pod
within seconds), or directly `{"pool": name}`, `{}` (every pool in turn) or a CapacityShortage event.
"""

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.autoscale import Autoscaler
from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.cluster_gateways import pool_gateways
from podslots.fanout import is_sqs_batch, run_batch
from podslots.kubeconfig import ClusterConnections
from podslots.observability import logger, tracer
from podslots.store import SlotStore
from podslots.triggers import trigger_pool

connections = ClusterConnections()
cluster_for = pool_gateways(lambda: connections)  # read at call time: tests swap `connections`
autoscaler = Autoscaler(
    SlotStore(), cluster_for, EventBridgePublisher(), SystemClock(), os.environ.get("API_BASE_URL", "")
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_batch(event):
        return run_batch(event, context, lambda pool: autoscaler.run(pool, strict=True))
    pool = trigger_pool(event)
    reports = autoscaler.run(pool, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"pools": [r.summary() | {"pool": r.pool} for r in reports]}
