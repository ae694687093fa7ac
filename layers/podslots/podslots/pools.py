"""Pool settings, live figures and history.

A pool is created or replaced with one whole settings document. Deleting a pool refuses new
allocations at once; its settings go when its last pod has gone (autoscale drains idle pods, busy
pods are left to finish), so a DELETE never kills a running apply either.
"""

from __future__ import annotations

from dataclasses import dataclass

from podslots.clock import Clock
from podslots.errors import Conflict, NotFound
from podslots.model import POOL_DELETED, Pod, PoolFigures
from podslots.settings import PoolSettings
from podslots.store import PoolEvent, PoolRecord, SlotStore, StoreConflict


@dataclass(frozen=True)
class PoolView:
    record: PoolRecord
    pods: list[Pod]

    @property
    def figures(self) -> PoolFigures:
        return PoolFigures.of(self.pods)


@dataclass(frozen=True)
class Deletion:
    pool: str
    pods_remaining: int

    @property
    def done(self) -> bool:
        return self.pods_remaining == 0


class PoolService:
    def __init__(self, store: SlotStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def put(self, pool: str, settings: PoolSettings) -> bool:
        """Create or replace; True when created."""
        for _ in range(3):
            record = self.store.pool_state(pool)
            if record is not None and record.deleting:
                raise Conflict(f"pool {pool} is being deleted; wait until it is gone", pool=pool)
            try:
                return self.store.put_pool(pool, settings, int(self.clock.now()))
            except StoreConflict:
                continue  # a concurrent PUT or DELETE: look again
        raise Conflict(f"pool {pool} is changing under this update; try again", pool=pool)

    def get(self, pool: str) -> PoolView:
        record = self.store.get_pool(pool)
        if record is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        return PoolView(record, self.store.pods(pool))

    def names(self) -> list[str]:
        return sorted(self.store.list_pools())

    def delete(self, pool: str) -> Deletion:
        """Refuse new tasks at once: the pool is marked deleting, then every pod is cordoned.

        No allocation reads the pool's settings (that would make one item every allocation
        touches), so it is the cordon on each pod that turns new tasks away. A repeated DELETE
        cordons again; autoscale's drain of a deleting pool does too, for pods created meanwhile.
        """
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        try:
            self.store.mark_pool_deleting(pool, int(self.clock.now()))
        except StoreConflict as exc:
            raise NotFound(f"pool {pool} does not exist", pool=pool) from exc
        pods = self.store.pods(pool)
        for pod in pods:
            if pod.cordoned is None:
                self.store.cordon(pool, pod.name, POOL_DELETED)
        if not pods:
            self.store.remove_pool(pool)
        return Deletion(pool, len(pods))

    def events(self, pool: str, limit: int) -> list[PoolEvent]:
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        return self.store.events(pool, limit)
