"""What one autoscale run means to do to a pool, decided before anything is done (pure).

The same plan is carried out in `active` mode and only recorded in `observe` and `paused` mode, so
what a team watches in observe mode is exactly what the active pool would do.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from podslots import rollout
from podslots.model import Pod, PodState
from podslots.scaling import Decision, Direction, Load, bounded, decide
from podslots.settings import PoolSettings, template_revision


class RollingState(Protocol):
    """What the plan reads of a roll-out in progress (the lease's `Rollout`)."""

    @property
    def revision(self) -> str: ...
    @property
    def started_at(self) -> int: ...
    @property
    def size(self) -> int: ...


class LeaseState(Protocol):
    """What a quiet run reads of the pool's lease (`store.Lease`)."""

    @property
    def low_since(self) -> int | None: ...
    @property
    def rollout(self) -> RollingState | None: ...
    @property
    def noted(self) -> str | None: ...
    @property
    def starting(self) -> int: ...


@dataclass(frozen=True)
class StepPlan:
    """The whole step, decided from one read of the pool's pods (Karpenter's disruption command).

    The executor (`autoscale`) carries it out and reports; it decides nothing of its own. Each
    action is a conditional write, and a condition that fails (an allocation took the pod first, a
    cordon met a pod already gone) drops that action as stale: nothing is planned again from a new
    read. What follows from the actions' results is decided here too, as pure functions of them:
    the drains that still hold (`closed_drains`), the creates after the drains (`creates_after`),
    what is blocked (`blocked_after`), and how the step is told (`outcome`, `would`).
    """

    decision: Decision
    revision: str
    rolling: bool  # outdated pods exist: the step is a roll-out step
    rank: list[tuple[Pod, bool]] = field(default_factory=list)  # open pods to move (second choice?)
    retire: list[Pod] = field(default_factory=list)  # outdated pods to cordon now
    closed: list[Pod] = field(default_factory=list)  # idle pods closed to tasks (cordoned, or retired now)
    plain: list[Pod] = field(default_factory=list)  # idle pods in service a step down drains
    create: int = 0  # pods to create, if every drain above succeeds
    scale_down: int = 0  # pods a plain step down wants gone (some may be blocked: busy)
    spare: list[Pod] = field(default_factory=list)  # the next idle pods, for a plain drain that lost its race
    target: int = 0  # a roll-out's size in service
    max_surge: int = 0
    pods: list[Pod] = field(default_factory=list, repr=False)  # the read the plan was made from

    @property
    def drain(self) -> list[Pod]:
        """Every pod the step drains now, closed ones first."""
        return self.closed + self.plain

    @property
    def idle(self) -> bool:
        return not (self.retire or self.drain or self.create)

    def note(self) -> str:
        """What the step does, in one line: an observed pool records a step when this line changes
        (not the reason, whose figures move every minute)."""
        parts = [f"{self.decision.direction.value} to {self.decision.target}"]
        if self.create:
            parts.append(f"create {self.create}")
        if self.drain:
            parts.append("delete " + ", ".join(p.name for p in self.drain))
        if self.retire:
            parts.append("cordon " + ", ".join(p.name for p in self.retire))
        return "; ".join(parts)

    def closed_drains(self, retired: Collection[str]) -> list[Pod]:
        """The closed drains that still hold: a pod already cordoned, or one the step retired. An
        outdated pod whose cordon did not take (it went meanwhile) is stale: its drain is dropped."""
        to_retire = {p.name for p in self.retire}
        return [p for p in self.closed if p.name not in to_retire or p.name in retired]

    def creates_after(self, removed: Collection[str]) -> int:
        """Pods to create once the drains are done. A roll-out counts them from what is really left
        (the read less the pods removed), so a drain that lost to an allocation never lets the pool
        pass its surge; a plain step up creates what it planned."""
        if not self.rolling:
            return self.create
        left = [p for p in self.pods if p.name not in set(removed)]
        return rollout.to_create(left, self.revision, self.target, self.max_surge)

    def blocked_after(self, plain_removed: int) -> int:
        """What a plain step down still lacks once its drains and spares are done: busy pods."""
        return max(0, self.scale_down - plain_removed)

    def outcome(self, done: Done) -> Outcome:
        """How the step is reported and told, from what was done.

        The size in service after the step is the read's, less the pods removed or retired, plus
        those created. Only a step that changed that size is a `PoolScaled`; a step that changed pods
        but not the size is a `PoolRolled` (a roll-out's) or `PodsDrained` (cordoned pods only); a
        step down that met only busy pods is a `ScaleBlocked`.
        """
        before = sum(1 for p in self.pods if p.in_service)
        gone = {*done.removed, *done.retired}
        after = sum(1 for p in self.pods if p.in_service and p.name not in gone) + len(done.created)
        direction = Direction.NONE
        if done.created:
            direction = Direction.UP
        elif done.removed or done.blocked:
            direction = Direction.DOWN
        reason = self.decision.reason
        if self.rolling:
            old = sum(1 for p in rollout.outdated_pods(self.pods, self.revision) if p.name not in done.removed)
            reason = f"roll-out to {self.revision}, {old} old pod(s) left; {reason}"
        changed = bool(done.created or done.removed or done.retired)
        if after != before and changed:
            kind: str | None = "PoolScaled"
        elif changed:
            kind = "PoolRolled" if self.rolling else "PodsDrained"
        else:
            kind = "ScaleBlocked" if done.blocked else None
        return Outcome(kind, direction, before, after, reason, self._replaced(done.retired), done)

    def _replaced(self, retired: Collection[str]) -> list[dict[str, str]]:
        """Which pod replaced which: each outdated pod retired now, with one of the current pods in
        service whose readiness let it go (the roll-out retires one outdated pod per current ready
        pod beyond the target), the newest first."""
        if not retired:
            return []
        newest = sorted(
            (p for p in rollout.live(self.pods) if not p.outdated(self.revision) and p.in_service),
            key=lambda p: (-p.created_at, p.name),
        )
        old = [p.name for p in self.retire if p.name in set(retired)]
        return [{"pod": o, "by": n.name} for o, n in zip(old, newest, strict=False)]

    def would(self, mode: str, pool: str) -> Would | None:
        """What an observed or paused pool records instead of acting (None: the step does nothing)."""
        if self.idle:
            return None
        detail: dict[str, Any] = {
            "pool": pool,
            "mode": mode,
            "direction": self.decision.direction.value,
            "target": self.decision.target,
            "reason": self.decision.reason,
            "create": self.create,
            "delete": [p.name for p in self.drain],
            "cordon": [p.name for p in self.retire],
        }
        remove = len(self.drain) + max(0, self.scale_down - len(self.plain))
        return Would(self.note(), self.create, remove, detail)


@dataclass(frozen=True)
class Done:
    """What the executor achieved: the pods created, removed and retired, and the pods blocked."""

    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    blocked: int = 0


@dataclass(frozen=True)
class Outcome:
    kind: str | None  # the history's and the bus's name for the step (None: nothing to tell)
    direction: Direction
    before: int
    after: int
    reason: str
    replaced: list[dict[str, str]] = field(default_factory=list)
    done: Done = field(default_factory=Done)

    def detail(self, pool: str) -> dict[str, Any]:
        """The event: the counts it always had, and the pods it names (added by issue 18)."""
        detail: dict[str, Any] = {
            "pool": pool,
            "direction": self.direction.value,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "blocked": self.done.blocked,
        }
        named = {"pods_created": self.done.created, "pods_drained": self.done.removed}
        detail.update({k: list(v) for k, v in {**named, "pods_cordoned": self.done.retired}.items() if v})
        if self.replaced:
            detail["replaced"] = self.replaced
        return detail

    def counts(self) -> list[tuple[str, int]]:
        """The step's metrics, every run the step moved or was blocked (none for a step that only cordoned)."""
        if self.direction is Direction.UP:
            return [("ScaleUp", len(self.done.created))]
        if self.direction is Direction.DOWN:
            return [("ScaleDown", len(self.done.removed)), ("ScaleDownBlocked", self.done.blocked)]
        return []


@dataclass(frozen=True)
class Would:
    note: str  # the lease remembers it: the history records a step when this line changes
    scale_up: int  # the WouldScaleUp metric
    scale_down: int  # the WouldScaleDown metric: the planned drains and the blocked rest
    detail: dict[str, Any]


def removal_order(pods: list[Pod]) -> list[Pod]:
    """Idle pods only: unhealthy first, then the least recently used ready ones. Starting pods start."""
    idle = [p for p in pods if p.counted_busy == 0]
    unhealthy = [p for p in idle if p.state is PodState.UNHEALTHY]
    ready = sorted((p for p in idle if p.state is PodState.READY), key=lambda p: (p.last_used_at, p.name))
    return unhealthy + ready


def for_pool(
    pods: list[Pod], decision: Decision, settings: PoolSettings, revision: str, rolling_size: int | None
) -> StepPlan:
    """The plan for a pool's settings: a roll-out keeps the size in service it began from (within
    `min_pods` and `max_pods`), any other step the size in service now."""
    size = rolling_size if rolling_size is not None else sum(1 for p in pods if p.in_service)
    steady = bounded(settings, size)
    return plan(pods, decision, revision, settings.max_surge, steady)


def plan(pods: list[Pod], decision: Decision, revision: str, max_surge: int, steady_size: int) -> StepPlan:
    """The step for a pool that is not being deleted.

    - Every cordoned pod (an operator's, or an outdated one) is drained once idle.
    - A roll-out (outdated pods exist) replaces outdated pods within the surge. Its target is the
      decision's when the load asks for a step, else `steady_size` (the size in service when the
      roll-out began): the surge pods in service must not become the new steady size. A plain step
      down waits for the roll-out's end.
    - Otherwise the decision's step: create pods, or drain idle pods in service.
    """
    live = rollout.live(pods)
    cordoned_idle = [p for p in live if p.cordoned is not None and p.counted_busy == 0]
    rank = rollout.misranked(live, revision)
    target = decision.target if decision.direction is not Direction.NONE else steady_size
    if rollout.outdated_pods(live, revision):
        retire = rollout.to_retire(live, revision, target)
        retired_names = {p.name for p in retire}
        closed = cordoned_idle + [p for p in retire if p.counted_busy == 0 and p.cordoned is None]
        leaving = {p.name for p in closed}
        after = [p for p in live if p.name not in leaving]
        create = rollout.to_create(after, revision, target, max_surge)
        rank = [(p, second) for p, second in rank if p.name not in retired_names]
        return StepPlan(
            decision, revision, True, rank, retire, closed, [], create, target=target, pods=pods, max_surge=max_surge
        )
    in_service = [p for p in live if p.in_service]
    if decision.direction is Direction.UP:
        create = max(0, target - len(in_service))
        return StepPlan(decision, revision, False, rank, [], cordoned_idle, [], create, pods=pods, max_surge=max_surge)
    if decision.direction is Direction.DOWN:
        wanted = max(0, len(in_service) - target)
        removable = removal_order([p for p in live if p.cordoned is None])
        plain, spare = removable[:wanted], removable[wanted:]
        return StepPlan(
            decision, revision, False, rank, [], cordoned_idle, plain, 0, wanted, spare, pods=pods, max_surge=max_surge
        )
    return StepPlan(decision, revision, False, rank, [], cordoned_idle, pods=pods, max_surge=max_surge)


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


def rollout_moves(pods: list[Pod], revision: str, rolling: RollingState | None) -> bool:
    """Would the step start, supersede or finish a roll-out (and write it)?"""
    outdated = rollout.outdated_pods(pods, revision)
    if outdated:
        return rolling is None or rolling.revision != revision
    return rolling is not None


def starting_after(pods: list[Pod], removed: Collection[str], created: Collection[str]) -> int:
    """The pool's starting pods once the step is done: those read, less the removed, plus the created."""
    gone = set(removed)
    return sum(1 for p in pods if p.state is PodState.STARTING and p.name not in gone) + len(created)


def blocked_note(direction: Direction, before: int, blocked: int, *, changed: bool) -> str | None:
    """An active pool's step that only met busy pods, as the lease remembers it (None: the step did
    something, or wanted nothing). It changes with the pool's size or the step's target, not with
    the reason's figures, which move every minute."""
    if direction is not Direction.DOWN or changed:
        return None
    return f"blocked: down from {before} by {blocked}"


def rollout_event(
    pool: str, pods: list[Pod], revision: str, rolling: RollingState | None, *, max_surge: int, now: int
) -> tuple[str, dict[str, Any]] | None:
    """`RolloutStarted` when outdated pods first show up (or the template changed again mid-way),
    `RolloutFinished` on the first run that finds none left; None: the roll-out state holds."""
    outdated = rollout.outdated_pods(pods, revision)
    if outdated and (rolling is None or rolling.revision != revision):
        detail: dict[str, Any] = {
            "pool": pool,
            "revision": revision,
            "from": sorted({p.revision or "" for p in outdated}),
            "outdated": len(outdated),
            "max_surge": max_surge,
        }
        if rolling is not None:
            detail["supersedes"] = rolling.revision
        return "RolloutStarted", detail
    if not outdated and rolling is not None:
        took = now - rolling.started_at
        return "RolloutFinished", {
            "pool": pool,
            "revision": rolling.revision,
            "started_at": rolling.started_at,
            "took_s": took,
        }
    return None


def quiet(
    pods: list[Pod],
    waiting_since: list[int],
    settings: PoolSettings,
    seen: LeaseState | None,
    *,
    now: int,
    window_s: int,
    prewarm: int = 0,
) -> tuple[Load, Decision] | None:
    """Would a run write or act? Decided from reads alone, before any lease is taken.

    The same decision as the step's, from the same reads (the pods, the demand, the lease's
    `low_since`, roll-out and note): quiet (the load and decision, for the report) when the rule
    wants no step (a step down that busy pods block is not quiet: it is counted every run), the
    plan does nothing (no create, drain, cordon or re-rank), no waiting task has gone stale (older
    than `window_s`), and nothing the lease keeps would change (`low_since`, the roll-out, an
    observed pool's note, the starting pods allocation's 503 reads). None: not quiet. `prewarm`: the
    idle slots the pool's history expects the next 15 minutes to need (`prewarm.prewarm_slots`).
    """
    if any(now - since > window_s for since in waiting_since):
        return None  # the step would drop it from the demand: a write
    low_since, rolling = (seen.low_since, seen.rollout) if seen is not None else (None, None)
    revision = template_revision(settings)
    load = replace(load_of(pods, len(waiting_since)), prewarm=prewarm)
    decision = decide(load, settings, low_since, now)
    wants_a_step = decision.direction is not Direction.NONE
    starting_changes = starting_after(pods, [], []) != (seen.starting if seen else 0)
    if wants_a_step or decision.low_since != low_since or starting_changes:
        return None
    if settings.mode.may_scale and rollout_moves(pods, revision, rolling):
        return None
    step = for_pool(pods, decision, settings, revision, rolling.size if rolling else None)
    if step.rank or not step.idle:
        return None
    if settings.mode.records_would and seen is not None and seen.noted is not None:
        return None  # the step would clear the note it recorded
    return load, decision
