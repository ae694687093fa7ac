"""Pools: settings, the registry every scheduled step reads, history, and the autoscale lease."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import EllipsisType
from typing import Any

from pydantic import ValidationError
from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from podslots.errors import UnreadableSettings
from podslots.ids import new_token
from podslots.settings import PoolSettings
from podslots.store.base import StoreBase
from podslots.store.items import EventItem, LeaseItem, PodItem, PoolItem, RegistryItem, binding
from podslots.store.keys import CONFIG_SK, EVENT_PREFIX, LEASE_SK, POD_PREFIX, REGISTRY_PK, pool_pk
from podslots.store.records import Lease, PoolEvent, PoolRecord, PoolState, RegisteredPool, Rollout
from podslots.store.transaction import StoreConflict, conditional


class PoolRegistry(StoreBase):
    """Pool settings and everything kept per pool besides its pods."""

    def get_pool(self, pool: str) -> PoolRecord | None:
        """The pool's settings; UnreadableSettings if the stored document no longer validates."""
        item = self._pool_item(pool)
        if item is None:
            return None
        return PoolRecord(
            name=item.pool,
            settings=_settings(pool, item.settings.as_dict()),
            deleting=bool(item.deleting),
            created_at=int(item.created_at),
            updated_at=int(item.updated_at),
        )

    def pool_state(self, pool: str) -> PoolState | None:
        """Whether the pool exists and is being deleted, without reading its settings."""
        item = self._pool_item(pool)
        if item is None:
            return None
        document = item.settings.as_dict() if item.settings is not None else {}
        namespace = document.get("namespace")
        return PoolState(
            int(item.created_at),
            int(item.updated_at),
            bool(item.deleting),
            namespace=namespace if isinstance(namespace, str) else None,
            pod_puts=int(item.pod_puts or 0),
            allowed_callers=_allowed_callers(document.get("allowed_callers")),
        )

    def recent_pool_state(self, pool: str, now: int, max_age_s: int) -> tuple[PoolState | None, bool]:
        """The pool's state as this store read it at most `max_age_s` ago, or read now (then True).

        Allocation checks `allowed_callers` on every request without reading the pool each time (its
        hot path is one Query and one transaction); a change reaches it within `max_age_s`. A pool
        that is not there is not remembered.
        """
        generation = binding["generation"]
        seen = self._recent_pools.get(pool)
        if seen is not None and seen[0] == generation and 0 <= now - seen[1] < max_age_s:
            return seen[2], False
        state = self.pool_state(pool)
        if state is None:
            self._recent_pools.pop(pool, None)
        else:
            self._recent_pools[pool] = (generation, now, state)
        return state, True

    @staticmethod
    def _pool_item(pool: str) -> PoolItem | None:
        try:
            return PoolItem.get(pool_pk(pool), CONFIG_SK, consistent_read=True)
        except DoesNotExist:
            return None

    def list_pools(self) -> list[str]:
        return [item.pool for item in RegistryItem.query(REGISTRY_PK, consistent_read=True)]

    def events(self, pool: str, limit: int) -> list[PoolEvent]:
        items: Iterator[EventItem] = EventItem.query(
            pool_pk(pool),
            EventItem.sk.startswith(EVENT_PREFIX),
            scan_index_forward=False,
            limit=limit,
        )
        return [PoolEvent(i.kind, int(i.at), i.detail.as_dict()) for i in items]

    def put_pool(
        self, pool: str, settings: PoolSettings, now: int, seen: PoolState | EllipsisType | None = ...
    ) -> bool:
        """Create or replace a pool's settings. True when created. A deleting pool is refused.

        Conditional on the item as `seen` (read here if not given): none, or its `updated_at`. A
        write that moves the pool to another namespace is also conditional on `pod_puts` being as
        seen: the caller saw no pod item after reading it, and every pod put bumps it in its own
        transaction, so no pod item (no create in flight) can have come in between. The item is
        updated, never replaced, so the counter is never set back. A retry that meets its own
        earlier write recognises it by the request token it left on the item.
        """
        existing = self.pool_state(pool) if seen is ... else seen
        if existing is None:  # what a pool of this name removed before this version left behind
            self._sweep(pool, self._partition(pool))
        document = settings.model_dump(mode="json", exclude_none=True)
        token = new_token()
        tx = self._tx(token)
        tx.update(
            "pool",
            PoolItem(pool_pk(pool), CONFIG_SK),
            actions=[
                PoolItem.pool.set(pool),
                PoolItem.settings.set(document),
                PoolItem.deleting.set(False),
                PoolItem.created_at.set(existing.created_at if existing else now),
                PoolItem.updated_at.set(now),
                PoolItem.request_token.set(token),
            ],
            condition=self._unchanged_since(existing, settings.namespace),
        )
        tx.put(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool), pool=pool, settings=document, deleting=False),
        )
        try:
            tx.commit()
        except StoreConflict:
            item = self._pool_item(pool)
            if item is None or item.request_token != token:
                raise
        return existing is None

    @staticmethod
    def _unchanged_since(seen: PoolState | None, namespace: str) -> Condition:
        """The settings item is as it was read; for a namespace change, no pod item was put since."""
        if seen is None:
            return PoolItem.pk.does_not_exist()
        condition: Condition = (PoolItem.deleting == False) & (PoolItem.updated_at == seen.updated_at)  # noqa: E712
        if seen.namespace != namespace:
            puts = PoolItem.pod_puts == seen.pod_puts
            condition &= (puts | PoolItem.pod_puts.does_not_exist()) if seen.pod_puts == 0 else puts
        return condition

    def mark_pool_deleting(self, pool: str, now: int) -> None:
        tx = self._tx()
        tx.update(
            "pool",
            PoolItem(pool_pk(pool), CONFIG_SK),
            actions=[PoolItem.deleting.set(True), PoolItem.updated_at.set(now)],
            condition=PoolItem.pk.exists(),
        )
        tx.update(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool)),
            actions=[RegistryItem.deleting.set(True)],
            condition=RegistryItem.pk.exists(),
        )
        tx.commit()

    def pool_records(self, unreadable: Callable[[str, str], None] | None = None) -> list[RegisteredPool]:
        """Every pool with its settings and last recorded figures: one consistent Query (its pages).

        A pool whose settings no longer validate is left out and reported to `unreadable`
        (name, problem): one pool's document never stops the others.
        """
        records = []
        for item in RegistryItem.query(REGISTRY_PK, consistent_read=True):
            if item.settings is None:
                continue
            try:
                settings = _settings(item.pool, item.settings.as_dict())
            except UnreadableSettings as exc:
                if unreadable is not None:
                    unreadable(item.pool, exc.message)
                continue
            figures = item.figures.as_dict() if item.figures is not None else None
            records.append(RegisteredPool(item.pool, settings, bool(item.deleting), figures))
        return records

    def pool_record(self, pool: str, unreadable: Callable[[str, str], None] | None = None) -> RegisteredPool | None:
        """One pool's registry entry, as `pool_records` gives it: one consistent GetItem, so a run
        for one pool (a fan-out message) costs the same with ten pools or ten thousand."""
        try:
            item = RegistryItem.get(REGISTRY_PK, pool_pk(pool), consistent_read=True)
        except DoesNotExist:
            return None
        if item.settings is None:
            return None
        try:
            settings = _settings(item.pool, item.settings.as_dict())
        except UnreadableSettings as exc:
            if unreadable is not None:
                unreadable(item.pool, exc.message)
            return None
        figures = item.figures.as_dict() if item.figures is not None else None
        return RegisteredPool(item.pool, settings, bool(item.deleting), figures)

    def record_figures(self, pool: str, figures: dict[str, Any], now: int, event_id: str) -> None:
        """Keep the figures on the registry item and in the pool's history (only called on change)."""
        tx = self._tx()
        tx.update(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool)),
            actions=[RegistryItem.figures.set(figures)],
            condition=RegistryItem.pk.exists(),
        )
        tx.put("event", self._event_item(pool, "PoolFigures", figures, now, event_id))
        tx.commit()

    def remove_pool(self, pool: str) -> bool:
        """Remove a deleting pool: every item of its partition, then its settings and registry entry.

        The caller has seen the cluster hold nothing of the pool; this checks the table: no pod item
        is left (none can be added, since every pod put is conditional on the pool not deleting).
        The order makes a crash part-way harmless: the lease, the history and anything else of the
        partition go first, while the settings still say `deleting`, so the next scheduled run finds
        the pool and does it all again; the settings and the registry entry go last, together, on the
        condition `deleting = true`. True when the pool is gone (also when it already was). A new
        pool of the name sweeps its partition again before it is created, for what a pool removed
        before this version left behind (a lease with its `low_since` and roll-out).
        """
        keys = self._partition(pool)
        if any(sk.startswith(POD_PREFIX) for sk in keys):
            return False
        if CONFIG_SK not in keys:
            return True
        self._sweep(pool, keys)
        tx = self._tx()
        tx.delete("pool", PoolItem(pool_pk(pool), CONFIG_SK), condition=PoolItem.deleting == True)  # noqa: E712
        tx.delete("registry", RegistryItem(REGISTRY_PK, pool_pk(pool)))
        try:
            tx.commit()
        except StoreConflict as exc:
            if not exc.failed("pool"):
                raise
            return self._pool_item(pool) is None
        return True

    @staticmethod
    def _partition(pool: str) -> list[str]:
        """The sort key of every item of the pool's partition, whatever its kind (keys only)."""
        return [k.sk for k in PodItem.query(pool_pk(pool), attributes_to_get=["pk", "sk"], consistent_read=True)]

    @staticmethod
    def _sweep(pool: str, keys: list[str]) -> None:
        """Delete every item of the partition but the settings and the pods: the lease, the history,
        anything else. By key alone, in batches; deleting what is gone already is no error."""
        with EventItem.batch_write() as batch:
            for sk in keys:
                if sk != CONFIG_SK and not sk.startswith(POD_PREFIX):
                    batch.delete(EventItem(pool_pk(pool), sk))

    def add_event(self, pool: str, kind: str, detail: dict[str, Any], now: int, event_id: str) -> None:
        """Record one history entry; the same entry written again by a retry is already recorded."""
        item = self._event_item(pool, kind, detail, now, event_id)
        conditional(lambda: item.save(condition=EventItem.pk.does_not_exist()))

    def acquire_lease(self, pool: str, holder: str, now: int, ttl_s: int) -> Lease | None:
        """Take the pool's autoscale lease if it is free or expired; None if another run holds it.

        Only while the pool's settings exist: a run that read the registry before the pool was
        removed must not write the lease item again after it went with the pool. A transaction
        cancelled for any reason (a conflict included) is answered as a lease not taken: the next
        run tries again.
        """
        tx = self._tx()
        tx.update(
            "lease",
            LeaseItem(pool_pk(pool), LEASE_SK),
            actions=[LeaseItem.holder.set(holder), LeaseItem.deadline.set(now + ttl_s)],
            condition=LeaseItem.pk.does_not_exist() | (LeaseItem.deadline < now) | (LeaseItem.holder == holder),
        )
        tx.condition_check("pool", PoolItem, pool_pk(pool), CONFIG_SK, PoolItem.pk.exists())
        try:
            tx.commit()
        except StoreConflict:
            return None
        lease = self.read_lease(pool)
        if lease is None or lease.holder != holder:
            return None  # taken by another run between our write and this read
        return lease

    def read_lease(self, pool: str) -> Lease | None:
        """The pool's lease item as it is (consistent), without taking it; None when there is none.

        Autoscale decides from this read whether its run will write or act at all: a quiet pool's run
        takes no lease and writes nothing.
        """
        try:
            item = LeaseItem.get(pool_pk(pool), LEASE_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return _lease_of(pool, item)

    def starting_pods(self, pool: str) -> int:
        """Starting pods as autoscale last recorded them on the lease (0 if never): one small item.

        The 503 path chooses its `Retry-After` from this instead of reading every pod item, so its
        cost does not grow with the pool. It lags the pods by up to one autoscale run, which only
        moves a hint (10 s or 30 s). An eventually consistent read: it is a hint.
        """
        try:
            item = LeaseItem.get(pool_pk(pool), LEASE_SK, attributes_to_get=["starting"])
        except DoesNotExist:
            return 0
        return int(item.starting or 0)

    def release_lease(
        self,
        lease: Lease,
        low_since: int | None,
        rollout: Rollout | None = None,
        noted: str | None = None,
        starting: int | None = None,
    ) -> None:
        """Give the lease back, keeping what the next run needs: when utilization went low (the
        scale-down delay's clock), the roll-out under way, the step last noted in observe mode, and
        how many pods are starting (what allocation's 503 reads; None keeps what is there)."""
        actions: list[Action] = [LeaseItem.deadline.set(0)]
        if starting is not None:
            actions.append(LeaseItem.starting.set(starting))
        actions.append(LeaseItem.low_since.set(low_since) if low_since is not None else LeaseItem.low_since.remove())
        actions.append(
            LeaseItem.rollout.set(
                {"revision": rollout.revision, "started_at": rollout.started_at, "size": rollout.size}
            )
            if rollout is not None
            else LeaseItem.rollout.remove()
        )
        actions.append(LeaseItem.noted.set(noted) if noted is not None else LeaseItem.noted.remove())
        # If another run took the expired lease meanwhile, it decides now: nothing to give back.
        item = LeaseItem(pool_pk(lease.pool), LEASE_SK)
        conditional(lambda: item.update(actions=actions, condition=LeaseItem.holder == lease.holder))


def _lease_of(pool: str, item: LeaseItem) -> Lease:
    low = int(item.low_since) if item.low_since is not None else None
    rollout = None
    if item.rollout is not None:
        raw = item.rollout.as_dict()
        rollout = Rollout(str(raw["revision"]), int(raw["started_at"]), int(raw.get("size", 0)))
    deadline, starting = int(item.deadline or 0), int(item.starting or 0)
    return Lease(pool, item.holder, low, rollout, item.noted, deadline=deadline, starting=starting)


def _allowed_callers(raw: Any) -> tuple[str, ...] | None:
    """A stored `allowed_callers`: None (or empty) lets every caller in; anything malformed, nobody."""
    if raw is None or raw == []:
        return None
    if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    return ()


def _settings(pool: str, document: dict[str, Any]) -> PoolSettings:
    try:
        return PoolSettings.from_stored(document)
    except (ValidationError, ValueError, TypeError) as exc:
        problem = str(exc).splitlines()[0]
        raise UnreadableSettings(
            f"the stored settings of pool {pool} cannot be read ({problem}); PUT a whole new document",
            pool=pool,
        ) from exc
