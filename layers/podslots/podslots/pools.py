"""Pool settings, live figures and history.

A pool is created or replaced with one whole settings document. Deleting a pool refuses new
allocations at once; its settings go when its last pod has gone and the cluster shows nothing of
it (autoscale drains idle pods and deletes strays, busy pods are left to finish), so a DELETE never
kills a running apply either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from podslots import rollout
from podslots.clock import Clock
from podslots.errors import Conflict, NotFound
from podslots.model import POOL_DELETED, Cordon, Pod, PodState, PoolFigures
from podslots.settings import PoolSettings, template_revision
from podslots.store import PoolEvent, PoolRecord, SlotStore, StoreConflict


@dataclass(frozen=True)
class PoolView:
    record: PoolRecord
    pods: list[Pod]

    @property
    def revision(self) -> str:
        return template_revision(self.record.settings)

    @property
    def figures(self) -> PoolFigures:
        return PoolFigures.of(self.pods, self.revision)

    @property
    def rollout(self) -> rollout.RolloutView:
        acting = self.record.settings.mode.acts and not self.record.deleting
        return rollout.view(self.pods, self.revision, acting)


@dataclass(frozen=True)
class CordonChange:
    pod: Pod
    changed: bool


@dataclass(frozen=True)
class Deletion:
    """A pool closed by DELETE: its pod items left to drain (the settings go after the last)."""

    pool: str
    pods_remaining: int


class PoolService:
    def __init__(self, store: SlotStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def put(self, pool: str, settings: PoolSettings) -> bool:
        """Create or replace; True when created.

        A new `pod_template` (or slot count) rolls the pool's pods (docs/architecture.md,
        "Roll-out"). A new `namespace` is refused while the pool has pods: reconcile looks for the
        pods in the new namespace only, so the old ones would look vanished and their tasks lost.
        That refusal is a condition of the write itself, not only a read before it: the settings
        are read first (with their count of pod puts), then the pod items; the write requires the
        count unchanged, so a scale-up or adoption that put a pod item in between makes it fail,
        and the next look sees the pod. One that comes after finds the new namespace in its own
        condition and is refused.
        """
        for _ in range(3):
            record = self.store.pool_state(pool)
            if record is not None and record.deleting:
                raise Conflict(f"pool {pool} is being deleted; wait until it is gone", pool=pool)
            if record is not None and record.namespace != settings.namespace:
                self._no_pods(pool, record.namespace, settings.namespace)
            try:
                return self.store.put_pool(pool, settings, int(self.clock.now()), record)
            except StoreConflict:
                continue  # a concurrent PUT, DELETE or pod put: look again
        raise Conflict(f"pool {pool} is changing under this update; try again", pool=pool)

    def _no_pods(self, pool: str, current: str | None, wanted: str) -> None:
        pods = self.store.pods(pool)
        if pods:
            raise Conflict(
                f"namespace cannot change from {current} to {wanted} while pool "
                f"{pool} has {len(pods)} pod(s); delete the pool, or make a new pool in the new namespace",
                pool=pool,
            )

    def get(self, pool: str) -> PoolView:
        record = self.store.get_pool(pool)
        if record is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        return PoolView(record, self.store.pods(pool))

    def names(self) -> list[str]:
        return sorted(self.store.list_pools())

    def delete(self, pool: str) -> Deletion:
        """Close the pool at once: it is marked deleting, then every pod item is cordoned.

        No allocation reads the pool's settings (that would make one item every allocation
        touches), so it is the cordon on each pod that turns new tasks away, and no pod item can be
        added after the mark (every pod put is conditional on the pool not deleting), so every pod
        this cordons is every pod there will be. The settings go later, never here: this function
        cannot see the cluster, and a pod may exist there with no item (a create whose answer was
        lost). Autoscale, which LISTs the pool's pods, deletes such strays and removes the pool once
        the cluster shows nothing of it. A repeated DELETE cordons again.
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
        return Deletion(pool, len(pods))

    def cordon(self, pool: str, pod: str, by: str | None = None) -> CordonChange:
        """Take one pod out of service: no new task; its running and reserved tasks finish, then
        autoscale drains and deletes it, and creates a replacement if the pool needs one.

        Idempotent: a pod already cordoned (for any reason) or draining is answered as it is.
        """
        current = self._pod(pool, pod)
        if current.cordoned is not None or current.state is PodState.DRAINING:
            return CordonChange(current, False)
        cordoned, changed = self.store.cordon(pool, pod, Cordon.OPERATOR)
        if cordoned is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        if changed:
            self._history(pool, "PodCordoned", pod, by)
        return CordonChange(cordoned, changed)

    def uncordon(self, pool: str, pod: str, by: str | None = None) -> CordonChange:
        """Put an operator's cordoned pod back in service while it still exists (409 once it drains,
        or when the cordon is the pool's deletion or a roll-out's, which only they end)."""
        current = self._pod(pool, pod)
        if current.state is PodState.DRAINING:
            raise Conflict(f"pod {pod} is draining: it is being deleted", pool=pool, pod=pod)
        if current.cordoned is None:
            return CordonChange(current, False)
        if current.cordoned != Cordon.OPERATOR:
            raise Conflict(
                f"pod {pod} is cordoned because of {current.cordoned!r}, which only podslots ends",
                pool=pool,
                pod=pod,
                cordoned=current.cordoned,
            )
        after = self.store.uncordon(pool, pod, Cordon.OPERATOR)
        if after is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        if after.cordoned is not None or after.state is PodState.DRAINING:
            raise Conflict(f"pod {pod} is being drained; it stays out of service", pool=pool, pod=pod)
        self._history(pool, "PodUncordoned", pod, by)
        return CordonChange(after, True)

    def _pod(self, pool: str, pod: str) -> Pod:
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        found = self.store.get_pod(pool, pod)
        if found is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        return found

    def _history(self, pool: str, kind: str, pod: str, by: str | None) -> None:
        detail = {"pod": pod, **({"by": by} if by else {})}
        self.store.add_event(pool, kind, detail, int(self.clock.now()), uuid.uuid4().hex[:12])

    def events(self, pool: str, limit: int) -> list[PoolEvent]:
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        return self.store.events(pool, limit)
