"""Pre-warm: the pool learns its arrivals by hour of the week and starts pods ahead of its ramp
(`prewarm: true`, docs/architecture.md, "Pre-warm"). Pure functions; autoscale reads and folds.

- What is counted: each pod item counts the tasks placed on it (`placed`, one ADD in the
  allocation's own transaction on the pod item it already writes: no item every allocation of a
  pool touches, no new request).
- Once an hour, the first autoscale run of a new hour folds the counters into the pool's one
  `Arrivals` item: the tasks placed since the last fold, spread over the hours since, each hour
  of the week moved half-way to what it saw (`WEIGHT`), so a change of habit is learned in two or
  three weeks. A pod drained between two folds takes its last placements with it: the history
  errs low, never high, so a pre-warm never costs more than the history shows.
- The rule: the expected arrival rate of the next 15 minutes is the highest learned rate of the
  hours of the week they touch (so the 07:00 ramp is seen at 06:45). The pool keeps the idle slots
  that, 19 times in 20, take every task that arrives at that rate while a new pod would start
  (`LEAD_S`: a scaling step and a pod start; arrivals as a Poisson process): the dispatch-wait
  target is a p95. A quiet hour asks for none (1 task an hour: a 3 % chance of one in 2 minutes),
  30 an hour for 3. Those slots are counted in the packed rule like `warm_slots`, so they never
  delete a busy pod, and fall away after the scale-down delay once the hour is past.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

HOUR_S = 3600
HOURS_A_WEEK = 168
MONDAY_OFFSET_H = 72  # 1970-01-01 was a Thursday: hour 72 of its (Monday 00:00 UTC) week
LOOKAHEAD_S = 900  # the next 15 minutes
LEAD_S = 120  # a scaling step (a minute) and a pod start (about 30 s, up to 2 min)
WEIGHT = 0.5  # how far one new week moves an hour of the week toward what it saw
COVERED = 0.95  # the share of lead times whose arrivals all find an idle slot (the p95 target)


@dataclass(frozen=True)
class Arrivals:
    """A pool's learned arrivals: tasks an hour, by hour of the week (None: never seen)."""

    hour: int  # the epoch hour being counted (the hours before it are folded in)
    rates: tuple[float | None, ...] = (None,) * HOURS_A_WEEK
    seen: Mapping[str, int] = field(default_factory=dict)  # each pod's `placed` at the last fold


def epoch_hour(now: int) -> int:
    return now // HOUR_S


def hour_of_week(hour: int) -> int:
    """0 is Monday 00:00-01:00 UTC."""
    return (hour + MONDAY_OFFSET_H) % HOURS_A_WEEK


def due(arrivals: Arrivals | None, now: int) -> bool:
    """A fold is due on the first run of a new hour (or when the pool has no history yet)."""
    return arrivals is None or epoch_hour(now) > arrivals.hour


def fold(arrivals: Arrivals | None, placed: Mapping[str, int], now: int) -> Arrivals:
    """The history with the placements since the last fold learned (a first call starts counting).

    `placed` is every pod's counter as read now. A counter below what was seen is a new pod of
    the same name (or a lost write): it counts from zero.
    """
    hour = epoch_hour(now)
    if arrivals is None:
        return Arrivals(hour, seen=dict(placed))
    if hour <= arrivals.hour:
        return arrivals
    new = sum(n - arrivals.seen.get(pod, 0) if n >= arrivals.seen.get(pod, 0) else n for pod, n in placed.items())
    hours = hour - arrivals.hour
    per_hour = new / hours
    rates = list(arrivals.rates)
    for h in range(arrivals.hour, hour)[-HOURS_A_WEEK:]:  # a pool silent for weeks relearns each hour once
        slot = hour_of_week(h)
        old = rates[slot]
        rates[slot] = per_hour if old is None else old + WEIGHT * (per_hour - old)
    return Arrivals(hour, tuple(rates), dict(placed))


def expected_rate(arrivals: Arrivals | None, now: int) -> float:
    """Tasks an hour expected over the next 15 minutes: the highest rate of the hours they touch."""
    if arrivals is None:
        return 0.0
    first, last = epoch_hour(now), epoch_hour(now + LOOKAHEAD_S)
    rates = [arrivals.rates[hour_of_week(h)] for h in range(first, last + 1)]
    return max((r for r in rates if r is not None), default=0.0)


def prewarm_slots(arrivals: Arrivals | None, now: int) -> int:
    """Idle slots to keep so that, 19 times in 20, what arrives while a new pod starts finds one."""
    return poisson_quantile(expected_rate(arrivals, now) * LEAD_S / HOUR_S, COVERED)


def poisson_quantile(mean: float, share: float) -> int:
    """The least k with P(N <= k) >= share, N a Poisson count of that mean."""
    k, term = 0, math.exp(-mean)
    total = term
    while total < share and k < 1000:
        k += 1
        term *= mean / k
        total += term
    return k
