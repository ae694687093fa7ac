"""The seeded trace every policy replays, and the pod start-up draws they share.

One trace per (seed, hours, pools, start hour): the policies differ only in how they place and
remove pods, never in the work they are given. Arrivals are a Poisson process thinned to a
working-day curve (quiet night, morning ramp, afternoon peak, quieter weekends).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

HOUR = 3600.0
DAY = 24 * HOUR
RESERVATION_TTL_S = DAY  # podslots' default reservation_ttl_s; the queue gives up on approvals then too

# Tasks per hour per pool, by hour of day (a weekday); weekends run at WEEKEND_FACTOR of it.
DAY_CURVE = [1, 1, 0.5, 0.5, 0.5, 1, 2, 5, 12, 20, 24, 22, 16, 20, 28, 30, 26, 18, 10, 6, 4, 3, 2, 1]
WEEKEND_FACTOR = 0.15
MIX = (("plan", 0.50), ("plan_and_apply", 0.35), ("apply", 0.15))


@dataclass(frozen=True)
class Task:
    task_id: str
    pool: str
    kind: str  # plan, apply or plan_and_apply
    arrival: float  # seconds from the start of the run
    run_s: float  # the plan (plan, plan_and_apply) or the apply (apply)
    apply_s: float  # plan_and_apply: the apply after approval; 0 otherwise
    approval_s: float | None  # plan_and_apply: approval this long after the plan ends; None: not within the TTL


@dataclass(frozen=True)
class Trace:
    seed: int
    hours: float
    pools: list[str]
    start_hour: int
    tasks: list[Task]

    @property
    def end_of_traffic(self) -> float:
        return self.hours * HOUR


def rate_at(t: float, start_hour: int) -> float:
    """Arrivals per second per pool at `t` seconds into the run (day 0 is a Monday)."""
    hours = start_hour + t / HOUR
    day, hour = divmod(int(hours), 24)
    rate = DAY_CURVE[hour] / HOUR
    return rate * (WEEKEND_FACTOR if day % 7 >= 5 else 1.0)


def _lognormal(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    return min(high, max(low, rng.lognormvariate(math.log(median), sigma)))


def _approval(rng: random.Random) -> float | None:
    """Minutes (most), hours (a third), or not within a day (one in ten): those reservations expire."""
    u = rng.random()
    if u < 0.55:
        return _lognormal(rng, 8 * 60, 0.9, 30, 3 * HOUR)
    if u < 0.90:
        return _lognormal(rng, 2.5 * HOUR, 0.7, 20 * 60, 20 * HOUR)
    return None


def _kind(rng: random.Random) -> str:
    u, acc = rng.random(), 0.0
    for kind, share in MIX:
        acc += share
        if u < acc:
            return kind
    return MIX[-1][0]


def make_trace(seed: int, hours: float, pools: int, start_hour: int = 0) -> Trace:
    rng = random.Random(seed)
    names = [f"tf-{i:02d}" for i in range(pools)]
    peak = max(DAY_CURVE) / HOUR
    tasks: list[Task] = []
    for pool in names:
        scale = rng.uniform(0.6, 1.4)  # pools differ in size
        t, n = 0.0, 0
        while True:
            t += rng.expovariate(peak * scale)
            if t >= hours * HOUR:
                break
            if rng.random() >= rate_at(t, start_hour) / peak:
                continue  # thinning: keep the arrival with probability rate(t) / peak
            kind = _kind(rng)
            plan_s = _lognormal(rng, 150, 0.6, 20, 40 * 60)
            apply_s = _lognormal(rng, 8 * 60, 1.0, 30, 4 * HOUR)
            if kind == "plan":
                task = Task(f"{pool}-{n:05d}", pool, kind, t, plan_s, 0.0, None)
            elif kind == "apply":
                task = Task(f"{pool}-{n:05d}", pool, kind, t, apply_s, 0.0, None)
            else:
                task = Task(f"{pool}-{n:05d}", pool, kind, t, plan_s, apply_s, _approval(rng))
            tasks.append(task)
            n += 1
    tasks.sort(key=lambda task: (task.arrival, task.task_id))
    return Trace(seed, hours, names, start_hour, tasks)


class StartupDraws:
    """Pod start-up times (about 30 s, a lognormal): the n-th pod of every policy draws the same."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"startup-{seed}")

    def next(self) -> float:
        return _lognormal(self.rng, 28, 0.3, 12, 120)
