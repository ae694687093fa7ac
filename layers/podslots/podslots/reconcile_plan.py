"""What reconcile decides about one pod, from the item and the LIST it read (pure).

`reconcile` carries the verdicts out, one conditional write or cluster call each, and asks the
pool's mode (`PoolMode`) whether it may delete or patch; what it may not do it records as "would".
A write whose condition fails (the pod moved since the read) is a stale verdict: it is dropped and
the next run judges again from what it then reads, never re-judged within the run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from podslots.cluster_pods import AgentState, AgentStatus
from podslots.model import CREATE_GRACE_S, Pod, PodState
from podslots.settings import PoolSettings


class Protection(StrEnum):
    """The patch a pod's protection needs: busy pods carry the busy label and do-not-disrupt
    annotations, idle pods neither."""

    PROTECT = "protect"
    UNPROTECT = "unprotect"


class Listed(Protocol):
    """What the verdicts need of a listed pod (a `cluster.ClusterPod` has all of it)."""

    @property
    def uid(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def finished(self) -> bool: ...
    @property
    def deleting(self) -> bool: ...
    @property
    def protected(self) -> bool: ...
    @property
    def unprotected(self) -> bool: ...
    @property
    def busy_label(self) -> str | None: ...
    @property
    def managed(self) -> bool: ...
    @property
    def created_at(self) -> float: ...
    @property
    def agent(self) -> AgentStatus | None: ...


def ended(pod: Listed, settings: PoolSettings, now: int) -> str | None:
    """Why a listed pod will run no task again (it is deleted, its tasks lost), or None.

    The pod's phase alone does not say: a native sidecar (or any other container) keeps a pod
    `Running` after its agent exited, and beats for it with the agent's stale held-task files. So a
    pod podslots made (restartPolicy Never, its agent the container `agent`) has also ended when its
    kubelet reports the agent terminated, or still waiting (an image that cannot be pulled, a
    container that cannot be created) past `startup_timeout_s` since the pod was created. A pod
    whose kubelet says nothing of its agent is judged by its phase only: unknown is not dead. An
    adopted pod's containers are its own business (their names and restart policy are not ours).
    """
    if pod.finished:
        return f"pod {pod.phase.lower()}"
    agent = pod.agent
    if not pod.managed or agent is None:
        return None
    if agent.state is AgentState.TERMINATED:
        return "agent exited" if agent.exit_code is None else f"agent exited ({agent.exit_code})"
    late = pod.created_at > 0 and now - pod.created_at > settings.startup_timeout_s
    if agent.state is AgentState.WAITING and late:
        return "agent never started"
    return None


def gone(item: Pod, pod: Listed | None, settings: PoolSettings, now: int) -> str | None:
    """Why the item's pod is gone for good (its tasks are lost), or None while it lives. A starting
    item may exist briefly before its pod (the item is written first)."""
    if pod is None:
        in_flight = item.state is PodState.STARTING and now - item.created_at < CREATE_GRACE_S
        return None if in_flight else "vanished"
    if item.uid and pod.uid != item.uid:
        return "replaced"
    end = ended(pod, settings, now)
    if end is not None:
        return end
    if pod.deleting:
        return "deleted"
    return None


def never_came_up(item: Pod, settings: PoolSettings, now: int) -> bool:
    """A pod podslots made that is still starting past its startup timeout. An adopted pod was
    running before podslots saw it: it never "fails to come up" (it stays starting, counted busy,
    until its agent beats for this pool)."""
    late = now - item.created_at > settings.startup_timeout_s
    return item.state is PodState.STARTING and late and not item.adopted


def silent(item: Pod, settings: PoolSettings, now: int) -> bool:
    """A ready pod whose agent has not beaten for the heartbeat timeout: it becomes unhealthy."""
    last_beat = item.heartbeat_at if item.heartbeat_at is not None else item.created_at
    return item.state is PodState.READY and now - last_beat > settings.heartbeat_timeout_s


def leaked_slots(item: Pod, settings: PoolSettings, now: int) -> list[str]:
    """Slots whose task the agent, listing its tasks recently, has stopped listing.

    Judged from the last beat that listed them (`held_at`), never from a beat that did not say
    (the agent could not read its task list): such a beat keeps the pod alive and frees nothing.
    A slot taken after that listing, or within the leak grace, is left alone.
    """
    listed = item.held_at
    if listed is None or now - listed > settings.heartbeat_timeout_s:
        return []  # no recent listing: the agent's silence says nothing about its tasks
    return [
        key
        for key, slot in item.slots_in_order()
        if not slot.is_idle
        and slot.task_id not in item.held_tasks
        and slot.since is not None
        and now - slot.since > settings.leak_grace_s
        and listed > slot.since
    ]


def protection(item: Pod, pod: Listed, pool: str) -> Protection | None:
    """The patch the pod needs (None: it already carries what its load asks)."""
    if item.busy > 0:
        return None if pod.protected and pod.busy_label == pool else Protection.PROTECT
    return None if pod.unprotected and pod.busy_label is None else Protection.UNPROTECT


class Orphan(StrEnum):
    """What to do with a listed pod that has no item."""

    IGNORE = "ignore"  # a deleting pool adopts nothing; a pod being deleted is on its way
    DELETE_FINISHED = "delete finished"  # a pod podslots made for this pool that ended
    REFUSE = "refuse"  # another pool's pod, matched by the adopt selector
    ADOPT = "adopt"  # claimed for this pool (or claimed now), then given an item


def orphan(
    pool: str, pod: Listed, owner: str | None, settings: PoolSettings, now: int, *, deleting_pool: bool
) -> Orphan:
    """A pod belongs to one pool: the one its `podslots.io/pool` label names, else the one that
    claimed it. Another controller's finished pod is its own business. A pod that has ended (its
    agent too, `ended`) is never adopted: it would beat through its sidecar and take tasks."""
    if deleting_pool or pod.deleting:
        return Orphan.IGNORE
    if ended(pod, settings, now) is not None:
        return Orphan.DELETE_FINISHED if pod.managed and owner == pool else Orphan.IGNORE
    if owner is not None and owner != pool:
        return Orphan.REFUSE
    return Orphan.ADOPT
