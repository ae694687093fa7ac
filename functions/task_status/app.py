"""PUT /tasks/{task_id}/status and GET /tasks/{task_id}: the slot follows the task.

`apply_pending` reserves the slot until the approval (or the reservation's deadline), `running`
resumes it, an end status frees it. The same status twice is 200 with no change; leaving an end
status is 409.

A task is its owner's: another caller gets the 404 of an unknown task. An operator (a role the
stack's OperatorRoleArns names) may read any task, and move none but its own.
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
    StatusBody,
    TaskAnswer,
    TaskIdPath,
    task_answer,
)
from podslots.clock import SystemClock
from podslots.model import TaskStatus
from podslots.observability import logger, metrics, tracer
from podslots.store import SlotStore
from podslots.tasks import TaskStatusService
from podslots.tenancy import Caller, matches_any, operator_patterns, principal_of

app = make_resolver()
service = TaskStatusService(SlotStore(), SystemClock())

_DOCS = responses({200: ("Where the task is", TaskAnswer)})


@app.put("/tasks/<task_id>/status", summary="Report a task's status", responses=_DOCS)
@tracer.capture_method
def put_status(task_id: TaskIdPath, body: Annotated[StatusBody, Body()]) -> Response[Any]:
    logger.append_keys(task_id=task_id)
    change = service.set_status(task_id, TaskStatus(body.status), _caller())
    metrics.add_dimension(name="pool", value=change.task.pool)
    return json_answer(200, task_answer(change.task) | {"changed": change.changed})


@app.get("/tasks/<task_id>", summary="Where a task is", responses=_DOCS)
@tracer.capture_method
def get_task(task_id: TaskIdPath) -> Response[Any]:
    logger.append_keys(task_id=task_id)
    caller = _caller()
    operator = Caller(caller.principal, reads_every_task=matches_any(operator_patterns(), caller.principal))
    return json_answer(200, task_answer(service.get(task_id, operator)))


def _caller() -> Caller:
    return Caller(principal_of(app.current_event.request_context.identity.raw_event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(app, event, context)
