"""Autoscale: size each pool on slot utilization and waiting demand, and never delete a busy pod.

Scale-up writes the pod item (`starting`) first, then creates the Kubernetes pod, so a pod never
exists that the table does not know. Scale-down is the drain protocol: a conditional `ready ->
draining` on `busy = 0` (allocation needs `ready`, so the two cannot both win), then the delete
with a uid precondition, then the item. When too few pods are idle, the rest of the step is
recorded as blocked, never forced. One run per pool at a time, through the pool's lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster import Cluster, ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.model import CREATE_GRACE_S, POOL_DELETED, Pod, PodState
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.podspec import new_pod_name, pod_manifest
from podslots.pool_order import each_pool
from podslots.scaling import Direction, Load, decide
from podslots.store import RegisteredPool, SlotStore, StoreConflict, new_pod

DEMAND_WINDOW_S = 300  # a waiting task counts while it asked within the last 5 minutes
LEASE_TTL_S = 120


@dataclass
class ScaleReport:
    pool: str
    direction: str = Direction.NONE.value
    before: int = 0
    after: int = 0
    reason: str = ""
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    blocked: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], 0, "")}


def load_of(pods: list[Pod], waiting: int) -> Load:
    capacity_pods = [p for p in pods if p.state in (PodState.READY, PodState.STARTING)]
    return Load(
        pods=len(capacity_pods),
        capacity=sum(p.slot_count for p in capacity_pods),
        used=sum(p.busy for p in capacity_pods),
        waiting=waiting,
    )


def removal_order(pods: list[Pod]) -> list[Pod]:
    """Idle pods only: unhealthy first, then the least recently used ready ones. Starting pods start."""
    idle = [p for p in pods if p.busy == 0]
    unhealthy = [p for p in idle if p.state is PodState.UNHEALTHY]
    ready = sorted((p for p in idle if p.state is PodState.READY), key=lambda p: (p.last_used_at, p.name))
    return unhealthy + ready


class Autoscaler:
    def __init__(
        self,
        store: SlotStore,
        cluster_for: Callable[[RegisteredPool], Cluster],
        bus: EventPublisher,
        clock: Clock,
        api_base_url: str,
    ) -> None:
        self.store = store
        self.cluster_for = cluster_for
        self.bus = bus
        self.clock = clock
        self.api_base_url = api_base_url
        self.holder = uuid.uuid4().hex

    def run(self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None) -> list[ScaleReport]:
        return each_pool(
            self.store,
            self.clock,
            "autoscale",
            self.scale_pool,
            lambda pool, problem: ScaleReport(pool.name, errors=[problem]),
            only_pool=only_pool,
            time_left_s=time_left_s,
        )

    def scale_pool(self, pool: RegisteredPool) -> ScaleReport:
        report = ScaleReport(pool.name)
        now = int(self.clock.now())
        lease = self.store.acquire_lease(pool.name, self.holder, now, LEASE_TTL_S)
        if lease is None:
            report.skipped = "another run holds the lease"
            return report
        low_since = lease.low_since
        try:
            step = _PoolStep(self, pool, self.cluster_for(pool), now, report)
            pods = self.store.pods(pool.name)
            if pool.deleting:
                step.drain_pool(pods)
                return report
            load = load_of(pods, self._demand(pool.name, now))
            decision = decide(load, pool.settings, low_since, now)
            low_since = decision.low_since
            report.before, report.after, report.reason = load.pods, load.pods, decision.reason
            if decision.direction is Direction.UP:
                step.scale_up(decision.delta(load))
                report.after = load.pods + len(report.created)
            elif decision.direction is Direction.DOWN:
                step.scale_down(pods, -decision.delta(load))
                report.after = load.pods - sum(
                    1 for p in pods if p.name in report.removed and p.state is PodState.READY
                )
                low_since = now  # a new delay before the next step down
        except PodSlotsError as exc:  # the cluster or the kubeconfig failed part-way
            report.errors.append(exc.message)
            logger.warning("scaling step failed part-way", extra={"pool": pool.name, "error": exc.message})
        except StoreConflict as exc:
            report.errors.append(str(exc))
        finally:
            self.store.release_lease(lease, low_since)
        if report.direction != Direction.NONE.value:
            self._announce(pool, report, now)
        return report

    def _demand(self, pool: str, now: int) -> int:
        """Count the waiting tasks; drop those that stopped asking (they come back if they ask again)."""
        count = 0
        for task in self.store.waiting(pool):
            if now - task.updated_at > DEMAND_WINDOW_S:
                self.store.forget_waiting(task)
            else:
                count += 1
        return count

    def _announce(self, pool: RegisteredPool, report: ScaleReport, now: int) -> None:
        detail = {
            "pool": pool.name,
            "direction": report.direction,
            "before": report.before,
            "after": report.after,
            "reason": report.reason,
            "blocked": report.blocked,
        }
        self.store.add_event(pool.name, "PoolScaled", detail, now, uuid.uuid4().hex[:12])
        try:
            self.bus.publish("PoolScaled", detail)
        except Exception:
            logger.exception("PoolScaled not published", extra=detail)
        if report.direction == Direction.UP.value:
            pool_metrics(pool.name, [("ScaleUp", MetricUnit.Count, len(report.created))])
        else:
            pool_metrics(
                pool.name,
                [
                    ("ScaleDown", MetricUnit.Count, len(report.removed)),
                    ("ScaleDownBlocked", MetricUnit.Count, report.blocked),
                ],
            )
        logger.info("pool scaled", extra=detail)


@dataclass
class _PoolStep:
    """One pool's scaling step: create pods, or drain idle ones."""

    autoscaler: Autoscaler
    pool: RegisteredPool
    cluster: Cluster
    now: int
    report: ScaleReport

    @property
    def store(self) -> SlotStore:
        return self.autoscaler.store

    def scale_up(self, count: int) -> None:
        self.report.direction = Direction.UP.value
        settings = self.pool.settings
        for _ in range(count):
            name = new_pod_name(self.pool.name)
            item = new_pod(self.pool.name, name, settings.slots_per_pod, self.now)
            # The item first, so the table always knows every pod; only while the pool is not
            # being deleted (a StoreConflict ends the step), so a DELETE cannot miss this pod.
            if not self.store.put_pod(item, while_pool_takes_pods=True):
                continue  # the name was taken: a new name next time round
            manifest = pod_manifest(self.pool.name, name, settings, self.autoscaler.api_base_url)
            try:
                created = self.cluster.create_pod(settings.namespace, manifest)
            except ClusterError as exc:
                self.store.remove_idle_pod(item)
                self.report.errors.append(exc.message)
                failure = {"pod": name, "error": exc.message}
                self.store.add_event(self.pool.name, "PodCreateFailed", failure, self.now, name)
                logger.error("pod create failed; item removed", extra={"pool": self.pool.name, "pod": name})
                return
            self.store.observe_pod(item, created.uid, created.pod_ip)
            self.report.created.append(name)

    def scale_down(self, pods: list[Pod], wanted: int) -> None:
        self.report.direction = Direction.DOWN.value
        for pod in removal_order(pods):
            if len(self.report.removed) == wanted:
                break
            if self.drain(pod):
                self.report.removed.append(pod.name)
        self.report.blocked = max(0, wanted - len(self.report.removed))
        if self.report.blocked:
            logger.info("scale-down blocked: too few idle pods", extra={"pool": self.pool.name})

    def drain(
        self,
        pod: Pod,
        states: tuple[PodState, ...] = (PodState.READY, PodState.UNHEALTHY),
        in_cluster: dict[str, ClusterPod] | None = None,
    ) -> bool:
        """The drain protocol. False when the pod got a task first (the allocation won the race).

        A pod whose uid was never recorded (a crash between its create and the record) is looked
        up in `in_cluster` (the pool's LIST), so its Kubernetes pod is deleted too, not leaked.
        """
        if pod.state is not PodState.DRAINING and not self.store.start_draining(self.pool.name, pod.name, states):
            return False
        uid = pod.uid
        if uid is None and in_cluster is not None and pod.name in in_cluster:
            uid = in_cluster[pod.name].uid
        if uid is None and self.now - pod.created_at < CREATE_GRACE_S:
            return True  # its create may still be in flight: the item stays (draining) until it is seen
        if uid:
            try:
                self.cluster.delete_pod(self.pool.settings.namespace, pod.name, uid)
            except ClusterError as exc:
                self.report.errors.append(exc.message)  # reconcile retries the delete of a draining pod
                return True
        self.store.remove_drained_pod(self.pool.name, pod.name)
        return True

    def drain_pool(self, pods: list[Pod]) -> None:
        """A deleted pool: cordon every pod, drain the idle ones; busy ones finish first; settings go last.

        The settings go only when no item is left and the cluster holds no pod of the pool, so a
        pod whose record was lost is deleted here rather than left behind by a pool nothing visits.
        """
        self.report.before, self.report.reason = len(pods), "pool deleted"
        every_state = (PodState.READY, PodState.UNHEALTHY, PodState.STARTING)
        namespace = self.pool.settings.namespace
        in_cluster = {p.name: p for p in self.cluster.list_pool_pods(namespace, self.pool.name)}
        for pod in pods:
            if pod.cordoned is None:
                self.store.cordon(self.pool.name, pod.name, POOL_DELETED)  # e.g. adopted after the DELETE
            if pod.busy == 0 and self.drain(pod, every_state, in_cluster):
                self.report.removed.append(pod.name)
        left = self.store.pods(self.pool.name)
        known = {p.name for p in pods} | {p.name for p in left}
        for stray in in_cluster.values():
            if stray.name not in known and not stray.deleting:
                self.cluster.delete_pod(namespace, stray.name, stray.uid)  # no record: it holds no task
        self.report.after = self.report.blocked = len(left)
        if not left and all(p.deleting or p.name in known for p in in_cluster.values()):
            self.store.remove_pool(self.pool.name)
        if self.report.removed:
            self.report.direction = Direction.DOWN.value
