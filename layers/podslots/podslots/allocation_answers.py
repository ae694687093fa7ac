"""What an allocation is asked and what it answers: the request, the slot it names, and the refusals
that say what became of a task's reservation (shared by the placement loop and the held-slot path)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from podslots.errors import ReservationGone
from podslots.model import EndedSlot, Task, TaskType
from podslots.tenancy import ANONYMOUS, Caller


class Outcome(StrEnum):
    """What an allocation did, in the answer's `outcome`."""

    PLACED = "placed"  # 201: the task's first slot (or its first since a wait)
    PLACED_ANEW = "placed_anew"  # 201: podslots had taken its slot (lost, expired); this is another
    RESUMED = "resumed"  # 200: its reserved slot runs again, by this request's write
    REPEATED = "repeated"  # 200: it already held this slot running (a repeat, or a concurrent approval)

    @property
    def created(self) -> bool:
        return self in (Outcome.PLACED, Outcome.PLACED_ANEW)


@dataclass(frozen=True)
class AllocationRequest:
    pool: str
    task_id: str
    task_type: TaskType
    expect_resume: bool = False  # an approval: a reservation that is gone is refused, not replaced
    caller: Caller = ANONYMOUS  # who asks: the task's owner once placed, and who may touch it


@dataclass(frozen=True)
class Allocation:
    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    outcome: Outcome
    previous: EndedSlot | None = None  # placed anew: the slot it had, and why that ended

    @property
    def created(self) -> bool:
        """A new allocation (201) rather than the task's existing slot (200)."""
        return self.outcome.created


def log_keys(task: Task, pod: str, slot: str) -> dict[str, str]:
    return {"pool": task.pool, "pod": pod, "slot": slot, "task_id": task.task_id}


def reservation_gone(task: Task) -> ReservationGone:
    """The refusal of an approval whose reservation is gone, naming what happened to the task."""
    previous = task.previous_slot
    if previous is not None:
        why = f" ({previous.reason})" if previous.reason else ""
        message = (
            f"task {task.task_id}: its reservation on {previous.pod}/{previous.slot} is gone, "
            f"the task is {previous.status.value}{why}"
        )
        if task.status is not previous.status:
            message += f" and now {task.status.value}"
    else:
        message = f"task {task.task_id} holds no reservation (it is {task.status.value})"
    return ReservationGone(
        message,
        task_id=task.task_id,
        task_status=task.status.value,
        previous=_previous_doc(previous),
    )


def _previous_doc(previous: EndedSlot | None) -> dict[str, str | None] | None:
    if previous is None:
        return None
    return {"pod": previous.pod, "slot": previous.slot, "status": previous.status.value, "reason": previous.reason}


def unknown_task(task_id: str) -> ReservationGone:
    """An approval for a task podslots does not know: there is nothing to resume."""
    return ReservationGone(
        f"task {task_id} is unknown: there is no reservation to resume",
        task_id=task_id,
        task_status=None,
        previous=None,
    )
