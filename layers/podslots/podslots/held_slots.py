"""A task that already holds a slot (or ended): its own slot again, its apply resumed, or why not.

An approval (`expect: resume`), a repeat of a dispatch, and a re-dispatch that meets the task item
all come here from the placement loop (`allocation.py`). A task seen reserved is only ever answered
with its own slot, or with a refusal: never with another slot. A resume met by transient faults is
tried again as a resume (`podslots.retry`); a write of ours whose answer was lost is recognised by
its token; a task that moved meanwhile is answered as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass

from podslots.allocation_answers import (
    Allocation,
    AllocationRequest,
    Outcome,
    log_keys,
    reservation_gone,
    unknown_task,
)
from podslots.clock import Clock
from podslots.errors import Conflict, ReservationGone, ResumeContended
from podslots.ids import new_token
from podslots.model import EndedSlot, Task, TaskStatus
from podslots.observability import count, logger
from podslots.ports import AllocationStore
from podslots.retry import Backoff
from podslots.store import StoreConflict

RESUME_ATTEMPTS = 8  # a resume met by transient faults is tried again, as a resume, this many times
RESUME_GONE = "reserved slot gone"  # why a task seen reserved is lost when its slot is not there


@dataclass(frozen=True)
class HeldSlots:
    """The answers for a task the table already knows; made per request from the allocator's parts."""

    store: AllocationStore
    clock: Clock
    backoff: Backoff

    def approval(self, request: AllocationRequest) -> Allocation:
        """`expect: resume`: the task's reserved (or already resumed) slot, or `reservation_gone`.

        Read first, because a blind placement would be the one answer an approval must never get.
        """
        current = own(request, self.store.get_task(request.task_id))
        if current is None:  # unknown, or another caller's: the same answer
            raise unknown_task(request.task_id)
        if current.status.redispatchable:
            raise reservation_gone(current)
        return self.existing(request, current)

    def existing(self, request: AllocationRequest, task: Task) -> Allocation:
        if task.status.is_end:
            raise Conflict(
                f"task {task.task_id} already ended with status {task.status.value}",
                task_id=task.task_id,
                status=task.status.value,
            )
        if task.pool != request.pool:
            raise Conflict(
                f"task {task.task_id} holds a slot in pool {task.pool}, not {request.pool}",
                task_id=task.task_id,
                pool=task.pool,
            )
        same_type(request, task)
        if task.status is TaskStatus.APPLY_PENDING:
            return self._resume(request, task)  # the approval came
        return self.held(task, Outcome.REPEATED)

    def _resume(self, request: AllocationRequest, task: Task) -> Allocation:
        """The apply resumes in the slot the plan kept reserved, or the answer says why it cannot.

        A transient failure (a conflict, throttling, an unanswered write) is retried as a resume,
        with jittered backoff; a write of ours whose answer was lost is recognised by its token. A
        task that moved meanwhile is answered as it is now, never by placing it elsewhere.
        """
        for attempt in range(RESUME_ATTEMPTS):
            token = new_token()
            try:
                self.store.resume(task, int(self.clock.now()), token=token)
            except StoreConflict as conflict:
                current = own(request, self.store.get_task(task.task_id))
                if current is not None and current.request_token == token:
                    break  # our own write; its answer was lost
                if not _same_reservation(task, current):
                    return self._after_resume(request, task, current)
                if conflict.failed("slot") and self._slot_gone(task):
                    self._lose(task)
                    continue  # the next try finds the task lost (or moved) and answers that
                count("ResumeConflictRetry")
                self.backoff.wait(attempt + 1)
                continue
            break
        else:
            raise ResumeContended(
                f"task {task.task_id}: the resume of its reserved slot {task.pod}/{task.slot} kept meeting "
                "concurrent writes; nothing moved, try again",
                task_id=task.task_id,
                pod=task.pod,
                slot=task.slot,
                retry_after_s=1,
            )
        count("AllocationResumed")
        logger.info("apply resumed on its reserved slot", extra=log_keys(task, task.pod or "", task.slot or ""))
        return self.held(task, Outcome.RESUMED)

    def _after_resume(self, request: AllocationRequest, seen: Task, current: Task | None) -> Allocation:
        """The task moved while we resumed it: its own slot if it runs there, else why not."""
        if current is None:
            raise unknown_task(seen.task_id)
        if current.status is TaskStatus.RUNNING and (current.pod, current.slot) == (seen.pod, seen.slot):
            return self.held(current, Outcome.REPEATED)  # a concurrent approval resumed it
        if current.status.redispatchable:  # lost, expired (or waiting since): the reservation is gone
            raise reservation_gone(current)
        if current.status.is_end:
            return self.existing(request, current)  # 409: already ended
        raise ReservationGone(
            f"task {seen.task_id}: its reservation on {seen.pod}/{seen.slot} is gone; "
            f"it was placed again on {current.pod}/{current.slot} ({current.status.value})",
            task_id=seen.task_id,
            task_status=current.status.value,
            pod=current.pod,
            slot=current.slot,
            previous={"pod": seen.pod, "slot": seen.slot, "status": None, "reason": None},
        )

    def _slot_gone(self, task: Task) -> bool:
        """Is the reserved slot really gone: no pod item, no such slot, or a slot that names another
        task or none? (A slot that still names the task is never given up on: a task is only made
        lost while no slot names it.)"""
        assert task.pod and task.slot
        pod = self.store.get_pod(task.pool, task.pod)
        slot = pod.slots.get(task.slot) if pod is not None else None
        return slot is None or slot.task_id != task.task_id

    def _lose(self, task: Task) -> None:
        """The task's reserved slot is gone while its item still says reserved: it is lost, said so."""
        assert task.pod and task.slot
        ended = EndedSlot(task.pod, task.slot, TaskStatus.LOST, RESUME_GONE)
        try:
            self.store.close_without_slot(task, TaskStatus.LOST, int(self.clock.now()), ended=ended)
        except StoreConflict:
            return  # it moved: the next try reads what it became
        count("TasksLost")
        logger.warning("reserved slot gone; task lost", extra=log_keys(task, task.pod, task.slot))

    def held(self, task: Task, outcome: Outcome, previous: EndedSlot | None = None) -> Allocation:
        """The slot the task holds now, as the answer names it."""
        assert task.pod and task.slot
        pod_ip = task.pod_ip
        if pod_ip is None:  # the pod had not reported its IP when the slot was given: look again
            pod = self.store.get_pod(task.pool, task.pod)
            pod_ip = pod.pod_ip if pod else None
        return Allocation(
            task_id=task.task_id,
            pool=task.pool,
            pod=task.pod,
            slot=task.slot,
            pod_ip=pod_ip,
            outcome=outcome,
            previous=previous,
        )


def own(request: AllocationRequest, task: Task | None) -> Task | None:
    """The task as this caller may see it: another caller's task is no task at all."""
    return task if task is not None and request.caller.may_use(task.owner) else None


def same_type(request: AllocationRequest, task: Task) -> None:
    if task.task_type is not request.task_type:
        raise Conflict(
            f"task {task.task_id} was dispatched as {task.task_type.value}, not {request.task_type.value}",
            task_id=task.task_id,
            task_type=task.task_type.value,
        )


def _same_reservation(seen: Task, current: Task | None) -> bool:
    return (
        current is not None
        and current.status is TaskStatus.APPLY_PENDING
        and (current.pod, current.slot) == (seen.pod, seen.slot)
    )
