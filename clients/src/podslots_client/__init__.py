"""Clients for podslots: the task queue's (`QueueClient`), the agent pod's heartbeat loop (`Agent`),
and the operators' (`PoolsClient`, and the `podslots` command).

This package talks to the API over HTTP only; it shares no code with the server.
"""

from podslots_client.auth import ApiKey, Auth, SigV4
from podslots_client.client import PoolsClient, QueueClient
from podslots_client.errors import (
    BadRequest,
    BodyTooLarge,
    CannotSign,
    Conflict,
    Forbidden,
    Gone,
    InvalidBody,
    InvalidInput,
    InvalidJson,
    InvalidRequest,
    NoCapacity,
    NotFound,
    PodSlotsError,
    ServerError,
    Throttled,
    UnexpectedAnswer,
    Unreachable,
    UnsupportedMediaType,
)
from podslots_client.heartbeat import Agent, AgentExit
from podslots_client.models import Allocation, Pod, Pool, PoolDeletion, PoolEvent, PoolPut, Slot, StatusChange, Task
from podslots_client.retry import Backoff

__all__ = [
    "Agent",
    "AgentExit",
    "Allocation",
    "ApiKey",
    "Auth",
    "Backoff",
    "BadRequest",
    "BodyTooLarge",
    "CannotSign",
    "Conflict",
    "Forbidden",
    "Gone",
    "InvalidBody",
    "InvalidInput",
    "InvalidJson",
    "InvalidRequest",
    "NoCapacity",
    "NotFound",
    "Pod",
    "PodSlotsError",
    "Pool",
    "PoolDeletion",
    "PoolEvent",
    "PoolPut",
    "PoolsClient",
    "QueueClient",
    "ServerError",
    "SigV4",
    "Slot",
    "StatusChange",
    "Task",
    "Throttled",
    "UnexpectedAnswer",
    "Unreachable",
    "UnsupportedMediaType",
]
