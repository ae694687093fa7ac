"""How a step tries again after a write lost a race: how often, and how long it waits in between.

Allocation (a slot race, a resume met by a transient fault) and the task status step (a task moved
between its read and its write) retry the same way: read again, decide afresh, and before that wait
a jittered, doubling time, so that callers who collided spread out instead of colliding again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

ATTEMPTS = 10  # reads and writes against concurrent writers before giving up (a 503 or a 409)
BACKOFF_BASE_S = 0.01  # the first wait's ceiling; each lost race doubles it
BACKOFF_CAP_S = 0.2


def backoff_s(rng: random.Random, tries: int) -> float:
    """Full jitter: uniform between 0 and the doubled base, capped."""
    return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**tries))


@dataclass(frozen=True)
class Backoff:
    """The wait of a step's retry, with the step's own randomness and sleep (tests pass theirs)."""

    rng: random.Random
    sleep: Callable[[float], None]

    def wait(self, tries: int) -> None:
        self.sleep(backoff_s(self.rng, tries))
