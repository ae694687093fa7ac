"""What the four API functions share: request and answer models, and errors mapped to HTTP.

Each domain error kind maps to one status code here, and nowhere else. Every error answer is
`{"error": <code>, "message": <what and which field>, ...}`; nothing a caller sends becomes a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from http import HTTPStatus
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from podslots.errors import BelowPodSecurity, CallerNotAllowed, Conflict, Gone, NoCapacity, NotFound, PodSlotsError
from podslots.model import Pod, Task, TaskStatus, TaskType, cordon_order, shown_cordon
from podslots.names import (
    DNS_SUBDOMAIN,
    DNS_SUBDOMAIN_MAX,
    POOL_NAME,
    POOL_NAME_MAX,
    TASK_ID,
    TASK_ID_MAX,
    TaskIdStr,
)
from podslots.observability import count, logger, metrics
from podslots.store import is_transient

MAX_BODY_BYTES = 64 * 1024
MAX_BODY_DEPTH = 32  # nesting of arrays and objects; the deepest valid body is 4 levels deep
MAX_INT_DIGITS = 30  # no field takes a number this long; Python refuses past 4,300 digits anyway
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_INT_DIGITS + 1},}}")

PoolName = Annotated[str, Path(pattern=POOL_NAME, max_length=POOL_NAME_MAX, description="A DNS label")]
PodName = Annotated[str, Path(pattern=DNS_SUBDOMAIN, max_length=DNS_SUBDOMAIN_MAX)]
TaskIdPath = Annotated[str, Path(pattern=TASK_ID, max_length=TASK_ID_MAX)]
TaskId = TaskIdStr
EventLimit = Annotated[int, Query(ge=1, le=500, description="How many events, newest first")]


# ---- request bodies ---------------------------------------------------------------------------


class AllocateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: TaskId
    task_type: TaskType
    expect: Literal["resume"] | None = Field(
        default=None,
        description=(
            "`resume`: this is an approval. The task's reserved slot (200), or 409 `reservation_gone` "
            "if the reservation is gone (expired, lost, unknown task); never a new slot"
        ),
    )


class StatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["running", "apply_pending", "success", "applied", "failed", "cancelled"]


class HeartbeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    held_tasks: list[TaskId] | None = Field(
        default=None,
        max_length=64,
        description=(
            "The tasks the agent holds, when it could read its task list: `[]` means it holds nothing, "
            "and reconcile frees (as lost) a slot whose task a recent listing leaves out, past the leak "
            "grace. Absent (or null): unknown; the beat keeps the pod alive and frees nothing."
        ),
    )
    pod_ip: IPv4Address | IPv6Address | None = None


# ---- answers ----------------------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    error: str
    message: str


class PreviousSlot(BaseModel):
    pod: str
    slot: str
    status: Literal["lost", "expired"] = Field(description="How the task's previous slot ended")
    reason: str | None = Field(description="Why: `reservation expired`, reconcile's reason for a loss, ...")


class AllocationAnswer(BaseModel):
    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    status: Literal["running"]
    outcome: Literal["placed", "placed_anew", "resumed", "repeated"] = Field(
        description=(
            "201: `placed` (a first slot), `placed_anew` (podslots had ended its slot: see `previous`); "
            "200: `resumed` (its reserved slot runs again), `repeated` (it already ran in this slot)"
        )
    )
    placed_anew: bool = Field(description="The task had a slot that podslots ended (lost, expired); this is another")
    previous: PreviousSlot | None = Field(default=None, description="Placed anew: the slot it had and why it ended")


class TaskAnswer(BaseModel):
    task_id: str
    pool: str
    pod: str | None
    slot: str | None
    task_type: TaskType
    status: TaskStatus
    reserved_until: int | None = None


class SlotAnswer(BaseModel):
    slot: str
    status: str
    task_id: str | None = None
    task_type: str | None = None
    since: int | None = None
    reserved_until: int | None = None


class PodAnswer(BaseModel):
    pool: str
    pod: str
    state: str
    busy: int
    pod_ip: str | None
    heartbeat_at: int | None
    held_at: int | None = Field(
        default=None, description="The last beat that listed the agent's tasks (leaks are judged from it alone)"
    )
    slots: list[SlotAnswer]
    cordoned: str | None = Field(
        default=None,
        description="Why the pod takes no new task (its tasks finish; then it is drained): the strongest of"
        " `cordon_reasons`, null while it has none",
    )
    cordon_reasons: list[str] = Field(
        default_factory=list,
        description="Every reason the pod is cordoned for (`pool deleted`, `outdated revision`, `operator`),"
        " strongest first; it takes no new task while any holds",
    )
    revision: str | None = Field(default=None, description="The pool template's revision the pod was made from")


class CordonAnswer(PodAnswer):
    changed: bool


def task_answer(task: Task) -> dict[str, Any]:
    return TaskAnswer(
        task_id=task.task_id,
        pool=task.pool,
        pod=task.pod,
        slot=task.slot,
        task_type=task.task_type,
        status=task.status,
        reserved_until=task.reserved_until,
    ).model_dump(mode="json")


def pod_answer(pod: Pod) -> dict[str, Any]:
    return PodAnswer(
        pool=pod.pool,
        pod=pod.name,
        state=pod.state.value,
        busy=pod.busy,
        pod_ip=pod.pod_ip,
        heartbeat_at=pod.heartbeat_at,
        held_at=pod.held_at,
        cordoned=shown_cordon(pod.cordon_reasons),
        cordon_reasons=cordon_order(pod.cordon_reasons),
        revision=pod.revision,
        slots=[
            SlotAnswer(
                slot=key,
                status=slot.status.value,
                task_id=slot.task_id,
                task_type=slot.task_type.value if slot.task_type else None,
                since=slot.since,
                reserved_until=slot.reserved_until,
            )
            for key, slot in sorted(pod.slots.items(), key=lambda kv: int(kv[0][1:]))
        ],
    ).model_dump(mode="json")


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers or {},
    )


def error_answer(status: int, code: str, message: str, **extra: Any) -> Response[Any]:
    return json_answer(status, {"error": code, "message": message, **extra})


ERROR_TEXT = {
    400: "The body is not JSON, or a path name is malformed",
    403: "The pool's allowed_callers does not name the caller (caller_not_allowed)",
    404: "Unknown pool, pod or task (another caller's task is unknown to this one)",
    409: "The request contradicts the current state (the message says which); task_id_taken: another caller's task",
    410: "The pod is draining or unknown: the agent should exit",
    413: "The body is over 64 KiB",
    415: "The body is not application/json",
    422: "The body breaks the schema or a rule; the message names the field",
    503: "No ready pod has an idle slot (no_capacity), or the slot table is busy (store_busy); retry after Retry-After",
}
COMMON_ERRORS = (400, 404, 409, 413, 415, 422, 503)
STORE_BUSY_RETRY_AFTER_S = 1


def responses(
    ok: dict[int, tuple[str, type[BaseModel] | None]], errors: tuple[int, ...] = COMMON_ERRORS
) -> dict[int, OpenAPIResponse]:
    """The OpenAPI `responses` of a route: its success answers and the errors it can give."""
    documented: dict[int, OpenAPIResponse] = {}
    for code, (text, model) in ok.items():
        documented[code] = (
            {"description": text, "content": {"application/json": {"model": model}}} if model else {"description": text}
        )
    for code in errors:
        documented[code] = {
            "description": ERROR_TEXT[code],
            "content": {"application/json": {"model": ErrorAnswer}},
        }
    return documented


# ---- errors to HTTP, in one place -----------------------------------------------------------

_STATUS_OF: list[tuple[type[PodSlotsError], HTTPStatus]] = [
    (NotFound, HTTPStatus.NOT_FOUND),
    (CallerNotAllowed, HTTPStatus.FORBIDDEN),
    (Conflict, HTTPStatus.CONFLICT),
    (Gone, HTTPStatus.GONE),
    (NoCapacity, HTTPStatus.SERVICE_UNAVAILABLE),
    (BelowPodSecurity, HTTPStatus.UNPROCESSABLE_ENTITY),
]


def _domain_error(exc: PodSlotsError) -> Response[Any]:
    status = next((s for kind, s in _STATUS_OF if isinstance(exc, kind)), HTTPStatus.CONFLICT)
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    headers: dict[str, str] = {}
    if isinstance(exc, NoCapacity):
        body["retry_after_s"] = exc.retry_after_s
        headers["Retry-After"] = str(exc.retry_after_s)
    body.update({k: v for k, v in exc.details.items() if k not in body})
    return json_answer(int(status), body, headers)


def _store_busy(exc: Exception) -> Response[Any]:
    """DynamoDB was busy or failed past the client's retries: nothing is known to have moved, and
    every operation is safe to retry, so the caller is told to come back (never a 5xx of ours). Only
    the failure's kind is logged: DynamoDB's words are not ours to write down."""
    count("StoreBusy")
    logger.warning("slot table busy; answered 503", extra={"failure": type(exc).__name__})
    return json_answer(
        503,
        {
            "error": "store_busy",
            "message": "the slot table is busy; retry after Retry-After seconds",
            "retry_after_s": STORE_BUSY_RETRY_AFTER_S,
        },
        {"Retry-After": str(STORE_BUSY_RETRY_AFTER_S)},
    )


def _where(loc: Any) -> str:
    parts = [str(p) for p in (loc or ()) if p not in ("body",)]
    return ".".join(parts) or "body"


def _validation_error(exc: RequestValidationError) -> Response[Any]:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_answer(400, "invalid_json", "the body is not valid JSON")
    problems = []
    for e in errors:
        loc = tuple(e.get("loc") or ())
        where = _where(loc)
        if loc and loc[0] == "path":
            where = str(loc[-1])
        msg = str(e.get("msg", "is invalid"))
        if e.get("type") == "extra_forbidden":
            msg = "is not a known field"
        elif e.get("type") == "missing":
            msg = "is required"
        problems.append({"field": where, "problem": msg})
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    status = 400 if any(p for p in errors if tuple(p.get("loc") or ())[:1] == ("path",)) else 422
    return error_answer(status, "invalid_request", summary or "the request is invalid", problems=problems)


def make_resolver() -> APIGatewayRestResolver:
    """A REST resolver with validation on and our error mapping registered."""
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(PodSlotsError)  # type: ignore[untyped-decorator]  # Powertools' decorator is untyped
    def _on_domain(exc: PodSlotsError) -> Response[Any]:
        return _domain_error(exc)

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]  # Powertools' decorator is untyped
    def _on_content_type(exc: RequestUnsupportedContentType) -> Response[Any]:
        return error_answer(415, "unsupported_media_type", "send the body as application/json")

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]  # Powertools' decorator is untyped
    def _on_validation(exc: RequestValidationError) -> Response[Any]:
        return _validation_error(exc)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]  # Powertools' decorator is untyped
    def _on_unexpected(exc: Exception) -> Response[Any]:
        if not is_transient(exc):
            raise exc  # a defect: Lambda reports it, as before
        return _store_busy(exc)

    @app.not_found
    def _on_not_found(exc: Exception) -> Response[Any]:
        return error_answer(404, "not_found", f"no route for {app.current_event.http_method} {app.current_event.path}")

    return app


def body_too_large(event: dict[str, Any]) -> dict[str, Any] | None:
    """API Gateway allows 10 MB; podslots' bodies are small, so anything over 64 KiB is refused.

    Answered before routing, so an oversize body is never parsed.
    """
    body = event.get("body") or ""
    size = len(body.encode("utf-8")) if isinstance(body, str) else len(body)
    if event.get("isBase64Encoded"):
        try:
            size = len(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            return _proxy_answer(400, {"error": "invalid_body", "message": "the body is not valid base64"})
    if size > MAX_BODY_BYTES:
        return _proxy_answer(
            413,
            {"error": "body_too_large", "message": f"the body is {size} bytes; at most {MAX_BODY_BYTES}"},
        )
    return None


def _proxy_answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def not_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """A body sent as anything but JSON is a 415 before Powertools tries to parse it as a form.

    (Powertools raises a plain ValueError, a 5xx, for `multipart/form-data` without a boundary.)
    Media types are case-insensitive (RFC 9110): the header is lowered here, because Powertools
    compares it as written.
    """
    if not event.get("body"):
        return None
    headers = event.get("headers") or {}
    name = next((k for k, v in headers.items() if k.lower() == "content-type" and isinstance(v, str)), None)
    raw = headers[name] if name is not None else "application/json"
    media = raw.split(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        if name is not None:
            headers[name] = raw.lower()
            for key, values in (event.get("multiValueHeaders") or {}).items():
                if key.lower() == "content-type" and isinstance(values, list):
                    event["multiValueHeaders"][key] = [str(v).lower() for v in values]
        return None
    return _proxy_answer(415, {"error": "unsupported_media_type", "message": "send the body as application/json"})


def hostile_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """A body nested deeper than any valid one, or with an absurdly long number, is a 400.

    Parsed before Powertools does: Python's parser raises RecursionError on deep nesting and
    ValueError past 4,300 digits, which would otherwise be 5xx answers to a 20 KB body.
    """
    body = event.get("body")
    if not body or event.get("isBase64Encoded") or not isinstance(body, str):
        return None
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_BODY_DEPTH:
        return _proxy_answer(
            400, {"error": "invalid_json", "message": f"the body nests deeper than {MAX_BODY_DEPTH} levels"}
        )
    if _LONG_NUMBER.search(_outside_strings(body)):
        return _proxy_answer(
            400, {"error": "invalid_json", "message": f"the body has a number of more than {MAX_INT_DIGITS} digits"}
        )
    return None


def _outside_strings(body: str) -> str:
    """The body with every JSON string emptied (a task id of digits is not a number)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)


def resolve(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The API handlers' entry: refuse oversize or non-JSON bodies before parsing, then route."""
    metrics.clear_metrics()  # a warm container starts each request without the last one's dimensions
    refused = body_too_large(event) or not_json(event) or hostile_json(event)
    if refused is not None:
        logger.info("request refused before routing", extra={"status": refused["statusCode"]})
        return refused
    return app.resolve(event, context)
