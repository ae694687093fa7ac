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

from datetime import datetime
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


REGISTERED_WINDOW_S = 10  # the PodRegistered events of a pool within one such window make one reconcile run


class PodRegisteredEvent(BaseModel):
    """The fields the dispatcher reads of a PodRegistered envelope (the heartbeat puts it on the bus)."""

    id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9-]*$")
    time: datetime | None = None  # EventBridge's, when the event was put
    source: Literal["podslots"]
    detail_type: Literal["PodRegistered"] = Field(alias="detail-type")
    detail: RegisteredDetail

    @property
    def trigger(self) -> str | None:
        """`registered-<window>`: a step that creates N pods makes N registrations within seconds,
        and each would queue a run of the pool (a LIST each); one run per pool and 10 s window of the
        event's time records them all but those that register after its LIST, which the next window
        or the minute's run records. Without a time, the event's own id (never coalesced)."""
        if self.time is None:
            return f"event-{self.id}" if self.id else None
        return f"registered-{int(self.time.timestamp()) // REGISTERED_WINDOW_S}"


def trigger_pool(event: dict[str, Any]) -> str | None:
    """The pool a run is for (None: every pool). Raises pydantic.ValidationError on anything else."""
    if "detail-type" in event:
        return CapacityShortageEvent.model_validate(event).detail.pool
    return ScheduledRun.model_validate(event).pool


def fan_out_run(event: dict[str, Any]) -> tuple[Step, str | None, str | None]:
    """(step, pool or None for every pool, trigger or None for a schedule) of a dispatcher event.

    The trigger names what the run is for in its deduplication id (`podslots.fanout.dedup_id`): an
    event's is `event-<id>` (a CapacityShortage) or `registered-<window>` (PodRegistered), never the
    schedule's `minute-<n>`, so an event-driven run is never dropped as the schedule's duplicate."""
    if event.get("detail-type") == "PodRegistered":
        registered = PodRegisteredEvent.model_validate(event)
        return "reconcile", registered.detail.pool, registered.trigger
    if "detail-type" in event:
        shortage = CapacityShortageEvent.model_validate(event)
        return "autoscale", shortage.detail.pool, f"event-{shortage.id}" if shortage.id else None
    run = FanOutRun.model_validate(event)
    return run.step, run.pool, None
