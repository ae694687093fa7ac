"""What the store answers besides pods and tasks: pools, their registry entries, history, leases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podslots.settings import PoolSettings


@dataclass(frozen=True)
class PoolRecord:
    name: str
    settings: PoolSettings
    deleting: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class PoolState:
    """What a write of the settings needs to know of the item there, without reading its settings.

    `namespace` is the stored document's (None if it has none); `pod_puts` counts the pod items ever
    written into the pool (every put of one bumps it in the same transaction), so a write conditional
    on it being what was read knows that no pod item was added since.
    """

    created_at: int
    updated_at: int
    deleting: bool
    namespace: str | None = None
    pod_puts: int = 0
    # The stored document's `allowed_callers` (ARN patterns), read without validating the rest: None
    # lets every task-queue caller allocate; a value that is not a list of strings lets nobody.
    allowed_callers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RegisteredPool:
    name: str
    settings: PoolSettings
    deleting: bool
    figures: dict[str, Any] | None


@dataclass(frozen=True)
class PoolEvent:
    kind: str
    at: int
    detail: dict[str, Any]


@dataclass(frozen=True)
class Rollout:
    """A roll-out autoscale is carrying out: to which revision, since when, and the pool's size in
    service when it started (what it keeps while the load stays in the steady band)."""

    revision: str
    started_at: int
    size: int


@dataclass(frozen=True)
class Lease:
    pool: str
    holder: str
    low_since: int | None
    rollout: Rollout | None = None
    noted: str | None = None  # observe/paused: the scale step last recorded as what it would do
    deadline: int = 0  # held until then (0: given back)
    starting: int = 0  # starting pods when the last run that wrote it ended

    def held_by_another(self, holder: str, now: int) -> bool:
        """Another run holds it: the one `acquire_lease` would refuse."""
        return self.deadline >= now and self.holder != holder
