"""POST /pools/{pool}/allocations: the task queue asks for a slot at dispatch.

201 with pod and slot for a new allocation (`outcome` `placed`, or `placed_anew` with `previous`
when podslots had ended the task's slot: lost, or its reservation expired), 200 with the same pod
and slot when the task already holds one (`resumed`: a reserved slot runs again, the apply where
the plan ran; `repeated`), 503 + Retry-After when no ready pod has an idle slot (the task is
recorded as waiting and a CapacityShortage goes out). With `"expect": "resume"` (an approval), a
reservation that is gone is a 409 `reservation_gone`, never a new slot.

The caller (API Gateway's `requestContext.identity`) becomes the task's owner: another caller's
task id is a 409 `task_id_taken`, and a pool whose `allowed_callers` does not name the caller a 403.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from podslots.allocation import AllocationRequest, Allocator, Outcome
from podslots.api import (
    COMMON_ERRORS,
    json_answer,
    make_resolver,
    resolve,
    responses,
)
from podslots.api_models import (
    AllocateBody,
    AllocationAnswer,
    PoolName,
    PreviousSlot,
)
from podslots.bus import EventBridgePublisher
from podslots.clock import SystemClock
from podslots.observability import logger, metrics, tracer
from podslots.store import SlotStore
from podslots.tenancy import Caller, principal_of

app = make_resolver()
allocator = Allocator(SlotStore(), EventBridgePublisher(), SystemClock())

try:  # SnapStart's runtime hooks: in Lambda's Python runtimes, absent elsewhere
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
except ImportError:
    pass
else:
    # Every environment restored from one snapshot would share its random state, and so the same
    # spread of retries after a lost race; each reseeds from the OS on restore instead.
    register_after_restore(allocator.rng.seed)


@app.post(
    "/pools/<pool>/allocations",
    summary="Claim a slot for a task",
    responses=responses(
        {
            200: ("The task's own slot: its reservation resumed, or a repeat", AllocationAnswer),
            201: ("A new allocation; `placed_anew` says the task had a slot podslots ended", AllocationAnswer),
        },
        (*COMMON_ERRORS, 403),
    ),
)
@tracer.capture_method
def allocate(pool: PoolName, body: Annotated[AllocateBody, Body()]) -> Response[Any]:
    metrics.add_dimension(name="pool", value=pool)
    logger.append_keys(pool=pool, task_id=body.task_id)
    caller = Caller(principal_of(app.current_event.request_context.identity.raw_event))
    request = AllocationRequest(
        pool, body.task_id, body.task_type, expect_resume=body.expect == "resume", caller=caller
    )
    done = allocator.allocate(request)
    previous = done.previous
    answer = AllocationAnswer(
        task_id=done.task_id,
        pool=done.pool,
        pod=done.pod,
        slot=done.slot,
        pod_ip=done.pod_ip,
        status="running",
        outcome=done.outcome.value,
        placed_anew=done.outcome is Outcome.PLACED_ANEW,
        previous=PreviousSlot(
            pod=previous.pod, slot=previous.slot, status=previous.status.value, reason=previous.reason
        )
        if previous is not None
        else None,
    )
    return json_answer(201 if done.created else 200, answer.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context)
