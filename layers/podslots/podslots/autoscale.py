"""Autoscale: size each pool by its scaling rule and waiting demand, and never delete a busy pod.

Scale-up writes the pod item (`starting`) first, then creates the Kubernetes pod, so a pod never
exists that the table does not know. Scale-down is the drain protocol: a conditional `ready ->
draining` on `busy = 0` (allocation needs `ready`, so the two cannot both win), then the delete
with a uid precondition, then the item. When too few pods are idle, the rest of the step is
recorded as blocked, never forced. One run per pool at a time, through the pool's lease.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from podslots import prewarm, rollout, step_plan
from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.cluster import POOL_LABEL, Cluster, ClusterError, ClusterPod
from podslots.errors import PodSlotsError
from podslots.ids import new_event_id, new_token
from podslots.model import CREATE_GRACE_S, POOL_DELETED, Cordon, Pod, PodState
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.podspec import new_pod_name, pod_manifest
from podslots.pool_guard import namespace_refused
from podslots.pool_order import each_pool
from podslots.scaling import Direction, Load, decide
from podslots.scrub import exception_facts
from podslots.settings import PoolMode, template_revision
from podslots.store import Lease, RegisteredPool, Rollout, SlotStore, StoreConflict, new_pod

DEMAND_WINDOW_S = 300  # a waiting task counts while it asked within the last 5 minutes
LEASE_TTL_S = 120
CREATE_CONCURRENCY = 8  # pod creates of one step in flight at once (the API server's and the quota's sake)
SCALE_DOWN_STATES = (PodState.READY, PodState.UNHEALTHY)  # a starting pod is left to start
EVERY_STATE = (*SCALE_DOWN_STATES, PodState.STARTING)  # a cordoned pod goes whatever its state


@dataclass
class ScaleReport:
    pool: str
    direction: str = Direction.NONE.value
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


def load_of(pods: list[Pod], waiting: int) -> Load:
    """Capacity is what the pods in service offer: ready or starting, and not cordoned. An adopted pod
    whose agent has not beaten for the pool yet counts as busy, never as idle capacity."""
    capacity_pods = [p for p in pods if p.in_service]
    return Load(
        pods=len(capacity_pods),
        capacity=sum(p.slot_count for p in capacity_pods),
        used=sum(p.counted_busy for p in capacity_pods),
        waiting=waiting,
    )


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
        try:
            step = _PoolStep(self, pool, self.cluster_for(pool), now, report)
            pods = self.store.pods(pool.name)
            if pool.deleting:
                if step.drain_pool(pods) and self.store.remove_pool(pool.name):
                    logger.info("pool deleted", extra={"pool": pool.name})
                return report
            load = self._learn(pool, load_of(pods, self._demand(pool.name, now)), pods, now)
            decision = decide(load, pool.settings, low_since, now)
            low_since = decision.low_since
            report.before, report.after, report.reason = load.pods, load.pods, decision.reason
            settings, revision = pool.settings, template_revision(pool.settings)
            if settings.mode.acts:
                rolling = self._track_rollout(pool, pods, revision, rolling, size=load.pods, now=now)
            steady = rolling.size if rolling is not None else load.pods
            steady = max(settings.min_pods, min(settings.max_pods, steady))
            plan = step_plan.plan(pods, decision, revision, settings.max_surge, steady)
            step.rank(plan)
            if settings.mode.acts:
                step.carry_out(plan, pods)
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
            starting = _starting_after(pods, report) if pods is not None else None
            self.store.release_lease(lease, low_since, rolling, noted, starting)
        if report.direction != Direction.NONE.value:
            self._announce(pool, report, now, recorded=_blocked_note(report) is None or noted != lease.noted)
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
        """Would this run write or act? Decided from reads alone, before any lease is taken.

        The same decision as the step's, from the same reads (the pods, the demand, the lease's
        `low_since`, roll-out and note): quiet when the rule wants no step (a step down that busy
        pods block is not quiet: it is counted every run), the plan does nothing (no create, drain,
        cordon or re-rank), no waiting task has gone stale, and nothing the lease keeps would change
        (`low_since`, the roll-out, an observed pool's note, the starting pods allocation's 503
        reads). A run that is not quiet takes the lease and does it all again under it, as before, so
        one run per pool at a time still holds for everything that writes or acts; a quiet run
        changes nothing, so it needs no lease (the report is filled as the step would fill it).
        """
        pods, waiting = self.store.pods(pool.name), self.store.waiting(pool.name)
        if any(now - task.updated_at > DEMAND_WINDOW_S for task in waiting):
            return False  # the step would drop it from the demand: a write
        low_since, rolling = (seen.low_since, seen.rollout) if seen is not None else (None, None)
        settings, revision = pool.settings, template_revision(pool.settings)
        load, fold_due = self._foreseen(pool, load_of(pods, len(waiting)), now)
        decision = decide(load, settings, low_since, now)
        # A step the rule wants is the step's to take, or to count and note as blocked (the
        # ScaleDownBlocked metric every run, the history once per change): never quiet.
        wants_a_step = decision.direction is not Direction.NONE
        starting_changes = _starting_after(pods, report) != (seen.starting if seen else 0)
        if wants_a_step or fold_due or decision.low_since != low_since or starting_changes:
            return False
        if settings.mode.acts and _rollout_moves(pods, revision, rolling):
            return False
        steady = max(settings.min_pods, min(settings.max_pods, rolling.size if rolling is not None else load.pods))
        plan = step_plan.plan(pods, decision, revision, settings.max_surge, steady)
        if plan.rank or not plan.idle:
            return False
        if not settings.mode.acts:
            if seen is not None and seen.noted is not None:
                return False  # the step would clear the note it recorded
            report.mode = settings.mode.value
        report.before, report.after, report.reason = load.pods, load.pods, decision.reason
        return True

    def _foreseen(self, pool: RegisteredPool, load: Load, now: int) -> tuple[Load, bool]:
        """Prewarm (reads only): the load with the idle slots the pool's history expects the next 15
        minutes to need, and whether the hour's fold is due (a write: the run is not quiet). A pool
        that does not pre-warm reads nothing more."""
        if not pool.settings.prewarm:
            return load, False
        arrivals = self.store.arrivals(pool.name)
        return replace(load, prewarm=prewarm.prewarm_slots(arrivals, now)), prewarm.due(arrivals, now)

    def _learn(self, pool: RegisteredPool, load: Load, pods: list[Pod], now: int) -> Load:
        """Prewarm: fold the pods' placement counters into the pool's history on the first run of an
        hour (once an hour, never a quiet minute's write), and count the pre-warm slots it expects."""
        if not pool.settings.prewarm:
            return load
        read = arrivals = self.store.arrivals(pool.name)
        if prewarm.due(read, now):
            arrivals = prewarm.fold(read, {p.name: p.placed for p in pods}, now)
            if not self.store.save_arrivals(pool.name, arrivals, read):
                arrivals = self.store.arrivals(pool.name)  # another run folded first: its fold stands
        return replace(load, prewarm=prewarm.prewarm_slots(arrivals, now))

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
        """RolloutStarted when outdated pods first show up (or the template changed again mid-way),
        RolloutFinished on the first run that finds none left. The lease item remembers the roll-out
        and the size in service it started from."""
        outdated = rollout.outdated_pods(pods, revision)
        if outdated and (rolling is None or rolling.revision != revision):
            detail: dict[str, Any] = {
                "pool": pool.name,
                "revision": revision,
                "from": sorted({p.revision or "" for p in outdated}),
                "outdated": len(outdated),
                "max_surge": pool.settings.max_surge,
            }
            if rolling is not None:
                detail["supersedes"] = rolling.revision
            self._record(pool.name, "RolloutStarted", detail, now)
            return Rollout(revision, now, rolling.size if rolling is not None else size)
        if not outdated and rolling is not None:
            detail = {
                "pool": pool.name,
                "revision": rolling.revision,
                "started_at": rolling.started_at,
                "took_s": now - rolling.started_at,
            }
            self._record(pool.name, "RolloutFinished", detail, now)
            return None
        return rolling

    def _record(self, pool: str, kind: str, detail: dict[str, Any], now: int) -> None:
        """History first (the record of fact), then the bus and a metric, best effort."""
        self.store.add_event(pool, kind, detail, now, new_event_id())
        try:
            self.bus.publish(kind, detail)
        except Exception as exc:
            logger.error(f"{kind} not published", extra={**detail, **exception_facts(exc)})
        pool_metrics(pool, [(kind, MetricUnit.Count, 1)])
        logger.info(kind, extra=detail)

    def _announce(self, pool: RegisteredPool, report: ScaleReport, now: int, recorded: bool = True) -> None:
        """The metrics every run; the history and the bus only when the step did something, or when a
        blocked step down differs from the one the last run recorded (`recorded`): a pool whose
        busy pods block its step down for hours records it once, not every minute."""
        detail = {
            "pool": pool.name,
            "direction": report.direction,
            "before": report.before,
            "after": report.after,
            "reason": report.reason,
            "blocked": report.blocked,
        }
        if recorded:
            self.store.add_event(pool.name, "PoolScaled", detail, now, new_event_id())
            try:
                self.bus.publish("PoolScaled", detail)
            except Exception as exc:
                logger.error("PoolScaled not published", extra={**detail, **exception_facts(exc)})
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
        if recorded:
            logger.info("pool scaled", extra=detail)


def _blocked_note(report: ScaleReport) -> str | None:
    """An active pool's step that only met busy pods, as the lease remembers it (None: the step did
    something, or wanted nothing). It changes with the pool's size or the step's target, not with
    the reason's figures, which move every minute."""
    if report.direction != Direction.DOWN.value or report.removed or report.created or report.retired:
        return None
    return f"blocked: down from {report.before} by {report.blocked}"


@dataclass
class _PoolStep:
    """One pool's scaling step: create pods, or drain idle ones."""

    autoscaler: Autoscaler
    pool: RegisteredPool
    cluster: Cluster
    now: int
    report: ScaleReport
    _unexpected: BaseException | None = None  # a create that failed other than as a ClusterError

    @property
    def store(self) -> SlotStore:
        return self.autoscaler.store

    @property
    def deletes_in_cluster(self) -> bool:
        """Only an observed pool never deletes (its pods may be a Deployment's); a paused pool that is
        being deleted does, since a DELETE is the operator's own explicit act."""
        return self.pool.settings.mode is not PoolMode.OBSERVE

    def rank(self, plan: step_plan.StepPlan) -> None:
        """Outdated open pods become a second choice for allocation (current ones a first): in every
        mode, since it creates or deletes nothing and only orders where new tasks go."""
        for pod, second_choice in plan.rank:
            self.store.rank(pod, second_choice)

    def carry_out(self, plan: step_plan.StepPlan, pods: list[Pod]) -> None:
        """Cordon what the roll-out retires, drain what is idle, then create what is still missing.

        In a roll-out the count to create is worked out again after the drains, from what is
        really left, so a drain that lost to an allocation never lets the pool pass its surge.
        """
        for pod in plan.retire:
            retired, _ = self.store.cordon(self.pool.name, pod.name, Cordon.OUTDATED)
            if retired is not None:  # cordoned now, or already for another reason: closed either way
                self.report.retired.append(pod.name)
        self._drain_planned(plan)
        create = plan.create
        if plan.rolling:  # counted again from what is really left (the retired pods are outdated)
            left = [p for p in pods if p.name not in self.report.removed]
            create = rollout.to_create(left, plan.revision, plan.target, self.pool.settings.max_surge)
        if create:
            self.scale_up(create, plan.revision)
        self._tally(plan, pods)

    def _drain_planned(self, plan: step_plan.StepPlan) -> None:
        """Every planned drain; a plain step down takes the next idle pod for one that lost its race,
        and what it still lacks is recorded as blocked."""
        plain_removed = 0
        for pod in plan.drain:
            closed = pod.cordoned is not None or pod.name in self.report.retired
            if self.drain(pod, EVERY_STATE if closed else SCALE_DOWN_STATES):
                self.report.removed.append(pod.name)
                plain_removed += not closed
        if not plan.scale_down:
            return
        for pod in plan.spare:
            if plain_removed >= plan.scale_down:
                break
            if self.drain(pod):
                self.report.removed.append(pod.name)
                plain_removed += 1
        self.report.blocked = max(0, plan.scale_down - plain_removed)
        if self.report.blocked:
            logger.info("scale-down blocked: too few idle pods", extra={"pool": self.pool.name})

    def _tally(self, plan: step_plan.StepPlan, pods: list[Pod]) -> None:
        """The report's direction, size after the step, and (in a roll-out) how many old pods are left."""
        if self.report.created:
            self.report.direction = Direction.UP.value
        elif self.report.removed or self.report.blocked:
            self.report.direction = Direction.DOWN.value
        gone = {*self.report.removed, *self.report.retired}
        in_service = sum(1 for p in pods if p.in_service and p.name not in gone)
        self.report.after = in_service + len(self.report.created)
        if plan.rolling:
            old = sum(1 for p in rollout.outdated_pods(pods, plan.revision) if p.name not in self.report.removed)
            self.report.reason = f"roll-out to {plan.revision}, {old} old pod(s) left; {self.report.reason}"

    def record_would(self, plan: step_plan.StepPlan, noted: str | None) -> str | None:
        """Observe or paused: record what the step would do, once per change, and count it."""
        mode = self.pool.settings.mode.value
        self.report.mode = mode
        if plan.idle:
            return None
        note = plan.note()
        self.report.would = note
        would_remove = len(plan.drain) + max(0, plan.scale_down - len([p for p in plan.drain if p.cordoned is None]))
        pool_metrics(
            self.pool.name,
            [("WouldScaleUp", MetricUnit.Count, plan.create), ("WouldScaleDown", MetricUnit.Count, would_remove)],
        )
        if note != noted:
            detail = {
                "pool": self.pool.name,
                "mode": mode,
                "direction": plan.decision.direction.value,
                "target": plan.decision.target,
                "reason": plan.decision.reason,
                "create": plan.create,
                "delete": [p.name for p in plan.drain],
                "cordon": [p.name for p in plan.retire],
            }
            self.store.add_event(self.pool.name, "WouldScale", detail, self.now, new_event_id())
            logger.info("would scale", extra=detail)
        return note

    def scale_up(self, count: int, revision: str) -> None:
        """Create `count` pods, up to `CREATE_CONCURRENCY` at a time, each recorded before it is created.

        Every item is put (and every result recorded) on this thread, one after another: only the
        Kubernetes creates, the slow part, run side by side. A new create is sent only after its
        item is in the table, so the table still knows every pod first (invariant 12). A failed
        create ends the step as before: its item is removed and `PodCreateFailed` recorded, no new
        create is sent, and the creates already sent are waited for and recorded. A put the table
        refuses (the pool is being deleted, or moved namespace) ends the step the same way, after
        the creates in flight are recorded.
        """
        with ThreadPoolExecutor(max_workers=min(count, CREATE_CONCURRENCY), thread_name_prefix="create") as workers:
            flying: dict[Future[ClusterPod], Pod] = {}
            left, stop = count, False
            refused: StoreConflict | None = None
            while flying or (left and not stop):
                while left and not stop and len(flying) < CREATE_CONCURRENCY:
                    left -= 1
                    try:
                        item = self._record_new_pod(revision)
                    except StoreConflict as exc:
                        refused, stop = exc, True
                        break
                    if item is not None:
                        manifest = pod_manifest(
                            self.pool.name, item.name, self.pool.settings, self.autoscaler.api_base_url
                        )
                        flying[workers.submit(self.cluster.create_pod, self.pool.settings.namespace, manifest)] = item
                if not flying:
                    continue
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: flying[f].name):
                    stop |= not self._settle(flying.pop(future), future)
        if refused is not None:
            raise refused
        if self._unexpected is not None:
            raise self._unexpected

    def _record_new_pod(self, revision: str) -> Pod | None:
        """The item first, so the table always knows every pod; only while the pool is not being
        deleted and still in the namespace read (a StoreConflict ends the step), so neither a DELETE
        nor a namespace change can miss this pod. None when the name was taken."""
        settings = self.pool.settings
        name = new_pod_name(self.pool.name)
        item = new_pod(self.pool.name, name, settings.slots_per_pod, self.now, revision=revision)
        return item if self.store.put_pod(item, namespace=settings.namespace) else None

    def _settle(self, item: Pod, future: Future[ClusterPod]) -> bool:
        """Record one create's result; False when it failed (the step sends no new create)."""
        failure = future.exception()
        if failure is None:
            created = future.result()
            self.store.observe_pod(item, created.uid, created.pod_ip)
            self.report.created.append(item.name)
            return True
        if not isinstance(failure, ClusterError):
            self._unexpected = self._unexpected or failure  # raised once the creates in flight are recorded
            return False
        self.store.remove_idle_pod(item)
        self.report.errors.append(failure.message)
        detail = {"pod": item.name, "error": failure.message}
        self.store.add_event(self.pool.name, "PodCreateFailed", detail, self.now, item.name)
        logger.error("pod create failed; item removed", extra={"pool": self.pool.name, "pod": item.name})
        return False

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
        if not self.deletes_in_cluster:
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
            if stray.name not in known and not stray.deleting and stray.controller is None and self.deletes_in_cluster:
                self.cluster.delete_pod(self.pool.settings.namespace, stray.name, stray.uid)  # holds no task
        self.report.after = self.report.blocked = len(left)
        if self.report.removed:
            self.report.direction = Direction.DOWN.value
        if left or (self.deletes_in_cluster and self._own_pods()):
            return False
        self.cluster.delete_disruption_budget(self.pool.settings.namespace, self.pool.name)  # 404 counts as done
        return True

    def _own_pods(self) -> dict[str, ClusterPod]:
        """The pods podslots made for this pool, by its label: never another pool's, nor a pod an
        adopt selector matched (that one goes only through its item, if it has one), so the
        selector's own LIST is not sent."""
        listed = self.cluster.list_pool_pods(self.pool.settings.namespace, self.pool.name)
        return {p.name: p for p in listed if p.managed and p.labels.get(POOL_LABEL) == self.pool.name}


def _rollout_moves(pods: list[Pod], revision: str, rolling: Rollout | None) -> bool:
    """Would `_track_rollout` start, supersede or finish a roll-out (and write it)?"""
    outdated = rollout.outdated_pods(pods, revision)
    if outdated:
        return rolling is None or rolling.revision != revision
    return rolling is not None


def _starting_after(pods: list[Pod], report: ScaleReport) -> int:
    """The pool's starting pods once the step is done: those read, less the removed, plus the created."""
    removed = set(report.removed)
    return sum(1 for p in pods if p.state is PodState.STARTING and p.name not in removed) + len(report.created)
