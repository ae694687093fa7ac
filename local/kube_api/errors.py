"""Refusals as the API server words them: an HTTP status and a `Status` body."""

from __future__ import annotations

from typing import Any

# HTTP status -> the `reason` the real API server puts in its Status body.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, reason: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A `Status` object, which clients (and podslots' ClusterError) read the reason and message from."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if name:
        body["details"] = {"name": name, "kind": "pods"}
    return body


class KubeError(Exception):
    """A request the API server refuses, with the Status it answers."""

    def __init__(self, code: int, message: str, reason: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, message, reason, name)

    @classmethod
    def not_found(cls, name: str) -> KubeError:
        return cls(404, f'pods "{name}" not found', name=name)
