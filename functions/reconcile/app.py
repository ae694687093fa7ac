"""Reconcile, every minute (EventBridge schedule, Input `{}`; `{"pool": name}` for one pool).

Brings each pool's items in line with its pods in the cluster, within the Lambda's remaining time.
"""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.cluster_gateways import pool_gateways
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
@event_parser(model=ScheduledRun)
def lambda_handler(event: ScheduledRun, context: LambdaContext) -> dict[str, Any]:
    reports = reconciler.run(event.pool, time_left_s=lambda: context.get_remaining_time_in_millis() / 1000)
    return {"pools": [{**r.summary(), "pool": r.pool, "figures": r.figures} for r in reports]}
