"""Tasks and the slots they hold: allocation, waiting, reserve, resume, release and expiry.

Every write that moves a slot is a transaction of the task item and the pod item, each conditional
on what the caller read, so two Lambdas racing each other cannot double-book a slot or lose one.
"""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.update import Action

from podslots.model import Pod, PodState, Slot, SlotStatus, Task, TaskStatus
from podslots.store.base import StoreBase
from podslots.store.conversions import IDLE_DOC, pod_key, slot_doc, task_from, task_key
from podslots.store.items import PodItem, PoolItem, TaskItem
from podslots.store.keys import CONFIG_SK, TASK_SK, pool_pk, task_pk
from podslots.store.transaction import StoreConflict, condition_failed, conditional


class TaskSlots(StoreBase):
    """The slot life cycle of a task, in the vocabulary of the life cycle."""

    def get_task(self, task_id: str) -> Task | None:
        try:
            return task_from(TaskItem.get(task_pk(task_id), TASK_SK, consistent_read=True))
        except DoesNotExist:
            return None

    def allocate(self, task: Task, pod: Pod, slot: str, previous: Task | None, now: int) -> None:
        """Put the task in the slot, atomically. Raises StoreConflict naming what moved.

        `previous` is the task item the caller read (None if there was none): a re-dispatch of a
        lost, expired or waiting task is conditional on it still being in that status.
        """
        tx = self._tx()
        item = TaskItem(
            task_pk(task.task_id),
            TASK_SK,
            task_id=task.task_id,
            pool=task.pool,
            task_type=task.task_type.value,
            status=TaskStatus.RUNNING.value,
            pod=pod.name,
            slot=slot,
            pod_ip=pod.pod_ip,
            allocated_at=now,
            updated_at=now,
        )
        if previous is None:
            task_condition = TaskItem.pk.does_not_exist()
        else:
            task_condition = (TaskItem.status == previous.status.value) & (TaskItem.updated_at == previous.updated_at)
        tx.put("task", item, condition=task_condition)
        tx.update(
            "slot",
            pod_key(pod.pool, pod.name),
            actions=[
                PodItem.slots[slot].set(slot_doc(Slot(SlotStatus.RUNNING, task.task_id, task.task_type, now))),
                PodItem.busy.add(1),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.state == PodState.READY.value)
            & (PodItem.slots[slot]["status"] == SlotStatus.IDLE.value),
        )
        tx.condition_check(
            "pool",
            PoolItem,
            pool_pk(task.pool),
            CONFIG_SK,
            PoolItem.pk.exists() & (PoolItem.deleting == False),  # noqa: E712 (a DynamoDB condition)
        )
        tx.commit()

    def record_waiting(self, task: Task, previous: Task | None, now: int, signal_every_s: int) -> bool:
        """Record that the task asked and found no slot. True when a shortage should be signalled.

        The task item turns `pending` (with the sparse `waiting` index keys), unless it holds a
        slot or ended meanwhile. The signal is rate-limited per task through `signalled_at`.
        """
        base_condition = TaskItem.pk.does_not_exist() | TaskItem.status.is_in(
            *(s.value for s in TaskStatus if s.redispatchable)
        )
        actions: list[Action] = [
            TaskItem.task_id.set(task.task_id),
            TaskItem.pool.set(task.pool),
            TaskItem.task_type.set(task.task_type.value),
            TaskItem.status.set(TaskStatus.PENDING.value),
            TaskItem.updated_at.set(now),
            TaskItem.wait_pool.set(task.pool),
            TaskItem.expires_at.remove(),
            TaskItem.pod.remove(),
            TaskItem.slot.remove(),
        ]
        first = previous.waiting_since if previous and previous.status is TaskStatus.PENDING else None
        actions.append(TaskItem.wait_since.set(first if first is not None else now))
        signal_condition = TaskItem.signalled_at.does_not_exist() | (TaskItem.signalled_at <= now - signal_every_s)
        item = task_key(task.task_id)
        if conditional(
            lambda: item.update(
                actions=[*actions, TaskItem.signalled_at.set(now)], condition=base_condition & signal_condition
            )
        ):
            return True
        condition_failed("task", lambda: item.update(actions=actions, condition=base_condition))
        return False

    def reserve(self, task: Task, until: int, now: int) -> None:
        """running -> reserved (apply_pending), both conditional on the slot holding the task."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.APPLY_PENDING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.set(task.pool),
                TaskItem.rsv_until.set(until),
            ],
            condition=(TaskItem.status == TaskStatus.RUNNING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(
                    slot_doc(Slot(SlotStatus.RESERVED, task.task_id, task.task_type, now, until))
                ),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RUNNING.value),
        )
        tx.commit()

    def resume(self, task: Task, now: int) -> None:
        """reserved -> running: the apply runs on the pod and slot that ran the plan."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.RUNNING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.remove(),
                TaskItem.rsv_until.remove(),
            ],
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(slot_doc(Slot(SlotStatus.RUNNING, task.task_id, task.task_type, now))),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        tx.commit()

    def release(self, task: Task, end: TaskStatus, now: int) -> None:
        """End the task and free its slot in one write; `busy - 1` in the same write."""
        assert task.pod and task.slot and end.is_end
        tx = self._tx()
        tx.update(
            "task",
            task_key(task.task_id),
            actions=self._end_actions(end, now),
            condition=(TaskItem.status == task.status.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(IDLE_DOC),
                PodItem.busy.set(PodItem.busy - 1),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] != SlotStatus.IDLE.value),
        )
        tx.commit()

    def close_without_slot(self, task: Task, end: TaskStatus, now: int) -> None:
        """End a task that holds no slot: a waiting task, or one whose pod item is gone.

        Conditional on the task being exactly as the caller read it (status and updated_at).
        """
        condition_failed(
            "task",
            lambda: task_key(task.task_id).update(
                actions=self._end_actions(end, now),
                condition=(TaskItem.status == task.status.value) & (TaskItem.updated_at == task.updated_at),
            ),
        )

    def waiting(self, pool: str) -> list[Task]:
        """Tasks that asked and found no slot (the sparse `waiting` index; eventually consistent)."""
        return [task_from(item) for item in TaskItem.waiting.query(pool)]

    def forget_waiting(self, task: Task) -> None:
        """A task that stopped asking leaves the demand (it stays `pending`; a new ask brings it back)."""
        conditional(
            lambda: task_key(task.task_id).update(
                actions=[TaskItem.wait_pool.remove(), TaskItem.wait_since.remove()],
                condition=(TaskItem.status == TaskStatus.PENDING.value) & (TaskItem.updated_at == task.updated_at),
            )
        )

    def due_reservations(self, pool: str, now: int) -> list[Task]:
        """Reserved tasks whose deadline has come (the sparse `reservations` index, not a scan)."""
        return [task_from(item) for item in TaskItem.reservations.query(pool, TaskItem.rsv_until <= now)]

    def expire(self, task: Task, now: int) -> bool:
        """Free a reservation past its deadline; the task becomes `expired`. False if it moved."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            task_key(task.task_id),
            actions=self._end_actions(TaskStatus.EXPIRED, now),
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.rsv_until <= now)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[PodItem.slots[task.slot].set(IDLE_DOC), PodItem.busy.set(PodItem.busy - 1)],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        try:
            tx.commit()
            return True
        except StoreConflict:
            return False
