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

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster import Cluster, ClusterError
from podslots.model import Pod, PodState
from podslots.observability import NAMESPACE, logger
from podslots.podspec import new_pod_name, pod_manifest
from podslots.scaling import Decision, Direction, Load, decide
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
        reports = []
        for pool in self.store.pool_records():
            if only_pool not in (None, pool.name):
                continue
            if time_left_s is not None and time_left_s() < 5:
                logger.warning("out of time; the next run continues", extra={"pool": pool.name})
                break
            reports.append(self.scale_pool(pool))
        return reports

    def scale_pool(self, pool: RegisteredPool) -> ScaleReport:
        report = ScaleReport(pool.name)
        now = int(self.clock.now())
        lease = self.store.acquire_lease(pool.name, self.holder, now, LEASE_TTL_S)
        if lease is None:
            report.skipped = "another run holds the lease"
            return report
        low_since = lease.low_since
        try:
            cluster = self.cluster_for(pool)
            pods = self.store.pods(pool.name)
            if pool.deleting:
                self._drain_pool(pool, cluster, pods, report)
                return report
            waiting = self._demand(pool.name, now)
            load = load_of(pods, waiting)
            decision = decide(load, pool.settings, low_since, now)
            low_since = decision.low_since
            report.before, report.after, report.reason = load.pods, load.pods, decision.reason
            if decision.direction is Direction.UP:
                self._scale_up(pool, cluster, decision, load, now, report)
            elif decision.direction is Direction.DOWN:
                self._scale_down(pool, cluster, pods, decision, load, report)
                low_since = now  # a new delay before the next step down
            if report.direction != Direction.NONE.value:
                self._announce(pool, report, now)
        except (ClusterError, StoreConflict) as exc:
            report.errors.append(str(exc))
            logger.warning("scaling step failed part-way", extra={"pool": pool.name, "error": str(exc)})
        finally:
            self.store.release_lease(lease, low_since)
        return report

    def _demand(self, pool: str, now: int) -> int:
        """Count the waiting tasks; drop those that stopped asking (they may come back)."""
        count = 0
        for task in self.store.waiting(pool):
            if now - task.updated_at > DEMAND_WINDOW_S:
                self.store.forget_waiting(task)
            else:
                count += 1
        return count

    def _scale_up(
        self, pool: RegisteredPool, cluster: Cluster, decision: Decision, load: Load, now: int, report: ScaleReport
    ) -> None:
        report.direction = Direction.UP.value
        for _ in range(decision.delta(load)):
            name = new_pod_name(pool.name)
            item = new_pod(pool.name, name, pool.settings.slots_per_pod, now)
            self.store.put_pod(item)  # the item first: the table always knows every pod
            try:
                created = cluster.create_pod(
                    pool.settings.namespace, pod_manifest(pool.name, name, pool.settings, self.api_base_url)
                )
            except ClusterError as exc:
                self.store.remove_idle_pod(item)
                report.errors.append(exc.message)
                self.store.add_event(pool.name, "PodCreateFailed", {"pod": name, "error": exc.message}, now, name)
                logger.error("pod create failed; item removed", extra={"pool": pool.name, "pod": name})
                break
            self.store.observe_pod(item, created.uid, created.pod_ip)
            report.created.append(name)
        report.after = load.pods + len(report.created)

    def _scale_down(
        self,
        pool: RegisteredPool,
        cluster: Cluster,
        pods: list[Pod],
        decision: Decision,
        load: Load,
        report: ScaleReport,
    ) -> None:
        report.direction = Direction.DOWN.value
        wanted = -decision.delta(load)
        for pod in removal_order(pods):
            if len(report.removed) == wanted:
                break
            if self._drain(pool, cluster, pod, report):
                report.removed.append(pod.name)
        removed_capacity = sum(1 for p in pods if p.name in report.removed and p.state is PodState.READY)
        report.after = load.pods - removed_capacity
        report.blocked = max(0, wanted - len(report.removed))
        if report.blocked:
            logger.info("scale-down blocked: too few idle pods", extra={"pool": pool.name, "blocked": report.blocked})

    def _drain(
        self,
        pool: RegisteredPool,
        cluster: Cluster,
        pod: Pod,
        report: ScaleReport,
        states: tuple[PodState, ...] = (PodState.READY, PodState.UNHEALTHY),
    ) -> bool:
        """The drain protocol. False when the pod got a task first (the allocation won the race)."""
        if pod.state is not PodState.DRAINING and not self.store.start_draining(pool.name, pod.name, states):
            return False
        if pod.uid:
            try:
                cluster.delete_pod(pool.settings.namespace, pod.name, pod.uid)
            except ClusterError as exc:
                report.errors.append(exc.message)  # reconcile retries the delete of a draining pod
                return True
        self.store.remove_drained_pod(pool.name, pod.name)
        return True

    def _drain_pool(self, pool: RegisteredPool, cluster: Cluster, pods: list[Pod], report: ScaleReport) -> None:
        """A deleted pool: drain every idle pod; busy ones are left until idle; settings go last."""
        report.before, report.reason = len(pods), "pool deleted"
        every_state = (PodState.READY, PodState.UNHEALTHY, PodState.STARTING)
        for pod in pods:
            if pod.busy == 0 and self._drain(pool, cluster, pod, report, every_state):
                report.removed.append(pod.name)
        report.after = report.blocked = len(self.store.pods(pool.name))
        if report.after == 0:
            self.store.remove_pool(pool.name)
        if report.removed:
            report.direction = Direction.DOWN.value

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
        metrics = EphemeralMetrics(namespace=NAMESPACE)
        metrics.add_dimension(name="pool", value=pool.name)
        if report.direction == Direction.UP.value:
            metrics.add_metric(name="ScaleUp", unit=MetricUnit.Count, value=len(report.created))
        else:
            metrics.add_metric(name="ScaleDown", unit=MetricUnit.Count, value=len(report.removed))
            metrics.add_metric(name="ScaleDownBlocked", unit=MetricUnit.Count, value=report.blocked)
        metrics.flush_metrics()
        logger.info("pool scaled", extra=detail)
