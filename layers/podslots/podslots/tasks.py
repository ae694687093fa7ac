"""Task status: the slot follows what the task reports.

`apply_pending` keeps the slot reserved (the plan's working directory stays on that pod until a
person approves), `running` resumes it, and every end status frees it. The same status twice is
a no-op, so the agent and the queue may both report, and retry, without harm.

A task is its owner's (`podslots.tenancy`): to any other caller it is unknown, with the same 404 as
a task that does not exist, so not even its existence is told. Operators may read any task, never
move one. The check looks at the task item this step reads anyway: no request is added.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from podslots.clock import Clock
from podslots.errors import Conflict, NotFound, UnreadableSettings
from podslots.ids import new_token
from podslots.model import Task, TaskStatus, TaskType
from podslots.observability import count, logger
from podslots.ports import TaskStatusStore
from podslots.retry import ATTEMPTS, Backoff
from podslots.settings import DEFAULT_RESERVATION_TTL_S
from podslots.store import StoreConflict
from podslots.tenancy import ANONYMOUS, Caller


@dataclass(frozen=True)
class StatusChange:
    task: Task
    changed: bool


class TaskStatusService:
    def __init__(
        self,
        store: TaskStatusStore,
        clock: Clock,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (spreads retries; not a secret)
        self.sleep = sleep

    def get(self, task_id: str, caller: Caller = ANONYMOUS) -> Task:
        """The task as the caller may read it: its own, an unowned one, or any for an operator."""
        task = self.store.get_task(task_id)
        if task is None or not caller.may_read(task.owner):
            raise _unknown(task_id)
        return self._with_address(task)

    def _with_address(self, task: Task) -> Task:
        """The task with its pod's IP. The task item keeps the IP its pod had when the slot was given;
        a task placed before reconcile recorded the new pod's IP has none, so its pod item is read
        (one GetItem, only then): the queue learns the address as soon as podslots knows it."""
        if task.pod_ip is not None or task.pod is None or not task.status.holds_slot:
            return task
        pod = self.store.get_pod(task.pool, task.pod)
        return replace(task, pod_ip=pod.pod_ip) if pod is not None and pod.pod_ip else task

    def _own(self, task_id: str, caller: Caller) -> Task:
        """The task as the caller may move it: its own or an unowned one (an operator's reading
        right does not count)."""
        task = self.store.get_task(task_id)
        if task is None or not caller.may_use(task.owner):
            raise _unknown(task_id)
        return task

    def set_status(self, task_id: str, status: TaskStatus, caller: Caller = ANONYMOUS) -> StatusChange:
        for attempt in range(ATTEMPTS):  # DynamoDB cancels concurrent transactions on one item; then a 409
            task = self._own(task_id, caller)
            if task.status is status:
                return StatusChange(task, changed=False)
            token = new_token()
            try:
                return StatusChange(self._move(task, status, token), changed=True)
            except StoreConflict as conflict:
                # Someone else moved the task or its slot between our read and our write
                # (reconcile, expiry, a concurrent call), or DynamoDB refused a concurrent
                # transaction: read again and decide afresh. A retry of our own write that
                # met that write is recognised by its token.
                current = self.store.get_task(task_id)
                if current is not None and current.request_token == token:
                    return StatusChange(current, changed=True)
                if self._slot_lost(task, conflict, status):
                    return StatusChange(self._own(task_id, caller), changed=True)
                Backoff(self.rng, self.sleep).wait(attempt)
        raise Conflict(f"task {task_id} keeps changing under this update; try again", task_id=task_id)

    def _move(self, task: Task, status: TaskStatus, token: str) -> Task:
        if task.status.is_end:
            raise Conflict(
                f"task {task.task_id} already ended with status {task.status.value}",
                task_id=task.task_id,
                status=task.status.value,
            )
        now = int(self.clock.now())
        if task.status is TaskStatus.PENDING:
            if status.is_end:
                self.store.close_without_slot(task, status, now, token=token)
                return self._after(task, status)
            raise Conflict(
                f"task {task.task_id} holds no slot yet (it waits for capacity); allocate it first",
                task_id=task.task_id,
            )
        if status is TaskStatus.APPLY_PENDING:
            if task.task_type is not TaskType.PLAN_AND_APPLY:
                raise Conflict(
                    f"only a plan_and_apply task can wait for approval; {task.task_id} is {task.task_type.value}",
                    task_id=task.task_id,
                )
            until = now + self._reservation_ttl(task.pool)
            self.store.reserve(task, until, now, token=token)
            count("SlotReserved")
            logger.info("slot reserved for approval", extra=_keys(task) | {"reserved_until": until})
            return self._after(task, status, reserved_until=until)
        if status is TaskStatus.RUNNING:  # from apply_pending: the approval came
            self.store.resume(task, now, token=token)
            logger.info("apply resumed on its reserved slot", extra=_keys(task))
            return self._after(task, status)
        self.store.release(task, status, now, token=token)
        count("SlotReleased")
        logger.info("slot released", extra=_keys(task) | {"status": status.value})
        return self._after(task, status)

    def _slot_lost(self, task: Task, conflict: StoreConflict, status: TaskStatus) -> bool:
        """The task item is as we read it, but its slot no longer holds it (its pod item went).

        Ending such a task must still succeed: close the task alone, there is no slot to free.
        Anything else (reserve, resume) is a conflict: the slot the apply needs is gone.
        """
        if conflict.failed("task") or not conflict.failed("slot"):
            return False
        if not status.is_end:
            raise Conflict(
                f"the slot of task {task.task_id} no longer holds it (its pod was lost)",
                task_id=task.task_id,
            )
        try:
            self.store.close_without_slot(task, status, int(self.clock.now()))
        except StoreConflict:
            return False  # it moved again: the caller reads it afresh
        logger.warning("task ended without a slot to free", extra=_keys(task))
        return True

    def _reservation_ttl(self, pool: str) -> int:
        try:
            record = self.store.get_pool(pool)
        except UnreadableSettings:
            logger.warning("pool settings unreadable; default reservation TTL", extra={"pool": pool})
            return DEFAULT_RESERVATION_TTL_S
        return record.settings.reservation_ttl_s if record else DEFAULT_RESERVATION_TTL_S

    @staticmethod
    def _after(task: Task, status: TaskStatus, reserved_until: int | None = None) -> Task:
        return replace(task, status=status, reserved_until=reserved_until)


def _unknown(task_id: str) -> NotFound:
    """Unknown to this caller: there is no such task, or it is another caller's (the same answer)."""
    return NotFound(f"task {task_id} is not known", task_id=task_id)


def _keys(task: Task) -> dict[str, str | None]:
    return {"pool": task.pool, "pod": task.pod, "slot": task.slot, "task_id": task.task_id}
