"""What one autoscale run means to do to a pool, decided before anything is done (pure).

The same plan is carried out in `active` mode and only recorded in `observe` and `paused` mode, so
what a team watches in observe mode is exactly what the active pool would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podslots import rollout
from podslots.model import Pod, PodState
from podslots.scaling import Decision, Direction


@dataclass(frozen=True)
class StepPlan:
    decision: Decision
    revision: str
    rolling: bool  # outdated pods exist: the step is a roll-out step
    rank: list[tuple[Pod, bool]] = field(default_factory=list)  # open pods to move (second choice?)
    retire: list[Pod] = field(default_factory=list)  # outdated pods to cordon now
    drain: list[Pod] = field(default_factory=list)  # idle pods to drain and delete now
    create: int = 0  # pods to create, if every drain above succeeds
    scale_down: int = 0  # pods a plain step down wants gone (some may be blocked: busy)
    spare: list[Pod] = field(default_factory=list)  # the next idle pods, for a drain that lost its race
    target: int = 0  # a roll-out's size in service

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


def removal_order(pods: list[Pod]) -> list[Pod]:
    """Idle pods only: unhealthy first, then the least recently used ready ones. Starting pods start."""
    idle = [p for p in pods if p.counted_busy == 0]
    unhealthy = [p for p in idle if p.state is PodState.UNHEALTHY]
    ready = sorted((p for p in idle if p.state is PodState.READY), key=lambda p: (p.last_used_at, p.name))
    return unhealthy + ready


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
        drain = cordoned_idle + [p for p in retire if p.counted_busy == 0 and p.cordoned is None]
        leaving = {p.name for p in drain}
        after = [p for p in live if p.name not in leaving]
        create = rollout.to_create(after, revision, target, max_surge)
        rank = [(p, second) for p, second in rank if p.name not in retired_names]
        return StepPlan(decision, revision, True, rank, retire, drain, create, target=target)
    in_service = [p for p in live if p.in_service]
    if decision.direction is Direction.UP:
        create = max(0, target - len(in_service))
        return StepPlan(decision, revision, False, rank, [], cordoned_idle, create)
    if decision.direction is Direction.DOWN:
        wanted = max(0, len(in_service) - target)
        removable = removal_order([p for p in live if p.cordoned is None])
        drain = cordoned_idle + removable[:wanted]
        return StepPlan(decision, revision, False, rank, [], drain, 0, wanted, spare=removable[wanted:])
    return StepPlan(decision, revision, False, rank, [], cordoned_idle)
