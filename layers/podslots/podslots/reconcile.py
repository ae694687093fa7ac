"""Reconcile: keep the slot table true to the cluster.

Pods vanish (evictions, node loss, a `kubectl delete`), agents crash, status calls get lost. Once
a minute, per pool, one label-selected LIST and one Query are compared, and only what differs is
written:

- a pod that vanished, finished or was replaced: its tasks are reported lost, its item goes; a
  pod whose agent container exited, or has not started past the startup timeout, has finished
  whatever its phase (a sidecar keeps it Running): it is deleted too;
- a `starting` pod past its startup timeout: deleted, item removed;
- a `ready` pod with no beat for the heartbeat timeout: `unhealthy` (its beat brings it back);
- a slot whose task the agent's beats no longer list, past the leak grace: released, task lost;
- a labelled pod without an item: adopted as `starting`, once claimed for this pool in the cluster;
  a pod another pool owns is never adopted (`AdoptionRefused`);
- a pod a controller owns (ReplicaSet, Job, ...) is never deleted (`PodOwnedByController`);
- a `draining` item whose pod still exists: its delete is retried; once gone, the item goes;
- pod uid and IP recorded; busy pods protected from node consolidation (annotations) and from
  evictions (a label the pool's PodDisruptionBudget selects), idle pods not;
- the pool's figures emitted as metrics, and recorded in its history when they change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from podslots import reconcile_plan as verdicts
from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster_pods import BUSY_LABEL, DO_NOT_DISRUPT, Cluster, ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.events import StepEvents
from podslots.ids import new_event_id
from podslots.model import IDLE_SLOT, Pod, PodState, PoolFigures, new_pod
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.pool_guard import namespace_refused, report_below_level
from podslots.pool_order import each_pool
from podslots.ports import ReconcileStore
from podslots.settings import template_revision
from podslots.store import RegisteredPool, StoreConflict


@dataclass
class PoolReport:
    pool: str
    lost_tasks: list[str] = field(default_factory=list)
    removed_pods: list[str] = field(default_factory=list)
    unhealthy: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # pods another pool owns, matched by adopt_selector
    owned_by_controller: list[str] = field(default_factory=list)  # pods it would delete but a controller owns
    deletes_retried: list[str] = field(default_factory=list)
    annotated: list[str] = field(default_factory=list)
    would_delete: list[str] = field(default_factory=list)  # observe and paused mode
    below_pod_security: list[str] = field(default_factory=list)  # `control: field` of each violation
    skipped: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v and k != "figures"}


class Reconciler:
    events = StepEvents()  # history, bus, metric and log, through the step's own store and bus

    def __init__(
        self, store: ReconcileStore, cluster_for: Callable[[RegisteredPool], Cluster], bus: EventPublisher, clock: Clock
    ) -> None:
        self.store = store
        self.cluster_for = cluster_for
        self.bus = bus
        self.clock = clock

    def run(
        self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None, *, strict: bool = False
    ) -> list[PoolReport]:
        return each_pool(
            self.store,
            self.clock,
            "reconcile",
            self.reconcile_pool,
            lambda pool, problem: PoolReport(pool.name, errors=[problem]),
            only_pool=only_pool,
            time_left_s=time_left_s,
            strict=strict,
        )

    def reconcile_pool(self, pool: RegisteredPool) -> PoolReport:
        report = PoolReport(pool.name)
        now = int(self.clock.now())
        if namespace_refused(self.store, pool, now, "reconcile"):
            report.skipped = "namespace not allowed"
            return report
        report.below_pod_security = [f"{v.control}: {v.field}" for v in report_below_level(self.store, pool, now)]
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


@dataclass
class _PoolRun:
    """One pool in one run: what the cluster said, the time, and the report being written."""

    reconciler: Reconciler
    pool: RegisteredPool
    cluster: Cluster
    now: int
    report: PoolReport
    budget_tried: bool = False

    @property
    def store(self) -> ReconcileStore:
        return self.reconciler.store

    @property
    def namespace(self) -> str:
        return self.pool.settings.namespace

    def pod(self, item: Pod, pod: ClusterPod | None) -> Pod | None:
        """One item against what the cluster says of it; returns the item as it now is (or None)."""
        if item.state is PodState.DRAINING:
            return self._draining(item, pod)
        reason = verdicts.gone(item, pod, self.pool.settings, self.now)
        if reason is not None:
            self._lose(item, reason)
            end = verdicts.ended(pod, self.pool.settings, self.now) if pod is not None else None
            if pod is not None and end is not None and not pod.deleting:
                self._delete(pod, end)
            return None
        if pod is None:
            return item  # a starting item whose create call is still in flight
        if self.store.record_controller(item, pod.controller):
            item = replace(item, controller=pod.controller)
        if verdicts.never_came_up(item, self.pool.settings, self.now):
            return self._never_came_up(item, pod)
        item = self._liveness(item)
        revision = pod.revision or item.revision or self.revision  # a pod from before revisions: current
        if self.store.observe_pod(item, pod.uid, pod.pod_ip, revision):
            item = replace(item, uid=pod.uid or item.uid, pod_ip=pod.pod_ip or item.pod_ip, revision=revision)
        if item.adopted and pod.owner_pool != self.pool.name and self._unclaimed_adoption(item, pod) is None:
            return None
        item = self._leaks(item)
        if self.pool.settings.mode.may_patch:
            self._protection(item, pod)
        return item

    @cached_property
    def revision(self) -> str:
        return template_revision(self.pool.settings)

    def _delete(self, pod: ClusterPod, reason: str, item: Pod | None = None) -> bool:
        """Delete the pod in the cluster (uid precondition), or, in observe and paused mode, record
        that it would have (`WouldDelete`, once per pod and reason) and leave it. True if deleted.

        Never a pod a controller owns, in any mode: its controller would only make it again, and the
        pod is that controller's to delete (orphan it first: docs/architecture.md, "Migration")."""
        if pod.controller is not None:
            self._owned_by_controller(pod, reason)
            return False
        if self.pool.settings.mode.may_delete:
            self.cluster.delete_pod(self.namespace, pod.name, pod.uid)
            return True
        # Recorded once per pod and reason, on its item; a pod without one is only counted and logged.
        recorded = item is not None and self.store.note(item, f"would delete: {reason}")
        detail = {"pool": self.pool.name, "pod": pod.name, "reason": reason, "mode": self.pool.settings.mode.value}
        events, metrics = self.reconciler.events, [("WouldDelete", MetricUnit.Count, 1)]
        events.would(self.pool.name, "WouldDelete", detail, self.now, metrics=metrics, recorded=recorded)
        self.report.would_delete.append(pod.name)
        return False

    def _unclaimed_adoption(self, item: Pod, pod: ClusterPod) -> Pod | None:
        """An item adopted before claims existed: claimed now; if another pool claimed the pod
        first, this pool lets go of it (when it holds nothing here) and reports the refusal."""
        owner = pod.owner_pool
        if owner is None:
            self.cluster.claim_pod(self.namespace, pod, self.pool.name)  # lost: seen next run
            return item
        self._refuse(pod, owner)
        if item.busy == 0 and self.store.remove_idle_pod(item):
            return None
        return item

    def _owned_by_controller(self, pod: ClusterPod, reason: str) -> None:
        """Counted every run (the alarm), recorded in the history once per pod."""
        self.report.owned_by_controller.append(pod.name)
        detail = {"pod": pod.name, "controller": pod.controller, "would_delete": reason}
        self.store.notice_once(
            self.pool.name, "PodOwnedByController", pod=pod.name, uid=pod.uid, detail=detail, now=self.now
        )
        logger.warning("pod owned by a controller; not deleted", extra={"pool": self.pool.name, "pod": pod.name})

    def _draining(self, item: Pod, pod: ClusterPod | None) -> Pod | None:
        if pod is None:
            self.store.remove_drained_pod(self.pool.name, item.name)
            self.report.removed_pods.append(item.name)
            return None
        if not pod.deleting and self._delete(pod, "draining", item):
            self.report.deletes_retried.append(item.name)
        return item

    def _lose(self, item: Pod, reason: str) -> None:
        lost = self.store.lose_pod(item, reason, self.now, new_event_id())
        self.report.removed_pods.append(item.name)
        for slot, task_id in lost:
            self.report.lost_tasks.append(task_id)
            detail = {"pool": self.pool.name, "pod": item.name, "slot": slot, "task_id": task_id, "reason": reason}
            self.reconciler.events.publish("TaskLost", detail)
        logger.warning(
            "pod gone; its tasks are lost", extra={"pool": self.pool.name, "pod": item.name, "reason": reason}
        )

    def _never_came_up(self, item: Pod, pod: ClusterPod) -> Pod | None:
        """The drain protocol, as scale-down does it: unallocatable first (a conditional
        `starting -> draining` that fails if the pod registered meanwhile), then the delete, then
        the item. A slow pod that came up and took a task between our read and now is kept."""
        if not self.pool.settings.mode.may_delete or pod.controller is not None:
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
        if verdicts.silent(item, self.pool.settings, self.now) and self.store.mark_unhealthy(item):
            self.report.unhealthy.append(item.name)
            return replace(item, state=PodState.UNHEALTHY)
        return item

    def _leaks(self, item: Pod) -> Pod:
        """Release slots whose task the agent, listing its tasks recently, has stopped listing.

        Judged from the last beat that listed them (`held_at`), never from a beat that did not say
        (the agent could not read its task list): such a beat keeps the pod alive and frees
        nothing. The release is conditional on that listing being the one read; a listing beat
        that lands meanwhile refuses it, and the next run judges from the new one.
        """
        for key in verdicts.leaked_slots(item, self.pool.settings, self.now):
            slot = item.slots[key]
            try:
                self.store.release_leaked(item, key, self.now, new_event_id())
            except StoreConflict:
                # The slot or the listing moved since the read (or the write met a transient
                # conflict): what was judged is stale, so nothing more is judged from it.
                logger.info("leak not released: the pod moved since it was read", extra=self._at(item, key))
                return item
            self.report.released.append(slot.task_id or "")
            detail = {**self._at(item, key), "task_id": slot.task_id, "reason": "leaked"}
            self.reconciler.events.publish("TaskLost", detail)
            logger.warning("leaked slot released", extra=self._at(item, key))
            item = item.with_slot(key, IDLE_SLOT)
        return item

    def _at(self, item: Pod, key: str) -> dict[str, str]:
        return {"pool": self.pool.name, "pod": item.name, "slot": key}

    def _protection(self, item: Pod, pod: ClusterPod) -> None:
        """Busy pods carry the do-not-disrupt annotations and the busy label, idle pods none of them.

        The annotations keep node consolidation (Karpenter, cluster-autoscaler) away; the label puts
        the pod under the pool's PodDisruptionBudget, so the Eviction API (`kubectl drain`, node
        upgrades) waits until it is idle. Label and annotations change in one patch. The budget is
        ensured before a pod is labelled, and while any is (the gateway remembers it for a while).
        """
        if item.busy > 0:
            self._budget()
        patch = verdicts.protection(item, pod, self.pool.name)
        if patch is verdicts.Protection.PROTECT:
            labels: dict[str, str | None] = {BUSY_LABEL: self.pool.name}
            self.cluster.patch_metadata(self.namespace, pod.name, labels, dict[str, str | None](DO_NOT_DISRUPT))
        elif patch is verdicts.Protection.UNPROTECT:
            self.cluster.patch_metadata(self.namespace, pod.name, {BUSY_LABEL: None}, dict.fromkeys(DO_NOT_DISRUPT))
        if patch is not None:
            self.report.annotated.append(pod.name)

    def _budget(self) -> None:
        """The pool's PodDisruptionBudget exists (one create at most per run; 409 counts as done).

        A failure (RBAC without `poddisruptionbudgets`, a fault) is reported and the pod is labelled
        anyway: the annotations still hold, and the next run tries again.
        """
        if self.budget_tried:
            return
        self.budget_tried = True
        try:
            self.cluster.ensure_disruption_budget(self.namespace, self.pool.name, self.now)
        except ClusterError as exc:  # the call and its status only: the server's words are not ours to log
            self.report.errors.append(f"disruption budget: {exc.call} failed ({exc.status or 'no answer'})")
            logger.warning("disruption budget not ensured", extra={"pool": self.pool.name, "status": exc.status})

    def orphan(self, pod: ClusterPod) -> Pod | None:
        """A listed pod with no item: adopt it (it will beat), or clean it up if it ended.

        A pod belongs to one pool: the one its `podslots.io/pool` label names, else the one that
        claimed it. Another pool's pod is refused. An unclaimed pod is claimed first, by a patch
        conditional on the resource version listed (of two pools racing for it, one wins), and only
        then does it get an item; a crash between the two leaves our claim, which the next run
        recognises as its own and finishes.
        """
        owner = pod.owner_pool
        settings = self.pool.settings
        verdict = verdicts.orphan(self.pool.name, pod, owner, settings, self.now, deleting_pool=self.pool.deleting)
        if verdict is verdicts.Orphan.DELETE_FINISHED:
            self._delete(pod, verdicts.ended(pod, settings, self.now) or "ended")
        if verdict is verdicts.Orphan.REFUSE and owner is not None:
            self._refuse(pod, owner)
        if verdict is not verdicts.Orphan.ADOPT:
            return None  # a deleting pool adopts nothing: autoscale deletes its strays, then the pool
        if owner is None and not self.cluster.claim_pod(self.namespace, pod, self.pool.name):
            logger.info("claim lost: the pod changed since the LIST", extra={"pool": self.pool.name, "pod": pod.name})
            return None  # the next run sees it as it now is (another pool's, perhaps)
        slots = pod.slots or self.pool.settings.slots_per_pod
        revision = pod.revision or self.revision
        adopted = replace(
            new_pod(self.pool.name, pod.name, slots, self.now, uid=pod.uid, revision=revision),
            pod_ip=pod.pod_ip,
            controller=pod.controller,
        )
        if not self.store.put_pod(adopted, namespace=self.namespace):
            return None  # an overlapping run adopted it first
        self.report.adopted.append(pod.name)
        logger.info("labelled pod adopted", extra={"pool": self.pool.name, "pod": pod.name})
        return adopted

    def _refuse(self, pod: ClusterPod, owner: str) -> None:
        """Another pool's pod matched the adopt selector: counted every run, recorded once per pod."""
        self.report.refused.append(pod.name)
        detail = {"pod": pod.name, "owner": owner}
        self.store.notice_once(
            self.pool.name, "AdoptionRefused", pod=pod.name, uid=pod.uid, detail=detail, now=self.now
        )
        logger.warning("adoption refused: another pool's pod", extra={"pool": self.pool.name, "pod": pod.name})

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
                ("AdoptionRefused", MetricUnit.Count, len(self.report.refused)),
                ("PodOwnedByController", MetricUnit.Count, len(self.report.owned_by_controller)),
            ],
        )
        if figures != self.pool.figures:
            try:
                self.store.record_figures(self.pool.name, figures, self.now, new_event_id())
            except StoreConflict as exc:  # the pool went meanwhile
                self.report.errors.append(f"figures: {exc}")


def _metric_name(field_name: str) -> str:
    """slots_running -> SlotsRunning."""
    return "".join(part.capitalize() for part in field_name.split("_"))
