"""Policy (e): the agent Deployment scaled by target tracking on busy slots, as an HPA (or KEDA
feeding one) scales it with the defaults a team gets when it writes no `behavior`.

What is modelled, from the `autoscaling/v2` API reference and the controller's flags:
- The metric: busy slots (running + reserved) of the Deployment's pods, with an `AverageValue`
  target of 70 % of a pod's slots (2.1 of 3). desired = ceil(busy / 2.1), at least `minReplicas`
  (1). Waiting tasks are not in the metric: an agent that pulls work is busy or idle, and a queue
  length is a second metric most teams do not add. (A KEDA scaler on the queue would add it.)
- The loop: every 15 s (`--horizontal-pod-autoscaler-sync-period`), no change while the ratio
  busy / (2.1 x replicas) is within 10 % of 1 (`--horizontal-pod-autoscaler-tolerance` 0.1).
- `behavior.scaleDown` default: a 300 s stabilization window (the highest recommendation of the
  last 300 s is used), then down to it at once (100 % of the pods may go).
- `behavior.scaleUp` default: no stabilization; at most the higher of +4 pods and +100 % per 60 s.
- A scale-down is the ReplicaSet's, as in (a): pods of Kubernetes' choosing die with what they hold
  (the plain agent; the graceful variant is (b)'s story and not repeated here).
- The metric is read fresh each time (no metrics-server or KEDA polling lag), which favours (e).
"""

from __future__ import annotations

import math
from collections import deque

from bench.day.deployment import DeploymentModel, _Pool
from bench.day.traffic import Trace

TARGET_BUSY = 0.70
SYNC_S = 15.0
TOLERANCE = 0.10
DOWN_WINDOW_S = 300
UP_PERIOD_S = 60
UP_PODS, UP_PERCENT = 4, 100


def recommend(busy: int, replicas: int, per_pod: float, min_replicas: int, max_replicas: int) -> int:
    """The HPA's recommendation for an `AverageValue` target of `per_pod` busy slots per pod."""
    if replicas and abs(busy / (per_pod * replicas) - 1) <= TOLERANCE:
        return replicas
    return max(min_replicas, min(max_replicas, math.ceil(busy / per_pod)))


def up_limit(replicas_a_period_ago: int) -> int:
    """The default scale-up policy: the higher of +4 pods and +100 % in 60 s."""
    return replicas_a_period_ago + max(UP_PODS, replicas_a_period_ago * UP_PERCENT // 100)


class HpaModel(DeploymentModel):
    every_s = SYNC_S

    def __init__(self, trace: Trace, seed: int) -> None:
        super().__init__(trace, graceful=False, seed=seed)
        self.recommendations: dict[str, deque[tuple[int, int]]] = {p: deque() for p in trace.pools}
        self.sizes: dict[str, deque[tuple[int, int]]] = {p: deque() for p in trace.pools}

    def scale(self, pool: _Pool, now: int) -> None:
        replicas = [p for p in pool.pods if not p.terminating]
        current, settings = len(replicas), self.settings
        busy = sum(p.busy for p in replicas)
        wanted = recommend(busy, current, TARGET_BUSY * settings.slots_per_pod, settings.min_pods, settings.max_pods)
        window = self.recommendations[pool.name]
        window.append((now, wanted))
        while window and window[0][0] <= now - DOWN_WINDOW_S:
            window.popleft()
        sizes = self.sizes[pool.name]
        sizes.append((now, current))
        while len(sizes) > 1 and sizes[1][0] <= now - UP_PERIOD_S:
            sizes.popleft()
        if wanted > current:
            for _ in range(min(wanted, up_limit(sizes[0][1])) - current):
                self.create(pool)
            self.ledger.scale_up += 1
            return
        stable = max(w for _, w in window)  # the scale-down stabilization window
        if stable < current:
            self.scale_down(replicas, current - stable)
