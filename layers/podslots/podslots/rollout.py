"""Roll-outs (docs/architecture.md, "Roll-out"), as pure rules over a pool's pods.

A pod carries the revision of the template it was made from. After a template change, the pool
rolls without killing a task:

- outdated pods become a second choice: allocation gives them a task only when no current pod has
  an idle slot;
- autoscale creates current pods, never more than `max_surge` above the pool's target size;
- for each current pod that is ready, one outdated pod is retired (cordoned: it takes no new task),
  the least busy first, so the pool never has less capacity in service than its target; an
  outdated pod already cordoned for another reason is marked retired at once;
- a retired pod is drained and deleted by the scale-down protocol once it is idle. A reserved slot
  keeps its pod until the apply has run or the reservation has expired.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from podslots.model import Cordon, Pod, PodState, SlotStatus, cordon_order


def live(pods: list[Pod]) -> list[Pod]:
    """The pods that still count: every pod but those already draining."""
    return [p for p in pods if p.state is not PodState.DRAINING]


def outdated_pods(pods: list[Pod], revision: str) -> list[Pod]:
    return [p for p in live(pods) if p.outdated(revision)]


def misranked(pods: list[Pod], revision: str) -> list[tuple[Pod, bool]]:
    """Open pods in the wrong `open_slots` partition, with the rank each should have (second choice?)."""
    return [(p, p.outdated(revision)) for p in pods if p.takes_tasks and p.second_choice != p.outdated(revision)]


def retirement_order(pods: list[Pod]) -> list[Pod]:
    """Those that free up soonest first: unhealthy or starting, then fewest busy, no reservation, least used."""

    def reserved(p: Pod) -> int:
        return sum(1 for s in p.slots.values() if s.status is SlotStatus.RESERVED)

    return sorted(pods, key=lambda p: (p.state is PodState.READY, p.busy, reserved(p), p.last_used_at, p.name))


def to_retire(pods: list[Pod], revision: str, target: int) -> list[Pod]:
    """The outdated pods to mark `outdated revision` now.

    Those already cordoned for another reason (an operator's) serve nothing, so they are marked
    at once: taking the operator's cordon back must not put an outdated pod back in service. Of
    those in service, all but as many as the current ready pods still fall short of the target
    (those keep serving, as a second choice).
    """
    current_ready = [p for p in live(pods) if not p.outdated(revision) and p.in_service and p.state is PodState.READY]
    outdated = outdated_pods(pods, revision)
    closed = [p for p in outdated if p.cordon_reasons and Cordon.OUTDATED not in p.cordon_reasons]
    serving = [p for p in outdated if not p.cordon_reasons]
    keep = max(0, target - len(current_ready))
    return closed + retirement_order(serving)[: max(0, len(serving) - keep)]


def to_create(pods: list[Pod], revision: str, target: int, max_surge: int) -> int:
    """Current pods to create now: up to the target, and never more than `max_surge` pods above it.

    Every live pod counts against the surge, cordoned ones that still hold tasks included: the
    pool's size stays within `target + max_surge` for the whole roll-out.
    """
    alive = live(pods)
    current_in_service = sum(1 for p in alive if not p.outdated(revision) and p.in_service)
    return max(0, min(target - current_in_service, target + max_surge - len(alive)))


@dataclass(frozen=True)
class RolloutView:
    """What GET /pools/{pool} shows of a roll-out: pods per revision, and what holds the old ones."""

    revision: str
    pods_by_revision: dict[str, int]
    holding: list[dict[str, Any]] = field(default_factory=list)
    acting: bool = True  # an active pool not being deleted: the only kind that rolls

    @property
    def rolling(self) -> bool:
        return bool(self.holding) and self.acting

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "rolling": self.rolling,
            "pods_by_revision": self.pods_by_revision,
            "outdated": self.holding,
        }


def view(pods: list[Pod], revision: str, acting: bool = True) -> RolloutView:
    """Pods per revision (a pod from before revisions counts as current, as it is treated), and each
    outdated pod with what holds it. `rolling` only where podslots acts: an observed or paused
    pool lists its outdated pods, but nothing replaces them."""
    alive = live(pods)
    by_revision = Counter(p.revision or revision for p in alive)
    holding = [
        {
            "pod": p.name,
            "revision": p.revision,
            "state": p.state.value,
            "cordoned": p.cordoned,
            "cordon_reasons": cordon_order(p.cordon_reasons),
            "running": sum(1 for s in p.slots.values() if s.status is SlotStatus.RUNNING),
            "reserved": sum(1 for s in p.slots.values() if s.status is SlotStatus.RESERVED),
        }
        for p in sorted(outdated_pods(pods, revision), key=lambda p: p.name)
    ]
    return RolloutView(revision, dict(sorted(by_revision.items())), holding, acting)
