"""Pools, pods, slots and tasks: plain types and the rules that need no I/O.

Everything here is pure so that the step modules, the store and the tests can agree on one meaning
of "idle", "busy", "ended" and "where does the next task go".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, get_args


class TaskType(StrEnum):
    PLAN = "plan"
    APPLY = "apply"
    PLAN_AND_APPLY = "plan_and_apply"


class TaskStatus(StrEnum):
    PENDING = "pending"  # asked, found no slot, still waiting (the demand of the scaling rule)
    RUNNING = "running"
    APPLY_PENDING = "apply_pending"
    SUCCESS = "success"
    APPLIED = "applied"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # its pod vanished or its slot leaked; the queue may dispatch it again
    EXPIRED = "expired"  # its reservation ran out; the queue may dispatch it again

    @property
    def holds_slot(self) -> bool:
        return self in HOLDING_STATUSES

    @property
    def is_end(self) -> bool:
        return self in END_STATUSES

    @property
    def redispatchable(self) -> bool:
        """May a new allocation reuse this task id (the queue runs the task again)?"""
        return self in REDISPATCHABLE_STATUSES


# What a caller may report (`PUT /tasks/{id}/status`); the API's schema is this list, and no other.
ReportedStatus = Literal["running", "apply_pending", "success", "applied", "failed", "cancelled"]
# How podslots itself ends a task whose slot it took (an answer's `previous.status`).
TakenStatus = Literal["lost", "expired"]

HOLDING_STATUSES = frozenset({TaskStatus.RUNNING, TaskStatus.APPLY_PENDING})
REPORTED_STATUSES = frozenset(TaskStatus(value) for value in get_args(ReportedStatus))
CALLER_END_STATUSES = REPORTED_STATUSES - HOLDING_STATUSES  # the statuses a caller may end a task with
TAKEN_STATUSES = frozenset(TaskStatus(value) for value in get_args(TakenStatus))
END_STATUSES = CALLER_END_STATUSES | TAKEN_STATUSES
REDISPATCHABLE_STATUSES = TAKEN_STATUSES | {TaskStatus.PENDING}  # the queue may dispatch the task again


class SlotStatus(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    RESERVED = "reserved"


class PodState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


class Cordon(StrEnum):
    """Why a pod takes no new task (its running and reserved tasks finish, then it is drained).

    A pod holds a set of these, each added and removed on its own: it is closed while any holds.
    `unhealthy` is not one: it is a state, which closes the pod by itself and ends on the agent's
    next beat without anyone having to remember to take a reason back. The order here is the order
    of precedence for the one reason a pod's `cordoned` shows.
    """

    POOL_DELETED = "pool deleted"  # every pod of a pool being deleted; never taken back
    OUTDATED = "outdated revision"  # a roll-out retires it; never taken back (the pod is replaced)
    OPERATOR = "operator"  # POST /pools/{pool}/pods/{pod}/cordon; the only one that can be taken back


POOL_DELETED = Cordon.POOL_DELETED.value


def cordon_order(reasons: Iterable[str]) -> list[str]:
    """The reasons in precedence order (a reason this version does not know, from a newer one, last)."""
    known = [c.value for c in Cordon]
    return sorted(set(reasons), key=lambda r: (known.index(r) if r in known else len(known), r))


def shown_cordon(reasons: Iterable[str]) -> str | None:
    """The one reason `cordoned` shows (None: in service). The strongest one, so a client that
    reads only `cordoned` sees the reason that will not be taken back, not the operator's."""
    ordered = cordon_order(reasons)
    return ordered[0] if ordered else None


ADOPTED = "adopted"  # the revision of a pod podslots did not make (adopted by `adopt_selector`)
CREATE_GRACE_S = 60  # a `starting` item may exist briefly before its pod does (item first, then pod)


def slot_key(index: int) -> str:
    return f"s{index}"


def slot_index(key: str) -> int:
    """The slot's number: slots are ordered by it (s2 before s10), never by their key as text."""
    return int(key[1:])


@dataclass(frozen=True)
class Slot:
    status: SlotStatus = SlotStatus.IDLE
    task_id: str | None = None
    task_type: TaskType | None = None
    since: int | None = None  # epoch seconds the slot took this task (or was reserved)
    reserved_until: int | None = None

    @property
    def is_idle(self) -> bool:
        return self.status is SlotStatus.IDLE


IDLE_SLOT = Slot()


@dataclass(frozen=True)
class Pod:
    pool: str
    name: str
    state: PodState
    slots: dict[str, Slot]
    uid: str | None = None
    pod_ip: str | None = None  # as the cluster reports it; None until it does
    reported_ip: str | None = None  # what the agent's last beat claimed: compared, never handed out
    created_at: int = 0
    heartbeat_at: int | None = None  # the last beat, whatever it said
    registered_at: int | None = None  # the first beat (None: none yet, or an item from before the field)
    held_tasks: tuple[str, ...] = ()  # what the last beat that listed its tasks listed
    held_at: int | None = None  # when that beat came (None: no beat has listed them yet)
    last_used_at: int = 0
    cordoned: str | None = None  # closed: the item's one-string flag every condition reads (see `cordon_reasons`)
    cordons: frozenset[str] = frozenset()  # the item's set of reasons (items older than the set have none)
    revision: str | None = None  # the pool template's revision it was made from (None: made before revisions)
    second_choice: bool = False  # open, but only when no current pod has an idle slot (an outdated pod)
    controller: str | None = None  # `Kind/name` of the controller that owns the pod, as reconcile last saw it
    placed: int = 0  # tasks ever placed on it: the pool's arrivals, which prewarm learns from

    @property
    def adopted(self) -> bool:
        """Not made by podslots: adopted by `adopt_selector` (e.g. a Deployment's pod)."""
        return self.revision == ADOPTED

    @property
    def awaiting_beat(self) -> bool:
        """Adopted, and its agent has not yet beaten for this pool: the pod was running before podslots
        saw it, and what it runs is unknown, so it is never taken for idle (nor deleted for it)."""
        return self.adopted and self.heartbeat_at is None

    @property
    def counted_busy(self) -> int:
        """Busy slots as scaling and draining count them: every slot of a pod awaiting its first beat."""
        return self.slot_count if self.awaiting_beat else self.busy

    @property
    def cordon_reasons(self) -> frozenset[str]:
        """Every reason the pod is cordoned for: its set, and the reason `cordoned` names.

        An item written before the set existed carries its one reason in `cordoned` only, and reads
        as a set of that one reason. Every write since keeps `cordoned` present exactly while the set
        holds a reason, so the conditions that test `cordoned` (allocation's, the beat's, rank's)
        keep meaning "closed".
        """
        return self.cordons | {self.cordoned} if self.cordoned is not None else self.cordons

    @property
    def takes_tasks(self) -> bool:
        return self.state is PodState.READY and self.cordoned is None

    @property
    def in_service(self) -> bool:
        """Counts as the pool's capacity: ready or starting, and not cordoned."""
        return self.state in (PodState.READY, PodState.STARTING) and self.cordoned is None

    def outdated(self, revision: str) -> bool:
        """Made from another template than the pool's current one. A pod from before revisions is
        taken as current until reconcile records one for it (it cannot tell, and rolling every pool
        on an upgrade of podslots would surprise everyone)."""
        return self.revision is not None and self.revision != revision

    @property
    def busy(self) -> int:
        return sum(1 for slot in self.slots.values() if not slot.is_idle)

    @property
    def slot_count(self) -> int:
        return len(self.slots)

    def slots_in_order(self) -> list[tuple[str, Slot]]:
        """(key, slot) from s0 up: the one order every step, write and answer goes over slots in."""
        return sorted(self.slots.items(), key=lambda kv: slot_index(kv[0]))

    def idle_slot_keys(self) -> list[str]:
        return [key for key, slot in self.slots_in_order() if slot.is_idle]

    def with_slot(self, key: str, slot: Slot) -> Pod:
        return replace(self, slots={**self.slots, key: slot})


def empty_slots(count: int) -> dict[str, Slot]:
    return {slot_key(i): IDLE_SLOT for i in range(count)}


def new_pod(pool: str, name: str, slots: int, now: int, *, uid: str | None = None, revision: str | None = None) -> Pod:
    """A pod as it starts: every slot idle, not yet beating (what autoscale records before it creates
    the pod, and what reconcile records for a pod it adopts)."""
    return Pod(
        pool=pool,
        name=name,
        state=PodState.STARTING,
        slots=empty_slots(slots),
        uid=uid,
        created_at=now,
        last_used_at=now,
        revision=revision,
    )


@dataclass(frozen=True)
class EndedSlot:
    """The slot a task held when podslots itself ended it (`lost`, `expired`), and why.

    Kept on the task item until the task is placed again, through a wait if need be, so that the
    placement can say what it replaces: the queue must know an apply will not run where its plan did.
    """

    pod: str
    slot: str
    status: TaskStatus
    reason: str | None = None  # reconcile's reason for a loss (`leaked`, `vanished`, ...); None on older items


RESERVATION_EXPIRED = "reservation expired"


@dataclass(frozen=True)
class Task:
    task_id: str
    pool: str
    task_type: TaskType
    status: TaskStatus
    pod: str | None = None
    slot: str | None = None
    allocated_at: int | None = None
    updated_at: int = 0
    reserved_until: int | None = None
    waiting_since: int | None = None  # first 503 of the current dispatch
    shortage_signalled_at: int | None = None
    pod_ip: str | None = None  # the pod's IP when the slot was given (a pod keeps its IP for life)
    request_token: str | None = None  # the write that last moved it (a retry of it recognises itself)
    ended: EndedSlot | None = None  # the slot podslots last took from it (lost, expired); None once placed again
    owner: str | None = None  # the principal that allocated it (podslots.tenancy); None: open to every caller

    @property
    def previous_slot(self) -> EndedSlot | None:
        """The slot this task had before podslots ended it; None if it never had one taken."""
        if self.ended is not None:
            return self.ended
        if self.status in TAKEN_STATUSES and self.pod and self.slot:  # an older item
            reason = RESERVATION_EXPIRED if self.status is TaskStatus.EXPIRED else None
            return EndedSlot(self.pod, self.slot, self.status, reason)
        return None


@dataclass(frozen=True)
class Placement:
    """Where an allocation attempt will try to put a task."""

    pod: Pod
    slot: str


def pins_a_pod(task_type: TaskType | None) -> bool:
    """A task that may hold its pod for hours: a `plan_and_apply`, whose plan may wait for approval
    with its slot reserved (and its pod undrainable) until the apply."""
    return task_type is TaskType.PLAN_AND_APPLY


def pins(slot: Slot) -> bool:
    """The slot holds a reservation, or a task that may leave one."""
    return slot.status is SlotStatus.RESERVED or (not slot.is_idle and pins_a_pod(slot.task_type))


def is_pinned(pod: Pod) -> bool:
    """The pod holds a reservation, or a task that may leave one."""
    return any(pins(s) for s in pod.slots.values())


def placement_rank(pod: Pod, pins: bool) -> tuple[bool, bool, int]:
    """How good a pod is for a task, smaller first (docs/architecture.md, "Placement").

    1. A partly used pod before an empty one (bin-packing: an empty pod stays free to go).
    2. Among partly used pods, one whose pinning matches the task's: pinning tasks together, so
       the pods their reservations hold for hours are few and the others can be drained.
    3. The fullest.
    """
    partly_used = pod.busy > 0
    mismatch = partly_used and is_pinned(pod) != pins
    return (not partly_used, mismatch, len(pod.idle_slot_keys()))


def placement_candidates(pods: list[Pod], pins: bool = False) -> list[Placement]:
    """Every free slot of every ready pod, best first (`placement_rank`; `pins`: the task may pin its pod).

    Ties go to the pod with more busy slots, then the one used most recently (its caches are
    warm), then by name, so the order is deterministic; within a pod the lowest slot first.
    """
    ready = [p for p in pods if p.takes_tasks and p.idle_slot_keys()]
    ready.sort(key=lambda p: (*placement_rank(p, pins), -p.busy, -p.last_used_at, p.name))
    return [Placement(pod, key) for pod in ready for key in pod.idle_slot_keys()]


@dataclass
class PoolFigures:
    """Live slot and pod figures of a pool (what GET /pools/{pool} shows and reconcile emits)."""

    slots_total: int = 0
    slots_running: int = 0
    slots_reserved: int = 0
    slots_idle: int = 0
    pods_total: int = 0
    pods_idle: int = 0
    pods_partial: int = 0
    pods_full: int = 0
    pods_starting: int = 0
    pods_ready: int = 0
    pods_unhealthy: int = 0
    pods_draining: int = 0
    pods_cordoned: int = 0
    pods_outdated: int = 0  # made from an older template: a roll-out is replacing them
    utilization: float = 0.0
    by_state: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, pods: list[Pod], revision: str | None = None) -> PoolFigures:
        f = cls()
        for pod in pods:
            f.pods_total += 1
            f.pods_cordoned += pod.cordoned is not None
            f.pods_outdated += revision is not None and pod.outdated(revision) and pod.state is not PodState.DRAINING
            f.by_state[pod.state.value] = f.by_state.get(pod.state.value, 0) + 1
            running = sum(1 for s in pod.slots.values() if s.status is SlotStatus.RUNNING)
            reserved = sum(1 for s in pod.slots.values() if s.status is SlotStatus.RESERVED)
            f.slots_running += running
            f.slots_reserved += reserved
            # Capacity is what ready and starting pods in service offer (docs/architecture.md, "Scaling").
            if pod.in_service:
                f.slots_total += pod.slot_count
                f.slots_idle += pod.slot_count - running - reserved
            busy = running + reserved
            if busy == 0:
                f.pods_idle += 1
            elif busy < pod.slot_count:
                f.pods_partial += 1
            else:
                f.pods_full += 1
        f.pods_starting = f.by_state.get(PodState.STARTING.value, 0)
        f.pods_ready = f.by_state.get(PodState.READY.value, 0)
        f.pods_unhealthy = f.by_state.get(PodState.UNHEALTHY.value, 0)
        f.pods_draining = f.by_state.get(PodState.DRAINING.value, 0)
        used = f.slots_running + f.slots_reserved
        f.utilization = round(used / f.slots_total, 4) if f.slots_total else 0.0
        return f

    def as_dict(self) -> dict[str, int | float]:
        return {k: v for k, v in self.__dict__.items() if k != "by_state"}
