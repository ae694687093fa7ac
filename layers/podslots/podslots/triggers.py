"""What wakes the scheduled functions: `{}` (every pool), `{"pool": name}`, or for autoscale a
CapacityShortage event as EventBridge delivers it (that pool only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from podslots.names import PoolNameStr


class ScheduledRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool: PoolNameStr | None = None


class ShortageDetail(BaseModel):
    pool: PoolNameStr
    task_id: str
    waiting: int = 0


class CapacityShortageEvent(BaseModel):
    """The fields autoscale reads of the EventBridge envelope; the others are not needed."""

    source: Literal["podslots"]
    detail_type: Literal["CapacityShortage"] = Field(alias="detail-type")
    detail: ShortageDetail


def trigger_pool(event: dict[str, Any]) -> str | None:
    """The pool a run is for (None: every pool). Raises pydantic.ValidationError on anything else."""
    if "detail-type" in event:
        return CapacityShortageEvent.model_validate(event).detail.pool
    return ScheduledRun.model_validate(event).pool
