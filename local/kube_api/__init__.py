"""A Kubernetes API stand-in for pods that the official client talks to over HTTP."""

from .errors import KubeError, status_body
from .faults import ApiCall, DropConnection, ErrorStatus, Fault, FaultRule, SlowAnswer
from .server import KubeApiStandIn
from .store import Pod, rfc3339

__all__ = [
    "ApiCall",
    "DropConnection",
    "ErrorStatus",
    "Fault",
    "FaultRule",
    "KubeApiStandIn",
    "KubeError",
    "Pod",
    "SlowAnswer",
    "rfc3339",
    "status_body",
]
