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
from functools import cached_property
from typing import Any

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster import DO_NOT_DISRUPT, Cluster, ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.model import CREATE_GRACE_S, IDLE_SLOT, POOL_DELETED, Pod, PodState, PoolFigures
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.pool_order import each_pool
from podslots.settings import PoolMode, template_revision
from podslots.store import RegisteredPool, SlotStore, StoreConflict, new_pod


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
    would_delete: list[str] = field(default_factory=list)  # observe and paused mode
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

    def run(self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None) -> list[PoolReport]:
        return each_pool(
            self.store,
            self.clock,
            "reconcile",
            self.reconcile_pool,
            lambda pool, problem: PoolReport(pool.name, errors=[problem]),
            only_pool=only_pool,
            time_left_s=time_left_s,
        )

    def reconcile_pool(self, pool: RegisteredPool) -> PoolReport:
        report = PoolReport(pool.name)
        try:
            cluster = self.cluster_for(pool)
            listed = cluster.list_pool_pods(pool.settings.namespace, pool.name, pool.settings.adopt_selector)
            seen = {p.name: p for p in listed}
        except PodSlotsError as exc:  # the kubeconfig cannot be read, or the LIST failed
            report.errors.append(exc.message)
            logger.error("cannot list the pool's pods", extra={"pool": pool.name, "error": exc.message})
            return report
        run = _PoolRun(self, pool, cluster, int(self.clock.now()), report)
        current: dict[str, Pod] = {}
        for item in self.store.pods(pool.name):
            try:
                kept = run.pod(item, seen.pop(item.name, None))
            except (ClusterError, StoreConflict) as exc:
                # Something moved or failed part-way: leave this pod to the next run.
                report.errors.append(f"{item.name}: {exc}")
                logger.warning("pod left for the next run", extra={"pool": pool.name, "pod": item.name})
                kept = item
            if kept is not None:
                current[kept.name] = kept
        for orphan in seen.values():
            try:
                adopted = run.orphan(orphan)
            except (ClusterError, StoreConflict) as exc:
                report.errors.append(f"{orphan.name}: {exc}")
                continue
            if adopted is not None:
                current[adopted.name] = adopted
        run.figures(list(current.values()))
        if report.summary().keys() - {"pool"}:
            logger.info("pool reconciled", extra=report.summary())
        return report

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        try:
            self.bus.publish(detail_type, detail)
        except Exception:  # the history already holds it; the bus is best effort here
            logger.exception("event not published", extra={"detail_type": detail_type, **detail})


@dataclass
class _PoolRun:
    """One pool in one run: what the cluster said, the time, and the report being written."""

    reconciler: Reconciler
    pool: RegisteredPool
    cluster: Cluster
    now: int
    report: PoolReport

    @property
    def store(self) -> SlotStore:
        return self.reconciler.store

    @property
    def namespace(self) -> str:
        return self.pool.settings.namespace

    def pod(self, item: Pod, pod: ClusterPod | None) -> Pod | None:
        """One item against what the cluster says of it; returns the item as it now is (or None)."""
        if item.state is PodState.DRAINING:
            return self._draining(item, pod)
        reason = self._gone(item, pod)
        if reason is not None:
            self._lose(item, reason)
            if pod is not None and pod.finished and not pod.deleting:
                self._delete(pod, f"pod {pod.phase.lower()}")
            return None
        if pod is None:
            return item  # a starting item whose create call is still in flight
        if item.state is PodState.STARTING and self.now - item.created_at > self.pool.settings.startup_timeout_s:
            return self._never_came_up(item, pod)
        item = self._liveness(item)
        revision = pod.revision or item.revision or self.revision  # a pod from before revisions: current
        if self.store.observe_pod(item, pod.uid, pod.pod_ip, revision):
            item = replace(item, uid=pod.uid or item.uid, pod_ip=pod.pod_ip or item.pod_ip, revision=revision)
        item = self._leaks(item)
        if self.pool.settings.mode is not PoolMode.OBSERVE:
            self._protection(item, pod)
        return item

    @cached_property
    def revision(self) -> str:
        return template_revision(self.pool.settings)

    @property
    def deletes(self) -> bool:
        """Only an active pool's reconcile deletes pods; observe and paused record what it would delete."""
        return self.pool.settings.mode.acts

    def _delete(self, pod: ClusterPod, reason: str, item: Pod | None = None) -> bool:
        """Delete the pod in the cluster (uid precondition), or, in observe and paused mode, record
        that it would have (`WouldDelete`, once per pod and reason) and leave it. True if deleted."""
        if self.deletes:
            self.cluster.delete_pod(self.namespace, pod.name, pod.uid)
            return True
        pool_metrics(self.pool.name, [("WouldDelete", MetricUnit.Count, 1)])
        note = f"would delete: {reason}"
        # Recorded once per pod and reason, on its item; a pod without one is only counted and logged.
        if item is not None and self.store.note(item, note):
            detail = {"pool": self.pool.name, "pod": pod.name, "reason": reason, "mode": self.pool.settings.mode.value}
            self.store.add_event(self.pool.name, "WouldDelete", detail, self.now, f"{pod.name}-{_event_id()}")
        self.report.would_delete.append(pod.name)
        logger.info("would delete", extra={"pool": self.pool.name, "pod": pod.name, "reason": reason})
        return False

    def _draining(self, item: Pod, pod: ClusterPod | None) -> Pod | None:
        if pod is None:
            self.store.remove_drained_pod(self.pool.name, item.name)
            self.report.removed_pods.append(item.name)
            return None
        if not pod.deleting and self._delete(pod, "draining", item):
            self.report.deletes_retried.append(item.name)
        return item

    def _gone(self, item: Pod, pod: ClusterPod | None) -> str | None:
        if pod is None:
            in_flight = item.state is PodState.STARTING and self.now - item.created_at < CREATE_GRACE_S
            return None if in_flight else "vanished"
        if item.uid and pod.uid != item.uid:
            return "replaced"
        if pod.finished:
            return f"pod {pod.phase.lower()}"
        if pod.deleting:
            return "deleted"
        return None

    def _lose(self, item: Pod, reason: str) -> None:
        lost = self.store.lose_pod(item, reason, self.now, _event_id())
        self.report.removed_pods.append(item.name)
        for slot, task_id in lost:
            self.report.lost_tasks.append(task_id)
            detail = {"pool": self.pool.name, "pod": item.name, "slot": slot, "task_id": task_id, "reason": reason}
            self.reconciler.publish("TaskLost", detail)
        logger.warning(
            "pod gone; its tasks are lost", extra={"pool": self.pool.name, "pod": item.name, "reason": reason}
        )

    def _never_came_up(self, item: Pod, pod: ClusterPod) -> Pod | None:
        """The drain protocol, as scale-down does it: unallocatable first (a conditional
        `starting -> draining` that fails if the pod registered meanwhile), then the delete, then
        the item. A slow pod that came up and took a task between our read and now is kept."""
        if not self.deletes:
            self._delete(pod, f"never came up within {self.pool.settings.startup_timeout_s}s", item)
            return item
        if not self.store.start_draining(self.pool.name, item.name, (PodState.STARTING,)):
            return item
        self.cluster.delete_pod(self.namespace, pod.name, pod.uid)
        self.store.remove_drained_pod(self.pool.name, item.name)
        self.report.removed_pods.append(item.name)
        logger.warning("pod never came up; removed", extra={"pool": self.pool.name, "pod": item.name})
        return None

    def _liveness(self, item: Pod) -> Pod:
        last_beat = item.heartbeat_at if item.heartbeat_at is not None else item.created_at
        silent = self.now - last_beat > self.pool.settings.heartbeat_timeout_s
        if item.state is PodState.READY and silent and self.store.mark_unhealthy(item):
            self.report.unhealthy.append(item.name)
            return replace(item, state=PodState.UNHEALTHY)
        return item

    def _leaks(self, item: Pod) -> Pod:
        """Release slots whose task the agent, beating recently, has stopped listing."""
        settings = self.pool.settings
        beat = item.heartbeat_at
        if beat is None or self.now - beat > settings.heartbeat_timeout_s:
            return item  # no recent beat: the agent's silence says nothing about its tasks
        for key, slot in sorted(item.slots.items()):
            if slot.is_idle or slot.task_id in item.held_tasks or slot.since is None:
                continue
            if self.now - slot.since <= settings.leak_grace_s or beat <= slot.since:
                continue
            self.store.release_leaked(item, key, self.now, _event_id())
            self.report.released.append(slot.task_id or "")
            self.reconciler.publish(
                "TaskLost",
                {"pool": self.pool.name, "pod": item.name, "slot": key, "task_id": slot.task_id, "reason": "leaked"},
            )
            logger.warning("leaked slot released", extra={"pool": self.pool.name, "pod": item.name, "slot": key})
            item = item.with_slot(key, IDLE_SLOT)
        return item

    def _protection(self, item: Pod, pod: ClusterPod) -> None:
        """Busy pods carry the do-not-disrupt annotations and idle pods carry neither."""
        if item.busy and not pod.protected:
            self.cluster.patch_annotations(self.namespace, pod.name, dict[str, str | None](DO_NOT_DISRUPT))
        elif not item.busy and not pod.unprotected:
            self.cluster.patch_annotations(self.namespace, pod.name, dict.fromkeys(DO_NOT_DISRUPT))
        else:
            return
        self.report.annotated.append(pod.name)

    def orphan(self, pod: ClusterPod) -> Pod | None:
        """A pod labelled as ours with no item: adopt it (it will beat), or clean it up if it ended."""
        if self.pool.deleting:
            return None  # a deleting pool adopts nothing: autoscale deletes its strays, then the pool
        if pod.deleting:
            return None
        if pod.finished:
            if pod.managed:  # another controller's finished pod is its own business
                self._delete(pod, f"pod {pod.phase.lower()}")
            return None
        slots = pod.slots or self.pool.settings.slots_per_pod
        revision = pod.revision or self.revision
        adopted = replace(
            new_pod(self.pool.name, pod.name, slots, self.now, uid=pod.uid, revision=revision),
            pod_ip=pod.pod_ip,
            cordoned=POOL_DELETED if self.pool.deleting else None,  # adopted to be drained
        )
        if not self.store.put_pod(adopted, namespace=self.namespace):
            return None  # an overlapping run adopted it first
        self.report.adopted.append(pod.name)
        logger.info("labelled pod adopted", extra={"pool": self.pool.name, "pod": pod.name})
        return adopted

    def figures(self, pods: list[Pod]) -> None:
        """Emit the pool's figures; record them in its history only when they changed."""
        figures = PoolFigures.of(pods, self.revision).as_dict()
        self.report.figures = figures
        lost = len(self.report.lost_tasks) + len(self.report.released)
        pool_metrics(
            self.pool.name,
            [
                *(
                    ("SlotUtilization", MetricUnit.Percent, value * 100)
                    if name == "utilization"
                    else (_metric_name(name), MetricUnit.Count, value)
                    for name, value in figures.items()
                ),
                ("TasksLost", MetricUnit.Count, lost),
            ],
        )
        if figures != self.pool.figures:
            try:
                self.store.record_figures(self.pool.name, figures, self.now, _event_id())
            except StoreConflict as exc:  # the pool went meanwhile
                self.report.errors.append(f"figures: {exc}")


def _metric_name(field_name: str) -> str:
    """slots_running -> SlotsRunning."""
    return "".join(part.capitalize() for part in field_name.split("_"))


def _event_id() -> str:
    return uuid.uuid4().hex[:12]
