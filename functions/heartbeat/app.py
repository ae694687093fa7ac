"""POST /pools/{pool}/pods/{pod}/heartbeat: the agent in each pod registers and beats.

The first beat makes a starting pod ready (and, while the cluster has not yet given the pod's IP,
puts PodRegistered on the bus, so reconcile records it at once); a beat brings an unhealthy pod back. A beat without
`held_tasks` keeps the pod alive and frees no slot (the agent did not say what it holds). The
answer lists the pod's slots and their tasks. A draining or unknown pod gets 410: its agent should exit.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.api import (
    COMMON_ERRORS,
    json_answer,
    make_resolver,
    resolve,
    responses,
)
from podslots.api_models import (
    HeartbeatBody,
    PodAnswer,
    PodName,
    PoolName,
    pod_answer,
)
from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.heartbeat import HeartbeatService
from podslots.observability import logger, metrics, tracer
from podslots.store import SlotStore

app = make_resolver()
service = HeartbeatService(SlotStore(), SystemClock(), EventBridgePublisher())


@app.post(
    "/pools/<pool>/pods/<pod>/heartbeat",
    summary="Agent registration and heartbeat",
    responses=responses({200: ("The pod's slots and their tasks", PodAnswer)}, (*COMMON_ERRORS, 410)),
)
@tracer.capture_method
def heartbeat(pool: PoolName, pod: PodName, body: Annotated[HeartbeatBody, Body()]) -> Response[Any]:
    metrics.add_dimension(name="pool", value=pool)
    logger.append_keys(pool=pool, pod=pod)
    ip = str(body.pod_ip) if body.pod_ip is not None else None
    held = list(body.held_tasks) if body.held_tasks is not None else None  # None: the agent does not know
    return json_answer(200, pod_answer(service.beat(pool, pod, held, ip)))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context)
