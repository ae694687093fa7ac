"""What the four API functions share: the resolver, and domain errors mapped to HTTP.

The shapes (path parameters, bodies, answers) are in `api_models`; the requests refused before
routing in `request_guards`.

Each domain error kind maps to one status code here, and nowhere else. Every error answer is
`{"error": <code>, "message": <what and which field>, ...}`; nothing a caller sends becomes a 5xx.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from podslots.api_models import ErrorAnswer
from podslots.errors import (
    BelowPodSecurity,
    CallerNotAllowed,
    Conflict,
    FieldProblems,
    Gone,
    NoCapacity,
    NotFound,
    PodSlotsError,
)
from podslots.observability import count, logger, metrics
from podslots.request_guards import body_too_large, hostile_json, not_json
from podslots.store import is_transient


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
        found = (e.get("ctx") or {}).get("error")
        if isinstance(found, FieldProblems):  # one check, several fields: each named apart
            problems += [{"field": path, "problem": problem} for path, problem in found.found]
            continue
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


def resolve(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The API handlers' entry: refuse oversize or non-JSON bodies before parsing, then route."""
    metrics.clear_metrics()  # a warm container starts each request without the last one's dimensions
    refused = body_too_large(event) or not_json(event) or hostile_json(event)
    if refused is not None:
        logger.info("request refused before routing", extra={"status": refused["statusCode"]})
        return refused
    return app.resolve(event, context)
