"""Tasks and the slots they hold: allocation, waiting, reserve, resume, release and expiry.

Every write that moves a slot is a transaction of the task item and the pod item, each conditional
on what the caller read, so two Lambdas racing each other cannot double-book a slot or lose one.
Each transaction carries a client request token, and the task item keeps it: DynamoDB makes a
retried transaction idempotent by its token, and where a retry still meets its own earlier write
(a lost answer), the caller recognises the token instead of reporting a conflict.
"""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from podslots.ids import new_token
from podslots.model import RESERVATION_EXPIRED, EndedSlot, Pod, PodState, Slot, SlotStatus, Task, TaskStatus
from podslots.store.base import StoreBase
from podslots.store.conversions import free_slot, pod_from, pod_key, take_slot, task_from, task_key
from podslots.store.items import PodItem, TaskItem
from podslots.store.keys import TASK_SK, open_partition, task_pk
from podslots.store.transaction import (
    LabelledTransaction,
    StoreConflict,
    condition_failed,
    conditional,
)


class TaskSlots(StoreBase):
    """The slot life cycle of a task, in the vocabulary of the life cycle."""

    def get_task(self, task_id: str) -> Task | None:
        try:
            return task_from(TaskItem.get(task_pk(task_id), TASK_SK, consistent_read=True))
        except DoesNotExist:
            return None

    def open_slots(self, pool: str, pods: int, second_choice: bool = False) -> list[Pod]:
        """The fullest pods of the pool that have an idle slot, at most `pods` of them.

        One Query of the sparse `open_slots` index (eventually consistent): it reads `pods` items
        however large the pool is. What it proposes may be stale; the allocation's conditions decide.
        `second_choice` reads the outdated pods a roll-out has ranked after the current ones.
        """
        partition = open_partition(pool, second_choice)
        query = PodItem.open_slots.query(partition, PodItem.idle > 0, limit=pods, page_size=pods)
        return [pod_from(item) for item in query]

    def allocate(
        self, task: Task, pod: Pod, slot: str, previous: Task | None, now: int, *, token: str | None = None
    ) -> None:
        """Put the task in the slot, atomically. Raises StoreConflict naming what moved.

        `previous` is the task item the caller knows of (None: it assumes there is none). A
        re-dispatch of a lost, expired or waiting task is conditional on it still being as read.
        When the task's own condition fails, the conflict carries the task as it is
        (`found["task"]`), read by the same request: a new allocation never reads the task first.
        """
        token = token or new_token()
        tx = self._tx(token)
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
            request_token=token,
            owner=task.owner,
        )
        if previous is None:
            task_condition = TaskItem.pk.does_not_exist()
        else:
            # Only a task that holds no slot is replaced (waiting, lost, expired), whatever the caller
            # believes: a slot that names a task always finds that task's item as it left it.
            assert previous.status.redispatchable, f"a {previous.status.value} task is never placed anew"
            task_condition = (
                (TaskItem.status == previous.status.value)
                & TaskItem.status.is_in(*(s.value for s in TaskStatus if s.redispatchable))
                & (TaskItem.updated_at == previous.updated_at)
                & _owner_is(previous.owner)
            )
        tx.put("task", item, condition=task_condition, return_old=True)
        tx.update(
            "slot",
            pod_key(pod.pool, pod.name),
            actions=take_slot(slot, Slot(SlotStatus.RUNNING, task.task_id, task.task_type, now), now),
            condition=(PodItem.state == PodState.READY.value)
            & PodItem.cordoned.does_not_exist()
            & (PodItem.slots[slot]["status"] == SlotStatus.IDLE.value),
        )
        try:
            tx.commit()
        except StoreConflict as conflict:
            raw = conflict.raw_items.get("task")
            if raw is not None:
                conflict.found["task"] = task_from(TaskItem.from_raw_data(raw))
            raise

    def record_waiting(self, task: Task, now: int, signal_every_s: int) -> tuple[bool, int]:
        """Record that the task asked and found no slot: (signal a shortage?, waiting since).

        The task item turns `pending` (with the sparse `waiting` index keys), unless it holds a
        slot or ended meanwhile (StoreConflict). Its first wait is kept across asks; the signal is
        rate-limited per task through `signalled_at`.
        """
        # A task of another caller is never taken over: only an unowned one or the caller's own.
        base_condition = TaskItem.pk.does_not_exist() | (
            TaskItem.status.is_in(*(s.value for s in TaskStatus if s.redispatchable)) & _usable_by(task.owner)
        )
        actions: list[Action] = [
            TaskItem.task_id.set(task.task_id),
            TaskItem.pool.set(task.pool),
            TaskItem.task_type.set(task.task_type.value),
            TaskItem.status.set(TaskStatus.PENDING.value),
            TaskItem.updated_at.set(now),
            TaskItem.wait_pool.set(task.pool),
            TaskItem.wait_since.set(TaskItem.wait_since | now),  # if_not_exists: the first ask counts
            TaskItem.expires_at.remove(),
            TaskItem.pod.remove(),
            TaskItem.slot.remove(),
        ]
        if task.owner is not None:
            actions.append(TaskItem.owner.set(task.owner))
        signal_condition = TaskItem.signalled_at.does_not_exist() | (TaskItem.signalled_at <= now - signal_every_s)
        item = task_key(task.task_id)
        if conditional(
            lambda: item.update(
                actions=[*actions, TaskItem.signalled_at.set(now)], condition=base_condition & signal_condition
            )
        ):
            return True, int(item.wait_since or now)
        condition_failed("task", lambda: item.update(actions=actions, condition=base_condition))
        return False, int(item.wait_since or now)  # PynamoDB refreshes the item with ALL_NEW

    # ---- the slot life cycle of an allocated task ------------------------------------------------

    def reserve(self, task: Task, until: int, now: int, *, token: str | None = None) -> None:
        """running -> reserved (apply_pending), both conditional on the slot holding the task."""
        assert task.pod and task.slot
        token = token or new_token()
        tx = self._tx(token)
        tx.update(
            "task",
            task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.APPLY_PENDING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.set(task.pool),
                TaskItem.rsv_until.set(until),
                TaskItem.request_token.set(token),
            ],
            condition=(TaskItem.status == TaskStatus.RUNNING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot)
            & _owner_is(task.owner),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot]["status"].set(SlotStatus.RESERVED.value),
                PodItem.slots[task.slot]["since"].set(now),
                PodItem.slots[task.slot]["reserved_until"].set(until),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RUNNING.value),
        )
        tx.commit()

    def resume(self, task: Task, now: int, *, token: str | None = None) -> None:
        """reserved -> running: the apply runs on the pod and slot that ran the plan.

        Raises StoreConflict when the transaction was cancelled, and also when it was throttled or
        went unanswered past botocore's retries (reason `unanswered`): the caller reads the task and
        either recognises its token or resumes again. Nothing transient may end an approval.
        """
        assert task.pod and task.slot
        token = token or new_token()
        tx = self._tx(token)
        tx.update(
            "task",
            task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.RUNNING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.remove(),
                TaskItem.rsv_until.remove(),
                TaskItem.request_token.set(token),
            ],
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot)
            & _owner_is(task.owner),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot]["status"].set(SlotStatus.RUNNING.value),
                PodItem.slots[task.slot]["since"].set(now),
                PodItem.slots[task.slot]["reserved_until"].remove(),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        _commit_or_unanswered(tx)

    def release(self, task: Task, end: TaskStatus, now: int, *, token: str | None = None) -> None:
        """End the task and free its slot in one transaction; `busy` and `idle` move with it."""
        assert task.pod and task.slot and end.is_end
        token = token or new_token()
        tx = self._tx(token)
        tx.update(
            "task",
            task_key(task.task_id),
            actions=self._end_actions(end, now, token),
            condition=(TaskItem.status == task.status.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot)
            & _owner_is(task.owner),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=free_slot(task.slot, now),
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] != SlotStatus.IDLE.value),
        )
        tx.commit()

    def close_without_slot(
        self, task: Task, end: TaskStatus, now: int, *, token: str | None = None, ended: EndedSlot | None = None
    ) -> None:
        """End a task that holds no slot: a waiting task, or one whose pod item is gone.

        Conditional on the task being exactly as the caller read it (status and updated_at).
        `ended`: podslots ends it (its reserved slot is gone), and records which slot and why.
        """
        token = token or new_token()
        condition_failed(
            "task",
            lambda: task_key(task.task_id).update(
                actions=self._end_actions(end, now, token, ended),
                condition=(TaskItem.status == task.status.value)
                & (TaskItem.updated_at == task.updated_at)
                & _owner_is(task.owner),
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

    def expire(self, task: Task, now: int, *, token: str | None = None) -> bool:
        """Free a reservation past its deadline; the task becomes `expired`. False if it moved."""
        assert task.pod and task.slot
        token = token or new_token()
        tx = self._tx(token)
        tx.update(
            "task",
            task_key(task.task_id),
            actions=self._end_actions(
                TaskStatus.EXPIRED, now, token, EndedSlot(task.pod, task.slot, TaskStatus.EXPIRED, RESERVATION_EXPIRED)
            ),
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.rsv_until <= now)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            pod_key(task.pool, task.pod),
            actions=free_slot(task.slot),
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        try:
            tx.commit()
        except StoreConflict:
            return self._written_by(task.task_id, token)
        return True

    def _written_by(self, task_id: str, token: str) -> bool:
        """Was the task last moved by the write with this token (a retry met its own write)?"""
        current = self.get_task(task_id)
        return current is not None and current.request_token == token


def _owner_is(owner: str | None) -> Condition:
    """The task's owner as the caller read it: a write never lands on an item another caller put since
    (an unowned task re-dispatched by someone else in the same second keeps its `updated_at`)."""
    if owner is None:
        return TaskItem.owner.does_not_exist()
    same: Condition = TaskItem.owner == owner
    return same


def _usable_by(principal: str | None) -> Condition:
    """An item this principal may take over: one with no owner, or its own."""
    unowned = TaskItem.owner.does_not_exist()
    return unowned if principal is None else unowned | _owner_is(principal)


TRANSIENT = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


def _commit_or_unanswered(tx: LabelledTransaction) -> None:
    """Commit; a transient failure past botocore's retries becomes a StoreConflict (`unanswered`).

    The write may or may not have been applied (a lost answer was retried and throttled, say): the
    caller finds out by reading the task's request token, as after any conflict.
    """
    try:
        tx.commit()
    except TransactWriteError as exc:
        if exc.cause_response_code is not None and exc.cause_response_code not in TRANSIENT:
            raise
        raise StoreConflict({"transaction": "unanswered"}) from exc
