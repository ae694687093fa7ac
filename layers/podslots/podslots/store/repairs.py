"""What reconcile repairs on pod items, each in one transaction with its history entry: a pod that
is gone (its tasks lost), a leaked slot (freed, its task lost), a refusal recorded once per pod."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition

from podslots.ids import EVENT_ID_DIGITS, new_token
from podslots.model import HOLDING_STATUSES, EndedSlot, Pod, SlotStatus, TaskStatus
from podslots.store.conversions import free_slot, pod_key, task_key
from podslots.store.items import EventItem, PodItem, TaskItem
from podslots.store.keys import TASK_SK, notice_sk, pool_pk, task_pk
from podslots.store.pod_conditions import same_pod
from podslots.store.pods import PodRecords
from podslots.store.transaction import StoreConflict


class PodRepairs(PodRecords):
    """Lose a pod, release a leaked slot, record a refusal once."""

    def lose_pod(self, pod: Pod, reason: str, now: int, event_id: str) -> list[tuple[str, str]]:
        """The pod is gone (vanished, failed, replaced): its tasks become `lost`, its item goes.

        One transaction: each task it held (conditional on still holding that slot), the pod item
        (conditional on being the item that was read), and a history entry per task. So a retry
        after a crash finds nothing left to lose, and no task is reported lost twice.
        Returns (slot, task_id) of each task lost; raises StoreConflict if anything moved.
        """
        token = new_token()
        tx = self._tx(token)
        lost: list[tuple[str, str]] = []
        for key, slot in pod.slots_in_order():
            if slot.is_idle or slot.task_id is None:
                continue
            lost.append((key, slot.task_id))
            tx.update(
                f"task:{slot.task_id}",
                task_key(slot.task_id),
                actions=self._end_actions(
                    TaskStatus.LOST, now, token, EndedSlot(pod.name, key, TaskStatus.LOST, reason)
                ),
                condition=(TaskItem.pod == pod.name)
                & (TaskItem.slot == key)
                & (TaskItem.pool == pod.pool)
                & TaskItem.status.is_in(*sorted(s.value for s in HOLDING_STATUSES)),
            )
            tx.put(
                f"event:{slot.task_id}",
                self._event_item(
                    pod.pool,
                    "TaskLost",
                    {"pod": pod.name, "slot": key, "task_id": slot.task_id, "reason": reason},
                    now,
                    f"{event_id}-{key}",
                ),
            )
        tx.delete("pod", pod_key(pod.pool, pod.name), condition=same_pod(pod) & self._same_slots(pod))
        tx.commit()
        return lost

    @staticmethod
    def _same_slots(pod: Pod) -> Condition:
        """Every slot holds what was read: an idle one is still idle, a held one still names its task.

        The loss of a pod is judged from a read; an allocation can land on the item (still open)
        between that read and the write. Without this, the item would go with the new task's slot
        in it, and that task would stay `running` on a pod that no longer exists, never reported.
        """
        same: Condition = PodItem.busy == pod.busy
        for key, slot in pod.slots_in_order():
            if slot.is_idle or slot.task_id is None:
                same &= PodItem.slots[key]["status"] == SlotStatus.IDLE.value
            else:
                same &= PodItem.slots[key]["task_id"] == slot.task_id
        return same

    def release_leaked(self, pod: Pod, key: str, now: int, event_id: str) -> None:
        """Free a slot whose task the agent no longer holds; the task becomes `lost` (recorded).

        The judgement was made from `pod` as read: its slot, and the last beat that listed the
        agent's tasks. All of it is a condition of the write, so a listing beat that lands between
        the read and this write (an agent slow to write its task's file, catching up) refuses the
        release instead of freeing the slot of a task that still runs. StoreConflict if anything
        moved; the next run judges again from what it then reads. A retry that meets its own
        applied write (a lost answer) is recognised by the task's request token, not reported.
        """
        slot = pod.slots[key]
        assert slot.task_id and slot.task_type
        token = new_token()
        tx = self._tx(token)
        held = TaskStatus.APPLY_PENDING if slot.status is SlotStatus.RESERVED else TaskStatus.RUNNING
        tx.update(
            "task",
            task_key(slot.task_id),
            actions=self._end_actions(TaskStatus.LOST, now, token, EndedSlot(pod.name, key, TaskStatus.LOST, "leaked")),
            condition=(TaskItem.status == held.value) & (TaskItem.pod == pod.name) & (TaskItem.slot == key),
        )
        tx.update(
            "slot",
            pod_key(pod.pool, pod.name),
            actions=free_slot(key),
            condition=(PodItem.slots[key]["task_id"] == slot.task_id)
            & (PodItem.slots[key]["since"] == slot.since)
            & self._same_listing(pod),
        )
        tx.put(
            "event",
            self._event_item(
                pod.pool,
                "TaskLost",
                {"pod": pod.name, "slot": key, "task_id": slot.task_id, "reason": "leaked"},
                now,
                event_id,
            ),
        )
        try:
            tx.commit()
        except StoreConflict:
            if not self._task_moved_by(slot.task_id, token):
                raise

    @staticmethod
    def _task_moved_by(task_id: str, token: str) -> bool:
        """Was the task last moved by the write with this token (a retry met its own write)?"""
        try:
            return TaskItem.get(task_pk(task_id), TASK_SK, consistent_read=True).request_token == token
        except DoesNotExist:
            return False

    def notice_once(self, pool: str, kind: str, *, pod: str, uid: str, detail: dict[str, Any], now: int) -> bool:
        """Record a refusal (`AdoptionRefused`, `PodOwnedByController`) in the history once per pod.

        The refusal repeats every run; the history should say it once. A marker item per kind and pod
        (by uid), written in one transaction with the history entry on the condition that it does not
        exist, says it has been said, whether or not the pool holds an item for the pod (a refused
        pod has none). It expires with the history entry, so a pod refused for weeks is recorded
        again then. True when this call recorded it. A transient failure (a conflict, a throttle)
        records nothing and returns False: the refusal repeats on the next run, and is recorded then.
        """
        token = new_token()
        marker = EventItem(
            pool_pk(pool), notice_sk(kind, pod, uid), kind=kind, at=now, detail={}, expires_at=now + self.event_ttl_s
        )
        tx = self._tx(token)
        tx.put("notice", marker, condition=EventItem.pk.does_not_exist())
        tx.put("event", self._event_item(pool, kind, {"pool": pool, **detail}, now, f"{pod}-{token[:EVENT_ID_DIGITS]}"))
        try:
            tx.commit()
            return True
        except StoreConflict:  # recorded before (its marker is there), or a transient failure
            return False

    @staticmethod
    def _same_listing(pod: Pod) -> Condition:
        """The last beat that listed the agent's tasks is the one that was read, and lists the same."""
        if pod.held_at is None:
            return PodItem.held_at.does_not_exist()
        held = list(pod.held_tasks)
        listed: Condition = (
            PodItem.held_tasks == held if held else PodItem.held_tasks.does_not_exist() | (PodItem.held_tasks == [])
        )
        same: Condition = (PodItem.held_at == pod.held_at) & listed
        return same
