"""What every policy shares: the pool settings (podslots' own defaults), the horizon, a task's run."""

from __future__ import annotations

from dataclasses import dataclass

from bench.day.traffic import HOUR, RESERVATION_TTL_S, Task, Trace
from podslots.settings import PoolSettings

MIN_PODS = 1  # a Deployment's HPA cannot go below 1; podslots gets the same floor
MAX_PODS = 60  # high enough that no policy is capped on this traffic
EVERY_S = 60.0  # autoscale (and the HPA-like loop) evaluate every minute, as the template schedules
DRAIN_S = RESERVATION_TTL_S + HOUR  # after the last arrival: every reservation has expired by then


def pool_settings(**change: object) -> PoolSettings:
    """podslots' defaults (3 slots, the packed rule with one pod of headroom, 300 s delay), with the
    floor and ceiling above; `change` overrides (`scaling="utilization"`: the seed's 80/20 rule)."""
    return PoolSettings.model_validate(
        {
            "min_pods": MIN_PODS,
            "max_pods": MAX_PODS,
            "pod_template": {"image": "registry.example/tf-agent:1.9"},
            **change,
        }
    )


def horizon(trace: Trace) -> float:
    """Every policy is measured over the same span: the traffic, then time for the last tasks to end."""
    return trace.end_of_traffic + DRAIN_S


@dataclass(eq=False)
class Run:
    """A task's progress in the plain-Python models."""

    task: Task
    phase: str = "queued"  # queued, running (plan or apply), reserved, apply (after approval), done, killed, expired
    pod: object = None
    slot: int | None = None
    started: float | None = None

    @property
    def holds_slot(self) -> bool:
        return self.phase in ("running", "reserved", "apply")
