"""Handlers invoked as Lambda would invoke them, on moto, routed by `template.yaml`'s own routes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from local.apigw import load_event, proxy_event
from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer, moto_server
from local.routes import api_routes, route_for
from local.template import table_definition
from podslots.bus import EventBridgePublisher
from podslots.clock import ManualClock
from podslots.store import bind_table
from tests.conftest import TABLE, BusTap, LambdaContext


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """Sends API Gateway proxy events to the real handlers, with the test's clock wired in."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.context = LambdaContext()
        for route in api_routes():
            module = route.module()
            for attr in ("allocator", "service"):
                step = getattr(module, attr, None)
                if step is not None:
                    step.clock = clock
                    if hasattr(step, "bus"):
                        step.bus = EventBridgePublisher()  # a fresh client inside this moto mock

    def invoke(self, event: dict[str, Any]) -> Answer:
        raw = route_for(event).module().lambda_handler(event, self.context)
        headers = dict(raw.get("headers") or {})
        for key, values in (raw.get("multiValueHeaders") or {}).items():
            headers.setdefault(key, values[-1])
        body = json.loads(raw["body"]) if raw.get("body") else None
        return Answer(raw["statusCode"], body, headers)

    def event(self, name: str, **path: str) -> dict[str, Any]:
        """A file of events/, its path parameters optionally changed."""
        event = load_event(name)
        if path:
            params = {**event["pathParameters"], **path}
            return proxy_event(event["httpMethod"], event["resource"], params, raw_body=event["body"])
        return event

    def call(self, method: str, resource: str, body: Any = None, **path: str) -> Answer:
        return self.invoke(proxy_event(method, resource, path, body))

    # The calls of the contract, by name.
    def allocate(self, pool: str, task_id: str, task_type: str = "plan") -> Answer:
        body = {"task_id": task_id, "task_type": task_type}
        return self.call("POST", "/pools/{pool}/allocations", body, pool=pool)

    def status(self, task_id: str, status: str) -> Answer:
        return self.call("PUT", "/tasks/{task_id}/status", {"status": status}, task_id=task_id)

    def task(self, task_id: str) -> Answer:
        return self.call("GET", "/tasks/{task_id}", task_id=task_id)

    def beat(self, pool: str, pod: str, held: list[str] | None = None, pod_ip: str | None = None) -> Answer:
        body: dict[str, Any] = {"held_tasks": held or []}
        if pod_ip:
            body["pod_ip"] = pod_ip
        return self.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", body, pool=pool, pod=pod)

    def put_pool(self, pool: str, settings: dict[str, Any]) -> Answer:
        return self.call("PUT", "/pools/{pool}", settings, pool=pool)

    def get_pool(self, pool: str) -> Answer:
        return self.call("GET", "/pools/{pool}", pool=pool)


@pytest.fixture
def api(bus: BusTap, clock: ManualClock) -> Api:
    return Api(clock)


@pytest.fixture
def server() -> Iterator[MotoServer]:
    """moto's HTTP server (dispatcher serialized) with a table of the template's shape, bound.

    moto's backends are process-wide, so each test gets a table of its own (`server.table`).
    """
    with moto_server() as running:
        running.table = f"podslots-{uuid.uuid4().hex[:8]}"
        boto3.client("dynamodb", endpoint_url=running.url).create_table(**table_definition(running.table))
        bind_table(running.table, host=running.url)
        yield running
    bind_table(TABLE)


@pytest.fixture
def kube(clock: ManualClock) -> Iterator[KubeApiStandIn]:
    """The Kubernetes API stand-in on the test's clock (pod ages and deletion times follow it)."""
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as k:
        yield k
