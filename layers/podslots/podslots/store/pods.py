"""Pod items: their reads, the heartbeat, creation, the drain protocol, and what reconcile repairs."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from podslots.model import Pod, PodState, SlotStatus, TaskStatus, empty_slots
from podslots.store.base import StoreBase
from podslots.store.conversions import IDLE_DOC, pod_from, pod_key, slot_doc, task_key
from podslots.store.items import PodItem, TaskItem
from podslots.store.keys import POD_PREFIX, pod_sk, pool_pk
from podslots.store.transaction import condition_failed, conditional


class PodRecords(StoreBase):
    """Reads and conditional writes of pod items."""

    def pods(self, pool: str) -> list[Pod]:
        """Every pod item of a pool: one consistent Query (its pages)."""
        return [
            pod_from(item)
            for item in PodItem.query(pool_pk(pool), PodItem.sk.startswith(POD_PREFIX), consistent_read=True)
        ]

    def get_pod(self, pool: str, pod: str) -> Pod | None:
        try:
            return pod_from(PodItem.get(pool_pk(pool), pod_sk(pod), consistent_read=True))
        except DoesNotExist:
            return None

    def heartbeat(self, pool: str, pod: str, held_tasks: list[str], pod_ip: str | None, now: int) -> Pod:
        """Record a beat; `starting` and `unhealthy` become `ready`. StoreConflict if draining/absent."""
        actions: list[Action] = [
            PodItem.heartbeat_at.set(now),
            PodItem.held_tasks.set(held_tasks),
            PodItem.state.set(PodState.READY.value),
        ]
        if pod_ip:
            actions.append(PodItem.pod_ip.set(pod_ip))
        item = pod_key(pool, pod)
        condition_failed(
            "pod",
            lambda: item.update(
                actions=actions,
                condition=PodItem.state.is_in(PodState.STARTING.value, PodState.READY.value, PodState.UNHEALTHY.value),
            ),
        )
        return pod_from(item)  # PynamoDB refreshes the instance with ALL_NEW

    def put_pod(self, pod: Pod) -> None:
        """Create a pod item (a new pod starting, or an adopted one); never overwrites."""
        PodItem(
            pool_pk(pod.pool),
            pod_sk(pod.name),
            pool=pod.pool,
            name=pod.name,
            uid=pod.uid,
            state=pod.state.value,
            slots={k: slot_doc(s) for k, s in pod.slots.items()},
            busy=pod.busy,
            pod_ip=pod.pod_ip,
            created_at=pod.created_at,
            heartbeat_at=pod.heartbeat_at,
            held_tasks=list(pod.held_tasks),
            last_used_at=pod.last_used_at,
        ).save(condition=PodItem.pk.does_not_exist())

    def start_draining(self, pool: str, pod: str, from_states: tuple[PodState, ...]) -> bool:
        """`-> draining` only while nothing runs or is reserved on it. False if it became busy."""
        return conditional(
            lambda: pod_key(pool, pod).update(
                actions=[PodItem.state.set(PodState.DRAINING.value)],
                condition=PodItem.state.is_in(*(s.value for s in from_states)) & (PodItem.busy == 0),
            )
        )

    def remove_drained_pod(self, pool: str, pod: str) -> None:
        """Delete a drained pod's item (its Kubernetes pod is gone). Idempotent."""
        conditional(lambda: pod_key(pool, pod).delete(condition=PodItem.state == PodState.DRAINING.value))

    def lose_pod(self, pod: Pod, reason: str, now: int, event_id: str) -> list[tuple[str, str]]:
        """The pod is gone (vanished, failed, replaced): its tasks become `lost`, its item goes.

        One transaction: each task it held (conditional on still holding that slot), the pod item
        (conditional on being the item that was read), and a history entry per task. So a retry
        after a crash finds nothing left to lose, and no task is reported lost twice.
        Returns (slot, task_id) of each task lost; raises StoreConflict if anything moved.
        """
        tx = self._tx()
        lost: list[tuple[str, str]] = []
        for key, slot in sorted(pod.slots.items()):
            if slot.is_idle or slot.task_id is None:
                continue
            lost.append((key, slot.task_id))
            tx.update(
                f"task:{slot.task_id}",
                task_key(slot.task_id),
                actions=self._end_actions(TaskStatus.LOST, now),
                condition=(TaskItem.pod == pod.name)
                & (TaskItem.slot == key)
                & (TaskItem.pool == pod.pool)
                & TaskItem.status.is_in(TaskStatus.RUNNING.value, TaskStatus.APPLY_PENDING.value),
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
        tx.delete("pod", pod_key(pod.pool, pod.name), condition=self._same_pod(pod))
        tx.commit()
        return lost

    def release_leaked(self, pod: Pod, key: str, now: int, event_id: str) -> None:
        """Free a slot whose task the agent no longer holds; the task becomes `lost` (recorded)."""
        slot = pod.slots[key]
        assert slot.task_id and slot.task_type
        tx = self._tx()
        held = TaskStatus.APPLY_PENDING if slot.status is SlotStatus.RESERVED else TaskStatus.RUNNING
        tx.update(
            "task",
            task_key(slot.task_id),
            actions=self._end_actions(TaskStatus.LOST, now),
            condition=(TaskItem.status == held.value) & (TaskItem.pod == pod.name) & (TaskItem.slot == key),
        )
        tx.update(
            "slot",
            pod_key(pod.pool, pod.name),
            actions=[PodItem.slots[key].set(IDLE_DOC), PodItem.busy.set(PodItem.busy - 1)],
            condition=(PodItem.slots[key]["task_id"] == slot.task_id) & (PodItem.slots[key]["since"] == slot.since),
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
        tx.commit()

    def remove_idle_pod(self, pod: Pod) -> bool:
        """Delete the item of a pod that holds nothing (a starting pod that never came up)."""
        return conditional(
            lambda: pod_key(pod.pool, pod.name).delete(condition=self._same_pod(pod) & (PodItem.busy == 0))
        )

    def mark_unhealthy(self, pod: Pod) -> bool:
        """ready -> unhealthy, unless it beat meanwhile (the condition is on the beat we saw)."""
        beat = (
            PodItem.heartbeat_at == pod.heartbeat_at
            if pod.heartbeat_at is not None
            else PodItem.heartbeat_at.does_not_exist()
        )
        return self._conditional_update(
            pod, [PodItem.state.set(PodState.UNHEALTHY.value)], (PodItem.state == PodState.READY.value) & beat
        )

    def observe_pod(self, pod: Pod, uid: str | None, pod_ip: str | None) -> bool:
        """Record what the cluster says of the pod: its uid (first seen) and its IP."""
        actions: list[Action] = []
        if uid and uid != pod.uid:
            actions.append(PodItem.uid.set(uid))
        if pod_ip and pod_ip != pod.pod_ip:
            actions.append(PodItem.pod_ip.set(pod_ip))
        if not actions:
            return False
        return self._conditional_update(pod, actions, self._same_pod(pod))

    @staticmethod
    def _same_pod(pod: Pod) -> Condition:
        """The item is still the one that was read (not a new pod that took the same name)."""
        return PodItem.created_at == pod.created_at

    def _conditional_update(self, pod: Pod, actions: list[Action], condition: Condition) -> bool:
        return conditional(lambda: pod_key(pod.pool, pod.name).update(actions=actions, condition=condition))


def new_pod(pool: str, name: str, slots: int, now: int, uid: str | None = None) -> Pod:
    """A pod item as it starts: every slot idle, not yet beating."""
    return Pod(
        pool=pool,
        name=name,
        state=PodState.STARTING,
        slots=empty_slots(slots),
        uid=uid,
        created_at=now,
        last_used_at=now,
    )
