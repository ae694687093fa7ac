"""Pool settings, live figures and history.

A pool is created or replaced with one whole settings document. Deleting a pool refuses new
allocations at once; its settings go when its last pod has gone and the cluster shows nothing of
it (autoscale drains idle pods and deletes strays, busy pods are left to finish), so a DELETE never
kills a running apply either.
"""

from __future__ import annotations

from dataclasses import dataclass

from podslots import rollout
from podslots.clock import Clock
from podslots.errors import BelowPodSecurity, Conflict, NotFound, UnreadableSettings
from podslots.ids import new_event_id
from podslots.model import POOL_DELETED, Cordon, Pod, PodState, PoolFigures, cordon_order, shown_cordon
from podslots.podspec import security_violations
from podslots.ports import PoolRegistryStore
from podslots.settings import PoolSettings, template_revision
from podslots.store import PoolEvent, PoolRecord, StoreConflict


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
        acting = self.record.settings.mode.may_scale and not self.record.deleting
        return rollout.view(self.pods, self.revision, acting)


DELETE_ATTEMPTS = 5  # a DELETE whose mark met a concurrent write (not a missing pool) tries again
UNCORDON_ATTEMPTS = 5  # an uncordon whose read went stale reads again, this many times


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
    def __init__(self, store: PoolRegistryStore, clock: Clock) -> None:
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

        The pod the settings would make must meet their `pod_security` level, whatever the stored
        pool did: a pool stored before the levels existed is raised to its level by its next PUT.
        """
        self._meets_its_level(pool, settings)
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

    @staticmethod
    def _meets_its_level(pool: str, settings: PoolSettings) -> None:
        violations = security_violations(pool, settings)
        if violations:
            named = "; ".join(f"{v.field} ({v.control})" for v in violations)
            raise BelowPodSecurity(
                f"the pool's pods would break pod_security {settings.pod_security.value}: {named}",
                pool=pool,
                pod_security=settings.pod_security.value,
                violations=[v.as_dict() for v in violations],
            )

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
        self._mark_deleting(pool)
        pods = self.store.pods(pool)
        for pod in pods:
            if Cordon.POOL_DELETED not in pod.cordons:
                self.store.cordon(pool, pod.name, POOL_DELETED)
        return Deletion(pool, len(pods))

    def _mark_deleting(self, pool: str) -> None:
        """Mark the pool deleting; 404 only when it is really gone.

        A TransactionConflict or a throttle is no answer about the pool: it is tried again, and a
        pool that keeps meeting other writes is a 409 to retry, never a 404 for a pool that exists.
        """
        for _ in range(DELETE_ATTEMPTS):
            if self.store.pool_state(pool) is None:
                raise NotFound(f"pool {pool} does not exist", pool=pool)
            try:
                self.store.mark_pool_deleting(pool, int(self.clock.now()))
                return
            except StoreConflict as exc:
                if exc.failed("pool") or exc.failed("registry"):
                    raise NotFound(f"pool {pool} does not exist", pool=pool) from exc
        raise Conflict(f"pool {pool} is changing under this delete; try again", pool=pool)

    def cordon(self, pool: str, pod: str, by: str | None = None) -> CordonChange:
        """Take one pod out of service: no new task; its running and reserved tasks finish, then
        autoscale drains and deletes it, and creates a replacement if the pool needs one.

        Idempotent: a pod already cordoned (for any reason) or draining is answered as it is.
        """
        current = self._pod(pool, pod)
        if current.cordon_reasons or current.state is PodState.DRAINING:
            return CordonChange(current, False)
        try:
            cordoned, changed = self.store.cordon(pool, pod, Cordon.OPERATOR)
        except StoreConflict as exc:
            raise Conflict(f"pod {pod} is changing under this cordon; try again", pool=pool, pod=pod) from exc
        if cordoned is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        if changed:
            self._history(pool, "PodCordoned", pod, by)
        return CordonChange(cordoned, changed)

    def uncordon(self, pool: str, pod: str, by: str | None = None) -> CordonChange:
        """Take back an operator's cordon, and only that: the pod is back in service, or 409.

        It answers 409, changing nothing, while the pod stays out of service whatever the operator
        does: its pool is being deleted, it is draining, or podslots holds it closed for a reason
        of its own (`outdated revision`, `pool deleted`), which only podslots ends. The removal is
        conditional on the reasons, state and revision it was decided from, and on the pool not
        being deleted, so it cannot race a DELETE or a roll-out into reopening the pod. An outdated
        pod reopens as a second choice: it never comes before a current pod with an idle slot.
        """
        for _ in range(UNCORDON_ATTEMPTS):
            current = self._uncordon_target(pool, pod)
            if Cordon.OPERATOR not in current.cordon_reasons:
                return CordonChange(current, False)
            try:
                after = self.store.uncordon(current, Cordon.OPERATOR, second_choice=self._outdated(pool, current))
            except StoreConflict:
                continue  # the pod, or the pool, moved since the read: decide again from what is there
            if after is None:
                raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
            self._history(pool, "PodUncordoned", pod, by)
            return CordonChange(after, True)
        raise Conflict(f"pod {pod} is changing under this uncordon; try again", pool=pool, pod=pod)

    def _uncordon_target(self, pool: str, pod: str) -> Pod:
        """The pod as it is, if an operator's uncordon may reopen it; otherwise the 409 (or 404)
        that says why not."""
        state = self.store.pool_state(pool)
        if state is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        current = self.store.get_pod(pool, pod)
        if current is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        held = cordon_order(current.cordon_reasons - {Cordon.OPERATOR.value})
        details = {
            "pool": pool,
            "pod": pod,
            "cordoned": shown_cordon(current.cordon_reasons),
            "cordon_reasons": cordon_order(current.cordon_reasons),
        }
        if state.deleting:
            raise Conflict(
                f"pod {pod} stays cordoned: pool {pool} is being deleted, which only podslots ends", **details
            )
        if current.state is PodState.DRAINING:
            raise Conflict(f"pod {pod} is draining: it is being deleted", **details)
        if held:
            raise Conflict(
                f"pod {pod} stays cordoned because of {', '.join(repr(r) for r in held)}, which only podslots ends",
                **details,
            )
        return current

    def _outdated(self, pool: str, pod: Pod) -> bool:
        """Made from an older template than the pool's (unreadable settings: taken as outdated, so
        the pod reopens as a second choice rather than ahead of pods that may be current)."""
        try:
            record = self.store.get_pool(pool)
        except UnreadableSettings:
            return True
        return record is not None and pod.outdated(template_revision(record.settings))

    def _pod(self, pool: str, pod: str) -> Pod:
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        found = self.store.get_pod(pool, pod)
        if found is None:
            raise NotFound(f"pod {pod} of pool {pool} does not exist", pool=pool, pod=pod)
        return found

    def _history(self, pool: str, kind: str, pod: str, by: str | None) -> None:
        detail = {"pod": pod, **({"by": by} if by else {})}
        self.store.add_event(pool, kind, detail, int(self.clock.now()), new_event_id())

    def events(self, pool: str, limit: int) -> list[PoolEvent]:
        if self.store.pool_state(pool) is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        return self.store.events(pool, limit)
