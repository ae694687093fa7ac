"""What wakes the functions.

- A step function (reconcile, autoscale, expire): an SQS batch of fan-out messages (one pool each,
  `podslots.fanout`), or a direct invocation: `{"pool": name}` (that pool), `{}` (every pool in
  turn: an operator's run, `make invoke`), or for autoscale a CapacityShortage event as EventBridge
  delivers it (that pool only).
- The dispatcher: its schedules' Input `{"step": name}` (every pool; `"pool"` narrows it to one),
  a CapacityShortage event (autoscale, that event's pool), or a PodRegistered event (reconcile, that
  event's pool: it records the new pod's IP at once).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from podslots.names import PoolNameStr
from podslots.step_queues import Step


class ScheduledRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool: PoolNameStr | None = None


class FanOutRun(BaseModel):
    """A dispatcher schedule's Input, named after the step it fans out."""

    model_config = ConfigDict(extra="forbid")
    step: Step
    pool: PoolNameStr | None = None


class ShortageDetail(BaseModel):
    pool: PoolNameStr
    task_id: str
    waiting: int = 0


class CapacityShortageEvent(BaseModel):
    """The fields autoscale and the dispatcher read of the EventBridge envelope."""

    id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9-]*$")
    source: Literal["podslots"]
    detail_type: Literal["CapacityShortage"] = Field(alias="detail-type")
    detail: ShortageDetail


class RegisteredDetail(BaseModel):
    pool: PoolNameStr
    pod: str


class PodRegisteredEvent(BaseModel):
    """The fields the dispatcher reads of a PodRegistered envelope (the heartbeat puts it on the bus)."""

    id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9-]*$")
    source: Literal["podslots"]
    detail_type: Literal["PodRegistered"] = Field(alias="detail-type")
    detail: RegisteredDetail


def trigger_pool(event: dict[str, Any]) -> str | None:
    """The pool a run is for (None: every pool). Raises pydantic.ValidationError on anything else."""
    if "detail-type" in event:
        return CapacityShortageEvent.model_validate(event).detail.pool
    return ScheduledRun.model_validate(event).pool


def fan_out_run(event: dict[str, Any]) -> tuple[Step, str | None, str | None]:
    """(step, pool or None for every pool, event id or None for a schedule) of a dispatcher event."""
    if event.get("detail-type") == "PodRegistered":
        registered = PodRegisteredEvent.model_validate(event)
        return "reconcile", registered.detail.pool, registered.id or None
    if "detail-type" in event:
        shortage = CapacityShortageEvent.model_validate(event)
        return "autoscale", shortage.detail.pool, shortage.id or None
    run = FanOutRun.model_validate(event)
    return run.step, run.pool, None
