"""API Gateway REST proxy events, built the way API Gateway builds them (and as `events/` holds)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from local.template import ROOT

EVENTS = ROOT / "events"
# Who calls, as API Gateway names a SigV4 caller: a session of the task queue's role. Every request
# of the local stack comes from it (it signs nothing; `make local` has no auth), so locally every
# task is this role's.
ACCOUNT = "123456789012"
TASK_QUEUE_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/task-queue/session"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def proxy_event(
    method: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
    *,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    content_type: str | None = "application/json",
    stage: str = "v1",
    user_arn: str | None = TASK_QUEUE_SESSION,
) -> dict[str, Any]:
    """One proxy event: `resource` is the template path (`/pools/{pool}`), `path` its filled form.

    `user_arn` is the caller's identity as API Gateway puts it (`requestContext.identity.userArn`);
    None leaves it out, as API_KEY mode does.
    """
    params = path_parameters or {}
    path = resource
    for key, value in params.items():
        path = path.replace("{" + key + "}", value)
    if raw_body is None and body is not None:
        raw_body = json.dumps(body)
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "task-queue/1.0"}
    if content_type and raw_body is not None:
        headers["Content-Type"] = content_type
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": "27/Nov/2026:22:00:00 +0000",
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795816800000,
            "requestId": request_id,
            "identity": {
                "sourceIp": "10.0.0.1",
                "userAgent": "task-queue/1.0",
                "userArn": user_arn,
                "caller": "AROAEXAMPLE:session" if user_arn else None,
                "accountId": ACCOUNT if user_arn else None,
            },
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": raw_body,
        "isBase64Encoded": False,
    }


def answer_json(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"]) if answer.get("body") else None


__all__ = ["ACCOUNT", "EVENTS", "TASK_QUEUE_SESSION", "Path", "answer_json", "load_event", "proxy_event"]
