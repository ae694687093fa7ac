"""The scaling rules (docs/architecture.md, "Scaling"), as pure functions of a pool's figures and settings.

`packed` (the default):
- target = ceil((used + waiting) / slots_per_pod) + headroom_pods, and at least
  ceil((used + waiting + warm_slots) / slots_per_pod) so the pool keeps `warm_slots` idle slots,
  and ceil((used + waiting + prewarm) / slots_per_pod) for the idle slots the pool's history
  expects the next 15 minutes to need (`prewarm: true`, podslots.prewarm).
- Up to the target at once; down to it only after the target stayed below the pool's size for the
  delay (the drain then removes only idle pods).

`utilization` (the rule before it):
- capacity: the slots of ready and starting pods; used: their running and reserved slots;
  waiting: tasks that asked within the last 5 minutes and hold no slot yet.
- Up when something waits or used / capacity > up: ceil((used + waiting) / (slots_per_pod x up))
  pods; an empty pool with a waiting task gets a pod at once (cold start).
- Down only after utilization stayed below `down` for the delay: ceil(used / (slots_per_pod x
  (up + down) / 2)) pods, the midpoint so the next step does not scale straight back up.
- Always within [min_pods, max_pods].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from podslots.settings import PoolSettings, ScalingRule


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    NONE = "none"


@dataclass(frozen=True)
class Load:
    pods: int  # ready + starting (unhealthy and draining pods are not capacity)
    capacity: int  # their slots
    used: int  # their running + reserved slots
    waiting: int
    prewarm: int = 0  # idle slots the history expects the next 15 minutes to need (`prewarm: true`)

    @property
    def utilization(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class Decision:
    direction: Direction
    target: int
    reason: str
    low_since: int | None  # when utilization went below the down threshold (None: it is not low)

    def delta(self, load: Load) -> int:
        return self.target - load.pods


def bounded(settings: PoolSettings, pods: int) -> int:
    """`pods` held within `min_pods` and `max_pods`: every size a rule or a roll-out asks for."""
    return max(settings.min_pods, min(settings.max_pods, pods))


def decide(load: Load, settings: PoolSettings, low_since: int | None, now: int) -> Decision:
    """The pool's own rule (`settings.scaling`)."""
    if settings.scaling is ScalingRule.PACKED:
        return decide_packed(load, settings, low_since, now)
    return decide_utilization(load, settings, low_since, now)


def packed_target(load: Load, settings: PoolSettings) -> int:
    """Pods the used and waiting slots fill, plus the headroom, and enough for the warm slots; bounded."""
    spp, demand = settings.slots_per_pod, load.used + load.waiting
    warm = max(settings.warm_slots, load.prewarm)
    wanted = max(math.ceil(demand / spp) + settings.headroom_pods, math.ceil((demand + warm) / spp))
    return bounded(settings, wanted)


def decide_packed(load: Load, settings: PoolSettings, low_since: int | None, now: int) -> Decision:
    """Up at once, down after the delay. Pinned pods (a reserved slot) are the drain's to spare."""
    target = packed_target(load, settings)
    low = target < load.pods
    low_since = (low_since if low_since is not None else now) if low else None
    if load.pods > settings.max_pods:
        return Decision(Direction.DOWN, settings.max_pods, "above max_pods", low_since)
    if target > load.pods:
        if load.pods < settings.min_pods:
            reason = "below min_pods"
        elif load.capacity == 0 and load.waiting > 0:
            reason = "cold start: no capacity and a task waits"
        else:
            reason = _packed_reason(load, settings)
        return Decision(Direction.UP, target, reason, low_since)
    if low and low_since is not None and now - low_since >= settings.scale_down_delay_s:
        reason = f"{_packed_reason(load, settings)} for {now - low_since}s"
        return Decision(Direction.DOWN, target, reason, low_since)
    return Decision(Direction.NONE, load.pods, "steady", low_since)


def _packed_reason(load: Load, settings: PoolSettings) -> str:
    reason = f"{load.used} used and {load.waiting} waiting slot(s) + {settings.headroom_pods} pod(s) of headroom"
    if settings.warm_slots:
        reason += f", {settings.warm_slots} warm slot(s)"
    if load.prewarm:
        reason += f", {load.prewarm} pre-warm slot(s)"
    return reason


def decide_utilization(load: Load, settings: PoolSettings, low_since: int | None, now: int) -> Decision:
    """The 80/20 rule of earlier releases (`scaling: utilization`), unchanged."""
    spp, up, down = settings.slots_per_pod, settings.scale_up_utilization, settings.scale_down_utilization
    low = load.waiting == 0 and load.utilization < down
    low_since = (low_since if low_since is not None else now) if low else None

    wanted = max(1, math.ceil((load.used + load.waiting) / (spp * up)))
    busy = load.waiting > 0 or load.utilization > up
    if load.pods > settings.max_pods:
        return Decision(Direction.DOWN, settings.max_pods, "above max_pods", low_since)
    if load.pods < settings.min_pods:
        return Decision(Direction.UP, bounded(settings, wanted if busy else 0), "below min_pods", low_since)
    if busy:
        target = bounded(settings, wanted)
        if load.capacity == 0 and load.waiting > 0:
            reason = "cold start: no capacity and a task waits"
        elif load.waiting:
            reason = f"{load.waiting} task(s) waiting"
        else:
            reason = f"utilization {load.utilization:.0%} above {up:.0%}"
        if target > load.pods:
            return Decision(Direction.UP, target, reason, low_since)
        return Decision(Direction.NONE, load.pods, f"{reason}; at max_pods", low_since)
    if low and low_since is not None and now - low_since >= settings.scale_down_delay_s:
        target = bounded(settings, math.ceil(load.used / (spp * (up + down) / 2)))
        if target < load.pods:
            reason = f"utilization {load.utilization:.0%} below {down:.0%} for {now - low_since}s"
            return Decision(Direction.DOWN, target, reason, low_since)
    return Decision(Direction.NONE, load.pods, "steady", low_since)
