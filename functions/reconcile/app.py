"""Reconcile: one pool per message of its SQS queue (the dispatcher fans the minute's schedule out),
or directly `{"pool": name}` (that pool) or `{}` (every pool in turn, within the Lambda's time).

Brings a pool's items in line with its pods in the cluster.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.cluster_gateways import pool_gateways
from podslots.fanout import is_sqs_batch, run_batch
from podslots.kubeconfig import ClusterConnections
from podslots.observability import logger, tracer
from podslots.reconcile import Reconciler
from podslots.store import SlotStore
from podslots.triggers import ScheduledRun

connections = ClusterConnections()
cluster_for = pool_gateways(lambda: connections)  # read at call time: tests swap `connections`
reconciler = Reconciler(SlotStore(), cluster_for, EventBridgePublisher(), SystemClock())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_batch(event):
        return run_batch(event, context, lambda pool: reconciler.run(pool, strict=True))
    run = ScheduledRun.model_validate(event)
    reports = reconciler.run(run.pool, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"pools": [{**r.summary(), "pool": r.pool, "figures": r.figures} for r in reports]}
