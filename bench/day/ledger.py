"""What a policy's run records, the same way for all four: pods and slots over time, and each task's fate.

The pod and slot counts are step functions of time; `advance` integrates them exactly between
changes (pod-hours, and the lower bound: used slots packed into full pods, per pool, never below
the pool's `min_pods`, which every policy is held to), and keeps one sample a minute for the
pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAMPLE_EVERY_S = 60.0


@dataclass
class Fate:
    """One task of the trace, as the queue saw it."""

    wait_s: float | None = None  # arrival to its first slot
    interrupted: str | None = None  # "running" or "reserved": what it was when its pod went
    apply_lost: bool = False  # a plan_and_apply whose apply could not run on its plan's pod
    expired: bool = False  # its reservation ran out (no approval within the TTL)
    done: bool = False


@dataclass
class PoolState:
    pods: int = 0  # every pod that costs: starting, ready, terminating
    running: int = 0
    reserved: int = 0
    pinned: int = 0  # pods holding at least one reserved slot (only a policy that knows pods reports it)


@dataclass
class Ledger:
    pools: list[str]
    slots_per_pod: int
    floor_pods: int = 1  # min_pods: the bound pays for it too, or a quiet night flatters nobody but the bound
    now: float = 0.0
    pod_seconds: float = 0.0
    bound_seconds: float = 0.0
    pinned_seconds: float = 0.0
    pins_tracked: bool = False
    scale_up: int = 0
    scale_down: int = 0
    state: dict[str, PoolState] = field(default_factory=dict)
    fates: dict[str, Fate] = field(default_factory=dict)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, pods, running, reserved

    def __post_init__(self) -> None:
        self.state = {pool: PoolState() for pool in self.pools}

    def fate(self, task_id: str) -> Fate:
        return self.fates.setdefault(task_id, Fate())

    def advance(self, t: float) -> None:
        """Integrate the current counts up to `t` (counts change only after this call)."""
        if t <= self.now:
            return
        span = t - self.now
        pods = running = reserved = 0
        bound = pinned = 0
        for s in self.state.values():
            pinned += s.pinned
            pods += s.pods
            running += s.running
            reserved += s.reserved
            bound += max(self.floor_pods, math.ceil((s.running + s.reserved) / self.slots_per_pod))
        self.pod_seconds += pods * span
        self.bound_seconds += bound * span
        self.pinned_seconds += pinned * span
        next_sample = (len(self.samples)) * SAMPLE_EVERY_S
        while next_sample < t:
            self.samples.append((next_sample, pods, running, reserved))
            next_sample += SAMPLE_EVERY_S
        self.now = t

    def add(self, pool: str, pods: int = 0, running: int = 0, reserved: int = 0) -> None:
        s = self.state[pool]
        s.pods += pods
        s.running += running
        s.reserved += reserved
        assert min(s.pods, s.running, s.reserved) >= 0, (pool, s)

    def set(self, pool: str, pods: int, running: int, reserved: int, pinned: int | None = None) -> None:
        self.state[pool] = PoolState(pods, running, reserved, pinned or 0)
        self.pins_tracked |= pinned is not None
