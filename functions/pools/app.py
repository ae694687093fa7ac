"""Pool settings, live figures and history: PUT/GET/DELETE /pools/{pool}, GET /pools,
GET /pools/{pool}/events, POST/DELETE /pools/{pool}/pods/{pod}/cordon.

PUT takes the whole settings document (missing fields take their defaults): 201 when created, 200
when replaced. DELETE answers 202: the pool takes no new tasks at once, and its settings go when its
last pod has gone and the cluster shows none of it. A cordon takes one pod out of service without killing its tasks.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.api import (
    json_answer,
    make_resolver,
    resolve,
    responses,
)
from podslots.api_models import (
    CordonAnswer,
    EventLimit,
    PodName,
    PoolName,
    pod_answer,
)
from podslots.clock import SystemClock
from podslots.observability import logger, metrics, tracer
from podslots.pools import CordonChange, PoolService, PoolView
from podslots.settings import PoolSettings
from podslots.store import SlotStore

app = make_resolver()
service = PoolService(SlotStore(), SystemClock())


def _view(view: PoolView) -> dict[str, Any]:
    return {
        "pool": view.record.name,
        "deleting": view.record.deleting,
        "settings": view.record.settings.model_dump(mode="json"),
        "revision": view.revision,
        "rollout": view.rollout.as_dict(),
        "figures": view.figures.as_dict(),
        "pods": [pod_answer(p) for p in sorted(view.pods, key=lambda p: p.name)],
    }


@app.put(
    "/pools/<pool>",
    summary="Create or replace a pool's settings",
    responses=responses({200: ("Replaced", None), 201: ("Created", None)}),
)
@tracer.capture_method
def put_pool(pool: PoolName, body: Annotated[PoolSettings, Body()]) -> Response[Any]:
    metrics.add_dimension(name="pool", value=pool)
    logger.append_keys(pool=pool)
    created = service.put(pool, body)
    return json_answer(201 if created else 200, {"pool": pool, "settings": body.model_dump(mode="json")})


@app.get("/pools/<pool>", summary="A pool's settings and live figures", responses=responses({200: ("OK", None)}))
@tracer.capture_method
def get_pool(pool: PoolName) -> Response[Any]:
    logger.append_keys(pool=pool)
    return json_answer(200, _view(service.get(pool)))


@app.get("/pools", summary="Every pool")
@tracer.capture_method
def list_pools() -> Response[Any]:
    return json_answer(200, {"pools": service.names()})


@app.delete(
    "/pools/<pool>",
    summary="Drain and delete a pool",
    responses=responses({202: ("Deleting: no new tasks; the pool goes once the cluster shows none of its pods", None)}),
)
@tracer.capture_method
def delete_pool(pool: PoolName) -> Response[Any]:
    logger.append_keys(pool=pool)
    deletion = service.delete(pool)
    # Always "deleting": the settings go only once autoscale has seen the cluster hold nothing of
    # the pool (a pod with no item included), never in this call, which cannot see the cluster.
    return json_answer(202, {"pool": pool, "status": "deleting", "pods_remaining": deletion.pods_remaining})


@app.get(
    "/pools/<pool>/events",
    summary="Recent scaling and repair history, newest first",
    responses=responses({200: ("OK", None)}),
)
@tracer.capture_method
def pool_events(pool: PoolName, limit: EventLimit = 50) -> Response[Any]:
    logger.append_keys(pool=pool)
    events = service.events(pool, limit)
    return json_answer(200, {"pool": pool, "events": [{"kind": e.kind, "at": e.at, **e.detail} for e in events]})


def _caller() -> str | None:
    """The caller's IAM identity (API Gateway's word), for the pool's history."""
    identity = (app.current_event.request_context.identity.user_arn or "").strip()
    return identity or None


def _cordon_answer(change: CordonChange) -> Response[Any]:
    return json_answer(200, {**pod_answer(change.pod), "changed": change.changed})


@app.post(
    "/pools/<pool>/pods/<pod>/cordon",
    summary="Take a pod out of service: no new tasks; its tasks finish, then it is drained and replaced",
    responses=responses({200: ("The pod, cordoned", CordonAnswer)}, (400, 404, 409)),
)
@tracer.capture_method
def cordon_pod(pool: PoolName, pod: PodName) -> Response[Any]:
    logger.append_keys(pool=pool, pod=pod)
    return _cordon_answer(service.cordon(pool, pod, _caller()))


@app.delete(
    "/pools/<pool>/pods/<pod>/cordon",
    summary="Put an operator's cordoned pod back in service while it still exists",
    responses=responses({200: ("The pod, back in service", CordonAnswer)}, (400, 404, 409)),
)
@tracer.capture_method
def uncordon_pod(pool: PoolName, pod: PodName) -> Response[Any]:
    logger.append_keys(pool=pool, pod=pod)
    return _cordon_answer(service.uncordon(pool, pod, _caller()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context)
