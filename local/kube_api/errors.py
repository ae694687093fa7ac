"""Kubernetes-shaped API errors and their `Status` bodies."""

from __future__ import annotations

from typing import Any

# HTTP status -> the `reason` the real API server puts in its Status body.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def reason_for(code: int) -> str:
    """The Kubernetes `reason` for an HTTP status code ("Unknown" if none fits)."""
    return _REASONS.get(code, "Unknown")


def status_body(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `Status` object as the API server sends it with a failed request."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or reason_for(code),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class KubeError(Exception):
    """A request the API server refuses; carries the Status it answers with."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or reason_for(code)
        self.name = name

    def body(self) -> dict[str, Any]:
        details = {"name": self.name, "kind": "pods"} if self.name else None
        return status_body(self.code, self.message, self.reason, details)

    @classmethod
    def not_found(cls, name: str) -> KubeError:
        return cls(404, f'pods "{name}" not found', name=name)

    @classmethod
    def already_exists(cls, name: str) -> KubeError:
        return cls(409, f'pods "{name}" already exists', "AlreadyExists", name)

    @classmethod
    def conflict(cls, name: str, why: str) -> KubeError:
        message = f'Operation cannot be fulfilled on pods "{name}": {why}'
        return cls(409, message, "Conflict", name)

    @classmethod
    def bad_request(cls, message: str) -> KubeError:
        return cls(400, message)

    @classmethod
    def invalid(cls, message: str, name: str | None = None) -> KubeError:
        return cls(422, message, "Invalid", name)
