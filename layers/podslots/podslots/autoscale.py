"""Autoscale: size each pool by its scaling rule and waiting demand, and never delete a busy pod.

Scale-up writes the pod item (`starting`) first, then creates the Kubernetes pod, so a pod never
exists that the table does not know. Scale-down is the drain protocol: a conditional `ready ->
draining` on `busy = 0` (allocation needs `ready`, so the two cannot both win), then the delete
with a uid precondition, then the item. When too few pods are idle, the rest of the step is
recorded as blocked, never forced. One run per pool at a time, through the pool's lease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podslots import arrivals, step_plan
from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster_pods import Cluster, ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.events import StepEvents
from podslots.ids import new_token
from podslots.model import CREATE_GRACE_S, POOL_DELETED, Cordon, Pod, PodState
from podslots.names import POOL_LABEL
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.pod_creates import CREATE_CONCURRENCY, PodCreates
from podslots.podspec import new_pod_name
from podslots.pool_guard import namespace_refused
from podslots.pool_order import each_pool
from podslots.ports import AutoscaleStore
from podslots.scaling import Direction, decide
from podslots.settings import template_revision
from podslots.store import Lease, RegisteredPool, Rollout, StoreConflict

__all__ = ["CREATE_CONCURRENCY", "DEMAND_WINDOW_S", "EVERY_STATE", "LEASE_TTL_S", "Autoscaler", "ScaleReport"]

DEMAND_WINDOW_S = 300  # a waiting task counts while it asked within the last 5 minutes
LEASE_TTL_S = 120
SCALE_DOWN_STATES = (PodState.READY, PodState.UNHEALTHY)  # a starting pod is left to start
EVERY_STATE = (*SCALE_DOWN_STATES, PodState.STARTING)  # a cordoned pod goes whatever its state


@dataclass
class ScaleReport:
    pool: str
    direction: Direction = Direction.NONE
    before: int = 0
    after: int = 0
    reason: str = ""
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    blocked: int = 0
    owned_by_controller: list[str] = field(default_factory=list)  # idle pods not drained: a controller's
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    mode: str | None = None  # set when the pool only records what it would do
    would: str | None = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], 0, "")}


class Autoscaler:
    events = StepEvents()  # history, bus, metric and log, through the step's own store and bus

    def __init__(
        self,
        store: AutoscaleStore,
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
        self.holder = new_token()

    def run(
        self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None, *, strict: bool = False
    ) -> list[ScaleReport]:
        return each_pool(
            self.store,
            self.clock,
            "autoscale",
            self.scale_pool,
            lambda pool, problem: ScaleReport(pool.name, errors=[problem]),
            only_pool=only_pool,
            time_left_s=time_left_s,
            strict=strict,
        )

    def scale_pool(self, pool: RegisteredPool) -> ScaleReport:
        report = ScaleReport(pool.name)
        now = int(self.clock.now())
        if self._left_alone(pool, now, report):
            return report
        lease = self.store.acquire_lease(pool.name, self.holder, now, LEASE_TTL_S)
        if lease is None:
            report.skipped = "another run holds the lease"
            return report
        low_since, rolling, noted = lease.low_since, lease.rollout, lease.noted
        pods: list[Pod] | None = None
        outcome: step_plan.Outcome | None = None
        try:
            step = _PoolStep(self, pool, self.cluster_for(pool), now, report)
            pods = self.store.pods(pool.name)
            if pool.deleting:
                if step.drain_pool(pods) and self.store.remove_pool(pool.name):
                    logger.info("pool deleted", extra={"pool": pool.name})
                return report  # not announced: the history goes with the pool (the log and metrics say it)
            load = arrivals.learn(self.store, pool, step_plan.load_of(pods, self._demand(pool.name, now)), pods, now)
            decision = decide(load, pool.settings, low_since, now)
            low_since = decision.low_since
            report.before, report.after, report.reason = load.pods, load.pods, decision.reason
            mode, revision = pool.settings.mode, template_revision(pool.settings)
            if mode.may_scale:
                rolling = self._track_rollout(pool, pods, revision, rolling, size=load.pods, now=now)
            plan = step_plan.for_pool(pods, decision, pool.settings, revision, rolling.size if rolling else None)
            step.rank(plan)
            if mode.may_scale:
                outcome = step.carry_out(plan)
                if plan.scale_down and not plan.rolling and report.removed:
                    low_since = now  # a new delay before the next step down
                noted = _blocked_note(report)
            else:
                noted = step.record_would(plan, noted)
        except PodSlotsError as exc:  # the cluster or the kubeconfig failed part-way
            report.errors.append(exc.message)
            logger.warning("scaling step failed part-way", extra={"pool": pool.name, "error": exc.message})
        except StoreConflict as exc:
            report.errors.append(str(exc))
        finally:
            starting = step_plan.starting_after(pods, report.removed, report.created) if pods is not None else None
            self.store.release_lease(lease, low_since, rolling, noted, starting)
        if outcome is not None and outcome.kind is not None:
            recorded = _blocked_note(report) is None or noted != lease.noted
            self._announce(pool, outcome, now, recorded=recorded)
        return report

    def _left_alone(self, pool: RegisteredPool, now: int, report: ScaleReport) -> bool:
        """A pool this run does not step: its namespace is not allowed, another run holds its
        lease, or it is quiet (nothing to write or do, so no lease is taken and nothing written)."""
        if namespace_refused(self.store, pool, now, "autoscale"):
            report.skipped = "namespace not allowed"
            return True
        if pool.deleting:
            return False
        seen = self.store.read_lease(pool.name)
        if seen is not None and seen.held_by_another(self.holder, now):
            report.skipped = "another run holds the lease"
            return True
        return self._quiet(pool, seen, now, report)

    def _quiet(self, pool: RegisteredPool, seen: Lease | None, now: int, report: ScaleReport) -> bool:
        """Would this run write or act (`step_plan.quiet`)? A run that is not quiet takes the lease and
        does it all again under it, so one run per pool at a time still holds for everything that
        writes or acts; a quiet run changes nothing, so it needs no lease (the report is filled as the
        step would fill it)."""
        waiting = [task.updated_at for task in self.store.waiting(pool.name)]
        foreseen, fold_due = arrivals.foreseen(self.store, pool, now)
        found = step_plan.quiet(
            self.store.pods(pool.name),
            waiting,
            pool.settings,
            seen,
            now=now,
            window_s=DEMAND_WINDOW_S,
            prewarm=foreseen,
        )
        if found is None or fold_due:
            return False
        load, decision = found
        if pool.settings.mode.records_would:
            report.mode = pool.settings.mode.value
        report.before, report.after, report.reason = load.pods, load.pods, decision.reason
        return True

    def _demand(self, pool: str, now: int) -> int:
        """Count the waiting tasks; drop those that stopped asking (they come back if they ask again)."""
        count = 0
        for task in self.store.waiting(pool):
            if now - task.updated_at > DEMAND_WINDOW_S:
                self.store.forget_waiting(task)
            else:
                count += 1
        return count

    def _track_rollout(
        self, pool: RegisteredPool, pods: list[Pod], revision: str, rolling: Rollout | None, *, size: int, now: int
    ) -> Rollout | None:
        """The roll-out's start and end, recorded (`step_plan.rollout_event`). The lease item remembers
        the roll-out and the size in service it started from."""
        event = step_plan.rollout_event(pool.name, pods, revision, rolling, max_surge=pool.settings.max_surge, now=now)
        if event is None:
            return rolling
        kind, detail = event
        self._record(pool.name, kind, detail, now)
        if kind == "RolloutStarted":
            return Rollout(revision, now, rolling.size if rolling is not None else size)
        return None

    def _record(self, pool: str, kind: str, detail: dict[str, Any], now: int) -> None:
        """History first (the record of fact), then the bus and a metric, best effort."""
        self.events.record(pool, kind, detail, now, metrics=[(kind, MetricUnit.Count, 1)])

    def _announce(self, pool: RegisteredPool, outcome: step_plan.Outcome, now: int, *, recorded: bool) -> None:
        """The metrics every run; the history and the bus only when the step did something, or when a
        blocked step down differs from the one the last run recorded (`recorded`): a pool whose
        busy pods block its step down for hours records it once, not every minute. The event names
        the pods: those created, drained and cordoned for a roll-out, and which pod replaced which."""
        pool_metrics(pool.name, [(name, MetricUnit.Count, value) for name, value in outcome.counts()])
        if recorded and outcome.kind is not None:
            self.events.record(pool.name, outcome.kind, outcome.detail(pool.name), now, log="pool scaled")


def _blocked_note(report: ScaleReport) -> str | None:
    changed = bool(report.removed or report.created or report.retired)
    return step_plan.blocked_note(report.direction, report.before, report.blocked, changed=changed)


@dataclass
class _PoolStep:
    """One pool's scaling step: create pods, or drain idle ones."""

    autoscaler: Autoscaler
    pool: RegisteredPool
    cluster: Cluster
    now: int
    report: ScaleReport

    @property
    def store(self) -> AutoscaleStore:
        return self.autoscaler.store

    def rank(self, plan: step_plan.StepPlan) -> None:
        """Outdated open pods become a second choice for allocation (current ones a first): in every
        mode, since it creates or deletes nothing and only orders where new tasks go."""
        if self.pool.settings.mode.may_rank:
            for pod, second_choice in plan.rank:
                self.store.rank(pod, second_choice)

    def carry_out(self, plan: step_plan.StepPlan) -> step_plan.Outcome:
        """Cordon what the roll-out retires, drain what is idle, then create what the plan says the
        drains leave missing; report what was done. Nothing is decided here (see `StepPlan`)."""
        for pod in plan.retire:
            retired, _ = self.store.cordon(self.pool.name, pod.name, Cordon.OUTDATED)
            if retired is not None:  # cordoned now, or already for another reason: closed either way
                self.report.retired.append(pod.name)
        for pod in plan.closed_drains(self.report.retired):
            if self.drain(pod, EVERY_STATE):
                self.report.removed.append(pod.name)
        plain_removed = self._drain_plain(plan)
        if plan.scale_down:
            self.report.blocked = plan.blocked_after(plain_removed)
            if self.report.blocked:
                logger.info("scale-down blocked: too few idle pods", extra={"pool": self.pool.name})
        create = plan.creates_after(self.report.removed)
        if create:
            self.scale_up(create, plan.revision)
        return self._tally(plan)

    def _drain_plain(self, plan: step_plan.StepPlan) -> int:
        """A plain step down's drains, and the plan's spares in order for each that lost its race."""
        removed = 0
        for pod in plan.plain + plan.spare:
            if removed >= plan.scale_down:
                break
            if self.drain(pod):
                self.report.removed.append(pod.name)
                removed += 1
        return removed

    def _tally(self, plan: step_plan.StepPlan) -> step_plan.Outcome:
        report = self.report
        done = step_plan.Done(report.created, report.removed, report.retired, report.blocked)
        outcome = plan.outcome(done)
        report.direction, report.after, report.reason = outcome.direction, outcome.after, outcome.reason
        return outcome

    def record_would(self, plan: step_plan.StepPlan, noted: str | None) -> str | None:
        """Observe or paused: record what the step would do, once per change, and count it."""
        mode = self.pool.settings.mode.value
        self.report.mode = mode
        would = plan.would(mode, self.pool.name)
        if would is None:
            return None
        self.report.would = would.note
        metrics = [
            ("WouldScaleUp", MetricUnit.Count, would.scale_up),
            ("WouldScaleDown", MetricUnit.Count, would.scale_down),
        ]
        events, recorded = self.autoscaler.events, would.note != noted
        events.would(self.pool.name, "WouldScale", would.detail, self.now, metrics=metrics, recorded=recorded)
        return would.note

    def scale_up(self, count: int, revision: str) -> None:
        """Create `count` pods (`pod_creates`); those created are reported even when the step ends."""
        step = self.autoscaler.api_base_url, self.now, self.report.errors
        created = PodCreates(self.store, self.cluster, self.pool, *step, name_for=new_pod_name)
        try:
            created.run(count, revision)
        finally:
            self.report.created.extend(created.created)

    def drain(
        self,
        pod: Pod,
        states: tuple[PodState, ...] = SCALE_DOWN_STATES,
        in_cluster: dict[str, ClusterPod] | None = None,
    ) -> bool:
        """The drain protocol. False when the pod got a task first (the allocation won the race).

        A pod whose uid was never recorded (a crash between its create and the record) is looked
        up in `in_cluster` (the pool's LIST), so its Kubernetes pod is deleted too, not leaked.

        A pod a controller owns, as reconcile last recorded it on the item, is refused here and by
        the store's condition (`start_draining`), which also refuses an adopted pod whose agent has
        not beaten for this pool yet: autoscale needs no LIST of its own to keep either.
        """
        if pod.controller is not None or pod.awaiting_beat:
            return self._forget_if_deleting(pod)
        if pod.state is not PodState.DRAINING and not self.store.start_draining(self.pool.name, pod.name, states):
            return False
        if not self.pool.settings.mode.may_empty_deleted_pool:
            self.store.remove_drained_pod(self.pool.name, pod.name)  # observe: forget it, never delete it
            return True
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

    def _forget_if_deleting(self, pod: Pod) -> bool:
        """A pod podslots may not delete: a deleted pool forgets it (if idle) and leaves it to its
        owner; any other pool keeps it. True when forgotten."""
        if self.pool.deleting and self.store.remove_idle_pod(pod):
            return True
        if pod.controller is not None:
            self._owned_by_controller(pod)
        return False

    def _owned_by_controller(self, pod: Pod) -> None:
        """Counted every time (the alarm), recorded in the history once per pod."""
        pool_metrics(self.pool.name, [("PodOwnedByController", MetricUnit.Count, 1)])
        detail = {"pod": pod.name, "controller": pod.controller, "would_delete": "drain"}
        self.store.notice_once(
            self.pool.name, "PodOwnedByController", pod=pod.name, uid=pod.uid or "", detail=detail, now=self.now
        )
        self.report.owned_by_controller.append(pod.name)
        logger.warning("pod owned by a controller; not drained", extra={"pool": self.pool.name, "pod": pod.name})

    def drain_pool(self, pods: list[Pod]) -> bool:
        """A deleted pool: cordon every pod, drain the idle ones, delete strays; busy ones finish first.

        True when the pool may go: no pod item is left and a LIST made after the deletes shows no
        pod of the pool (terminating ones included). A labelled pod podslots made that has no item
        (a create whose answer was lost) is deleted here; a pod podslots did not make is never
        deleted without an item. An observed pool deletes nothing: it forgets its items and goes.
        """
        self.report.before, self.report.reason = len(pods), "pool deleted"
        in_cluster = self._own_pods()
        for pod in pods:
            if Cordon.POOL_DELETED not in pod.cordons:
                self.store.cordon(self.pool.name, pod.name, POOL_DELETED)  # e.g. put just before the DELETE
            if pod.busy == 0 and self.drain(pod, EVERY_STATE, in_cluster):
                self.report.removed.append(pod.name)
        left = self.store.pods(self.pool.name)
        known = {p.name for p in pods} | {p.name for p in left}
        for stray in in_cluster.values():
            ours = stray.name not in known and not stray.deleting and stray.controller is None
            if ours and self.pool.settings.mode.may_empty_deleted_pool:
                self.cluster.delete_pod(self.pool.settings.namespace, stray.name, stray.uid)  # holds no task
        self.report.after = self.report.blocked = len(left)
        if self.report.removed:
            self.report.direction = Direction.DOWN
        if left or (self.pool.settings.mode.may_empty_deleted_pool and self._own_pods()):
            return False
        self.cluster.delete_disruption_budget(self.pool.settings.namespace, self.pool.name)  # 404 counts as done
        return True

    def _own_pods(self) -> dict[str, ClusterPod]:
        """The pods podslots made for this pool, by its label: never another pool's, nor a pod an
        adopt selector matched (that one goes only through its item, if it has one), so the
        selector's own LIST is not sent."""
        listed = self.cluster.list_pool_pods(self.pool.settings.namespace, self.pool.name)
        return {p.name: p for p in listed if p.managed and p.labels.get(POOL_LABEL) == self.pool.name}
