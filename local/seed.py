"""The world an event file speaks of, made in a fresh embedded stack through the real handlers.

A fresh stack holds nothing, so nearly every event would meet a 404. What the events/ files assume
is small, and `seed` makes exactly that:

- the pool the event names (its `pool` path parameter, or the pool of a schedule input or a
  CapacityShortage; else `default_pool`), put with the default settings (`PUT /pools/{pool}`; the
  agent image is the one field without a default);
- one agent pod in it, ready: running in the embedded cluster as the pool's manifest makes it
  (podspec), named as the event's `pod` path parameter and at the IP its body reports, when it has
  them (a heartbeat speaks of its own pod). Reconcile, run for that pool (`{"pool": name}`), adopts
  the pod as a labelled pod without an item and records its uid and IP; then its agent's first beat
  (`POST /pools/{pool}/pods/{pod}/heartbeat`) makes it ready. Autoscale does not make it: with
  `min_pods` 0 (the default) it creates pods only for waiting tasks, and names them itself;
- for an event with a `task_id` path parameter, that task allocated on the pod
  (`POST /pools/{pool}/allocations`, as `plan_and_apply`, so that `apply_pending` can reserve its
  slot).
- for an approval (an allocation whose body says `"expect": "resume"`), its task allocated on the
  pod and its plan waiting for approval (`PUT /tasks/{id}/status` `apply_pending`), so the
  approval resumes the reserved slot.

Each step must get the answer it gets in a deployment, or the seeding fails with that answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from local.stack import Answer, Stack
from local.template import function_ids
from podslots.fanout import is_sqs_batch, pool_of
from podslots.podspec import new_pod_name, pod_manifest
from podslots.settings import PoolSettings
from podslots.triggers import trigger_pool

RECONCILE = "ReconcileFunction"  # the template's logical id of the function that adopts labelled pods
AGENT_IMAGE = "registry.example/tf-agent:1.9"
POD_IP = "10.42.0.2"
TASK_TYPE = "plan_and_apply"


class SeedError(Exception):
    """A seeding step did not get the answer it would get in a deployment."""


@dataclass
class World:
    pool: str
    pod: str
    pod_ip: str
    task: str | None = None
    reserved: bool = False  # the task's plan waits for approval (its slot reserved)

    def __str__(self) -> str:
        text = f"pool {self.pool} (default settings), pod {self.pod} ready at {self.pod_ip}"
        where = "reserved (apply_pending)" if self.reserved else "running"
        return text + (f", task {self.task} ({TASK_TYPE}) {where} on it" if self.task else "")


def event_pool(event: dict[str, Any]) -> str | None:
    """The pool an event is for: an API event's `pool` path parameter, a fan-out batch's first
    message's pool, or a scheduled run's pool."""
    if "httpMethod" in event:
        return (event.get("pathParameters") or {}).get("pool")
    if is_sqs_batch(event) and event["Records"]:
        return pool_of(event["Records"][0]["body"])
    try:
        return trigger_pool(event)
    except ValidationError:
        return None


def reported_ip(event: dict[str, Any]) -> str | None:
    """The `pod_ip` an API event's JSON body reports, if it reports one."""
    try:
        body = json.loads(event.get("body") or "null")
    except (TypeError, ValueError):
        return None
    ip = body.get("pod_ip") if isinstance(body, dict) else None
    return ip if isinstance(ip, str) else None


def seed(stack: Stack, event: dict[str, Any], default_pool: str) -> World:
    params = event.get("pathParameters") or {}
    pool = event_pool(event) or default_pool
    put = _call(stack, 201, "PUT", "/pools/{pool}", {"pod_template": {"image": AGENT_IMAGE}}, pool=pool)
    settings = PoolSettings.model_validate(put.body["settings"])

    pod = params.get("pod") or new_pod_name(pool)
    ip = (reported_ip(event) if params.get("pod") else None) or POD_IP
    manifest = pod_manifest(pool, pod, settings, os.environ["API_BASE_URL"])
    stack.kube.add_pod(settings.namespace, {**manifest, "status": {"phase": "Running", "podIP": ip}})
    if RECONCILE not in function_ids():
        raise SeedError(f"template.yaml has no {RECONCILE}, which adopts the pod")
    reconciled = stack.invoke(RECONCILE, {"pool": pool})
    if [report.get("adopted") for report in reconciled["pools"]] != [[pod]]:
        raise SeedError(f"{RECONCILE} did not adopt pod {pod}: {json.dumps(reconciled)}")
    beat = {"held_tasks": [], "pod_ip": ip}
    ready = _call(stack, 200, "POST", "/pools/{pool}/pods/{pod}/heartbeat", beat, pool=pool, pod=pod)
    if ready.body.get("state") != "ready":
        raise SeedError(f"pod {pod} is {ready.body.get('state')} after its first beat, not ready")
    world = World(pool, pod, ip)

    if task_id := params.get("task_id"):
        allocation = {"task_id": task_id, "task_type": TASK_TYPE}
        _call(stack, 201, "POST", "/pools/{pool}/allocations", allocation, pool=pool)
        world.task = task_id
    if (approval := _approval(event)) is not None:
        allocation = {"task_id": approval, "task_type": TASK_TYPE}
        _call(stack, 201, "POST", "/pools/{pool}/allocations", allocation, pool=pool)
        _call(stack, 200, "PUT", "/tasks/{task_id}/status", {"status": "apply_pending"}, task_id=approval)
        world.task, world.reserved = approval, True
    return world


def _approval(event: dict[str, Any]) -> str | None:
    """The task of an allocation event that expects a resume (an approval), if it is one."""
    if event.get("resource") != "/pools/{pool}/allocations":
        return None
    try:
        body = json.loads(event.get("body") or "{}")
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("expect") != "resume":
        return None
    task_id = body.get("task_id")
    return task_id if isinstance(task_id, str) else None


def _call(stack: Stack, expected: int, method: str, resource: str, body: Any = None, **path: str) -> Answer:
    answer = stack.call(method, resource, body, **path)
    if answer.status != expected:
        where = f"{method} {resource.format(**path)}"
        raise SeedError(f"{where} answered {answer.status}, not {expected}: {json.dumps(answer.body)}")
    return answer
