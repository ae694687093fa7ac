"""Reconcile: keep the slot table true to the cluster.

Pods vanish (evictions, node loss, a `kubectl delete`), agents crash, status calls get lost. Once
a minute, per pool, one label-selected LIST and one Query are compared, and only what differs is
written:

- a pod that vanished, finished or was replaced: its tasks are reported lost, its item goes;
- a `starting` pod past its startup timeout: deleted, item removed;
- a `ready` pod with no beat for the heartbeat timeout: `unhealthy` (its beat brings it back);
- a slot whose task the agent's beats no longer list, past the leak grace: released, task lost;
- a labelled pod without an item: adopted as `starting`;
- a `draining` item whose pod still exists: its delete is retried; once gone, the item goes;
- pod uid and IP recorded; busy pods protected from node consolidation, idle pods not;
- the pool's figures emitted as metrics, and recorded in its history when they change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster import DO_NOT_DISRUPT, Cluster, ClusterError, ClusterPod
from podslots.model import IDLE_SLOT, Pod, PodState, PoolFigures
from podslots.observability import NAMESPACE, logger
from podslots.store import RegisteredPool, SlotStore, StoreConflict, new_pod

CREATE_GRACE_S = 60  # a `starting` item may exist briefly before its pod does (item first, then pod)


@dataclass
class PoolReport:
    pool: str
    lost_tasks: list[str] = field(default_factory=list)
    removed_pods: list[str] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deletes_retried: list[str] = field(default_factory=list)
    annotated: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v and k != "figures"}


class Reconciler:
    def __init__(
        self,
        store: SlotStore,
        cluster_for: Callable[[RegisteredPool], Cluster],
        bus: EventPublisher,
        clock: Clock,
    ) -> None:
        self.store = store
        self.cluster_for = cluster_for
        self.bus = bus
        self.clock = clock

    def run(
        self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None
    ) -> list[PoolReport]:
        """Every pool (or one), while time is left; the start rotates each minute so no pool starves."""
        pools = [p for p in self.store.pool_records() if only_pool in (None, p.name)]
        if pools:
            start = int(self.clock.now() // 60) % len(pools)
            pools = pools[start:] + pools[:start]
        reports = []
        for pool in pools:
            if time_left_s is not None and time_left_s() < 5:
                logger.warning("out of time; the next run continues", extra={"pool": pool.name})
                break
            reports.append(self.reconcile_pool(pool))
        return reports

    def reconcile_pool(self, pool: RegisteredPool) -> PoolReport:
        report = PoolReport(pool.name)
        namespace = pool.settings.namespace
        try:
            cluster = self.cluster_for(pool)
            seen = {p.name: p for p in cluster.list_pool_pods(namespace, pool.name)}
        except ClusterError as exc:
            report.errors.append(exc.message)
            logger.error("cannot list the pool's pods", extra={"pool": pool.name, "error": exc.message})
            return report
        now = int(self.clock.now())
        current: dict[str, Pod] = {}
        for item in self.store.pods(pool.name):
            try:
                kept = self._pod(pool, cluster, item, seen.pop(item.name, None), now, report)
            except (ClusterError, StoreConflict) as exc:
                # Something moved or failed part-way: leave this pod to the next run.
                report.errors.append(f"{item.name}: {exc}")
                logger.warning("pod left for the next run", extra={"pool": pool.name, "pod": item.name})
                kept = item
            if kept is not None:
                current[kept.name] = kept
        for orphan in seen.values():
            try:
                adopted = self._orphan(pool, cluster, orphan, now, report)
            except (ClusterError, StoreConflict) as exc:
                report.errors.append(f"{orphan.name}: {exc}")
                continue
            if adopted is not None:
                current[adopted.name] = adopted
        self._figures(pool, list(current.values()), now, report)
        if report.summary().keys() - {"pool"}:
            logger.info("pool reconciled", extra=report.summary())
        return report

    # ---- one pod item against what the cluster says --------------------------------------------

    def _pod(
        self,
        pool: RegisteredPool,
        cluster: Cluster,
        item: Pod,
        pod: ClusterPod | None,
        now: int,
        report: PoolReport,
    ) -> Pod | None:
        namespace, settings = pool.settings.namespace, pool.settings
        if item.state is PodState.DRAINING:
            if pod is None:
                self.store.remove_drained_pod(pool.name, item.name)
                report.removed_pods.append(item.name)
                return None
            if not pod.deleting:
                cluster.delete_pod(namespace, pod.name, pod.uid)
                report.deletes_retried.append(item.name)
            return item
        reason = self._gone(item, pod, now)
        if reason is not None:
            self._lose(pool, item, reason, now, report)
            if pod is not None and pod.finished and not pod.deleting:
                cluster.delete_pod(namespace, pod.name, pod.uid)
            return None
        if pod is None:
            return item  # a starting item whose create call is still in flight
        if item.state is PodState.STARTING and now - item.created_at > settings.startup_timeout_s:
            cluster.delete_pod(namespace, pod.name, pod.uid)
            if self.store.remove_idle_pod(item):
                report.removed_pods.append(item.name)
                logger.warning("pod never came up; removed", extra={"pool": pool.name, "pod": item.name})
                return None
            return item
        last_beat = item.heartbeat_at if item.heartbeat_at is not None else item.created_at
        if item.state is PodState.READY and now - last_beat > settings.heartbeat_timeout_s:
            if self.store.mark_unhealthy(item):
                report.unhealthy.append(item.name)
                item = replace(item, state=PodState.UNHEALTHY)
        if self.store.observe_pod(item, pod.uid, pod.pod_ip):
            item = replace(item, uid=pod.uid or item.uid, pod_ip=pod.pod_ip or item.pod_ip)
        item = self._leaks(pool, item, now, report)
        self._protection(namespace, cluster, item, pod, report)
        return item

    @staticmethod
    def _gone(item: Pod, pod: ClusterPod | None, now: int) -> str | None:
        if pod is None:
            if item.state is PodState.STARTING and now - item.created_at < CREATE_GRACE_S:
                return None
            return "vanished"
        if item.uid and pod.uid != item.uid:
            return "replaced"
        if pod.finished:
            return f"pod {pod.phase.lower()}"
        if pod.deleting:
            return "deleted"
        return None

    def _lose(self, pool: RegisteredPool, item: Pod, reason: str, now: int, report: PoolReport) -> None:
        lost = self.store.lose_pod(item, reason, now, _event_id())
        report.removed_pods.append(item.name)
        for slot, task_id in lost:
            report.lost_tasks.append(task_id)
            self._publish(
                "TaskLost",
                {"pool": pool.name, "pod": item.name, "slot": slot, "task_id": task_id, "reason": reason},
            )
        logger.warning(
            "pod gone; its tasks are lost", extra={"pool": pool.name, "pod": item.name, "reason": reason}
        )

    def _leaks(self, pool: RegisteredPool, item: Pod, now: int, report: PoolReport) -> Pod:
        """Release slots whose task the agent, beating recently, has stopped listing."""
        settings = pool.settings
        beat = item.heartbeat_at
        if beat is None or now - beat > settings.heartbeat_timeout_s:
            return item  # no recent beat: the agent's silence says nothing about its tasks
        for key, slot in sorted(item.slots.items()):
            if slot.is_idle or slot.task_id in item.held_tasks or slot.since is None:
                continue
            if now - slot.since <= settings.leak_grace_s or beat <= slot.since:
                continue
            self.store.release_leaked(item, key, now, _event_id())
            report.released.append(slot.task_id or "")
            self._publish(
                "TaskLost",
                {
                    "pool": pool.name,
                    "pod": item.name,
                    "slot": key,
                    "task_id": slot.task_id,
                    "reason": "leaked",
                },
            )
            logger.warning("leaked slot released", extra={"pool": pool.name, "pod": item.name, "slot": key})
            item = item.with_slot(key, IDLE_SLOT)
        return item

    @staticmethod
    def _protection(namespace: str, cluster: Cluster, item: Pod, pod: ClusterPod, report: PoolReport) -> None:
        """Busy pods carry the do-not-disrupt annotations and idle pods carry neither."""
        if item.busy and not pod.protected:
            cluster.patch_annotations(namespace, pod.name, dict[str, str | None](DO_NOT_DISRUPT))
        elif not item.busy and not pod.unprotected:
            cluster.patch_annotations(namespace, pod.name, dict.fromkeys(DO_NOT_DISRUPT))
        else:
            return
        report.annotated.append(pod.name)

    def _orphan(
        self, pool: RegisteredPool, cluster: Cluster, pod: ClusterPod, now: int, report: PoolReport
    ) -> Pod | None:
        """A pod labelled as ours with no item: adopt it (it will beat), or clean it up if it ended."""
        if pod.deleting:
            return None
        if pod.finished:
            cluster.delete_pod(pool.settings.namespace, pod.name, pod.uid)
            return None
        adopted = new_pod(pool.name, pod.name, pod.slots or pool.settings.slots_per_pod, now, uid=pod.uid)
        adopted = replace(adopted, pod_ip=pod.pod_ip)
        self.store.put_pod(adopted)
        report.adopted.append(pod.name)
        logger.info("labelled pod adopted", extra={"pool": pool.name, "pod": pod.name})
        return adopted

    # ---- figures -----------------------------------------------------------------------------

    def _figures(self, pool: RegisteredPool, pods: list[Pod], now: int, report: PoolReport) -> None:
        figures = PoolFigures.of(pods).as_dict()
        report.figures = figures
        metrics = EphemeralMetrics(namespace=NAMESPACE)
        metrics.add_dimension(name="pool", value=pool.name)
        for name, value in figures.items():
            unit = MetricUnit.Percent if name == "utilization" else MetricUnit.Count
            metrics.add_metric(
                name=_metric_name(name), unit=unit, value=value * 100 if name == "utilization" else value
            )
        metrics.flush_metrics()
        if figures != pool.figures:
            try:
                self.store.record_figures(pool.name, figures, now, _event_id())
            except StoreConflict as exc:  # the pool went meanwhile
                report.errors.append(f"figures: {exc}")

    def _publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        try:
            self.bus.publish(detail_type, detail)
        except Exception:  # the history already holds it; the bus is best effort here
            logger.exception("event not published", extra={"detail_type": detail_type, **detail})


def _metric_name(field_name: str) -> str:
    """slots_running -> SlotsRunning, utilization -> SlotUtilization."""
    if field_name == "utilization":
        return "SlotUtilization"
    return "".join(part.capitalize() for part in field_name.split("_"))


def _event_id() -> str:
    return uuid.uuid4().hex[:12]
