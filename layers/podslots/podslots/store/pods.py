"""Pod items: their reads, the heartbeat, creation, the drain protocol, and what reconcile repairs."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from podslots.model import Pod, PodState, SlotStatus, TaskStatus, empty_slots
from podslots.settings import PoolSettings
from podslots.store.base import StoreBase
from podslots.store.conversions import free_slot, pod_from, pod_key, slot_doc, task_key
from podslots.store.items import PodItem, PoolItem, TaskItem
from podslots.store.keys import CONFIG_SK, POD_PREFIX, open_partition, pod_sk, pool_pk
from podslots.store.transaction import StoreConflict, condition_failed, conditional, new_token

DEFAULT_NAMESPACE = PoolSettings.model_fields["namespace"].default


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

    def heartbeat(self, pool: str, pod: str, held_tasks: list[str], reported_ip: str | None, now: int) -> Pod:
        """Record a beat; `starting` and `unhealthy` become `ready`. StoreConflict if draining/absent.

        The IP the agent reports is kept apart (`reported_ip`): `pod_ip`, which allocation hands to
        the task queue, is only ever what the cluster says (`observe_pod`), so a beat cannot point
        the queue at another address.

        A pod that is not cordoned opens to new tasks (`open_pool`); a cordoned one beats without
        opening. One write in the common case, a second only for a cordoned pod. An open pod keeps
        the partition it is in (`if_not_exists`): a beat never promotes an outdated pod that a
        roll-out made a second choice; one that reopens (after `unhealthy`) starts as a first choice
        until autoscale's next run ranks it again.
        """
        actions: list[Action] = [
            PodItem.heartbeat_at.set(now),
            PodItem.held_tasks.set(held_tasks),
            PodItem.state.set(PodState.READY.value),
        ]
        if reported_ip:
            actions.append(PodItem.reported_ip.set(reported_ip))
        beating = PodItem.state.is_in(PodState.STARTING.value, PodState.READY.value, PodState.UNHEALTHY.value)
        item = pod_key(pool, pod)
        if not conditional(
            lambda: item.update(
                actions=[*actions, PodItem.open_pool.set(PodItem.open_pool | pool)],
                condition=beating & PodItem.cordoned.does_not_exist(),
            )
        ):
            condition_failed("pod", lambda: item.update(actions=actions, condition=beating))
        beaten = pod_from(item)  # PynamoDB refreshes the instance with ALL_NEW
        if item.idle is None or int(item.idle) != beaten.slot_count - beaten.busy:
            self._count_idle(beaten)  # an item written before `idle` existed: counted once
        return beaten

    def _count_idle(self, pod: Pod) -> None:
        """Set `idle` from the slots, conditional on `busy` being what was read."""
        conditional(
            lambda: pod_key(pod.pool, pod.name).update(
                actions=[PodItem.idle.set(pod.slot_count - pod.busy)], condition=PodItem.busy == pod.busy
            )
        )

    def put_pod(self, pod: Pod, *, namespace: str | None = None) -> bool:
        """Create a pod item (a new pod starting, or an adopted one); never overwrites.

        Only while the pool takes pods: its settings exist and it is not being deleted (a scale-up
        or an adoption racing a DELETE must not add a pod nothing will visit again), and, when
        `namespace` is given (the one the pod is created in, or was found in), the settings still
        name it (a scale-up racing a namespace change must not create a pod nothing will LIST). The
        same transaction bumps the pool's `pod_puts`, which a namespace change is conditional on.
        True when this call created it, also when a retry met its own earlier write; False when
        another caller's item is there. StoreConflict (label `pool`) when the pool takes no pods.
        """
        token = new_token()
        item = PodItem(
            pool_pk(pod.pool),
            pod_sk(pod.name),
            pool=pod.pool,
            name=pod.name,
            uid=pod.uid,
            state=pod.state.value,
            slots={k: slot_doc(s) for k, s in pod.slots.items()},
            busy=pod.busy,
            idle=pod.slot_count - pod.busy,
            pod_ip=pod.pod_ip,
            created_at=pod.created_at,
            heartbeat_at=pod.heartbeat_at,
            held_tasks=list(pod.held_tasks),
            last_used_at=pod.last_used_at,
            cordoned=pod.cordoned,
            revision=pod.revision,
            open_pool=open_partition(pod.pool, pod.second_choice) if pod.takes_tasks else None,
            request_token=token,
        )
        tx = self._tx(token)
        tx.put("pod", item, condition=PodItem.pk.does_not_exist())
        tx.update(
            "pool",
            PoolItem(pool_pk(pod.pool), CONFIG_SK),
            actions=[PoolItem.pod_puts.add(1)],
            condition=_takes_pods(namespace),
        )
        try:
            tx.commit()
            return True
        except StoreConflict as conflict:
            if not conflict.failed("pod"):
                raise
        try:
            there = PodItem.get(pool_pk(pod.pool), pod_sk(pod.name), consistent_read=True)
        except DoesNotExist:
            return False
        return there.request_token == token

    def start_draining(self, pool: str, pod: str, from_states: tuple[PodState, ...]) -> bool:
        """`-> draining` only while nothing runs or is reserved on it. False if it became busy.

        Draining closes the pod to new tasks; a retry that meets its own write finds it draining.
        """
        if conditional(
            lambda: pod_key(pool, pod).update(
                actions=[PodItem.state.set(PodState.DRAINING.value), PodItem.open_pool.remove()],
                condition=PodItem.state.is_in(*(s.value for s in from_states)) & (PodItem.busy == 0),
            )
        ):
            return True
        there = self.get_pod(pool, pod)
        return there is not None and there.state is PodState.DRAINING

    def cordon(self, pool: str, pod: str, reason: str) -> tuple[Pod | None, bool]:
        """The pod takes no new task; its running and reserved tasks finish.

        Returns the pod as it now is (None if it is gone) and whether this call cordoned it. A pod
        already cordoned keeps its first reason (a pool's deletion is never turned into a cordon
        an operator could take back), and a second cordon is no change.
        """
        item = pod_key(pool, pod)
        if conditional(
            lambda: item.update(
                actions=[PodItem.cordoned.set(reason), PodItem.open_pool.remove()],
                condition=PodItem.pk.exists() & PodItem.cordoned.does_not_exist(),
            )
        ):
            return pod_from(item), True
        return self.get_pod(pool, pod), False

    def uncordon(self, pool: str, pod: str, reason: str) -> Pod | None:
        """Take back a cordon of this reason: the pod may take tasks again (if ready). None if gone.

        The answer is the pod as it is: still cordoned when its cordon had another reason, or it is
        draining; the caller tells these apart. A ready pod reopens as a first choice; autoscale's
        next run makes it a second choice again if it is outdated.
        """
        item = pod_key(pool, pod)
        cordoned_so = PodItem.cordoned == reason
        if conditional(
            lambda: item.update(
                actions=[PodItem.cordoned.remove(), PodItem.open_pool.set(pool)],
                condition=cordoned_so & (PodItem.state == PodState.READY.value),
            )
        ) or conditional(
            lambda: item.update(
                actions=[PodItem.cordoned.remove()],
                condition=cordoned_so & PodItem.state.is_in(PodState.STARTING.value, PodState.UNHEALTHY.value),
            )
        ):
            return pod_from(item)
        return self.get_pod(pool, pod)

    def rank(self, pod: Pod, second_choice: bool) -> bool:
        """Move an open pod between the first- and second-choice partitions of `open_slots`.

        Conditional on the pod being open and of the revision that was read, so a pod that closed
        (drained, cordoned, unhealthy) meanwhile is not reopened by this write.
        """
        revision = PodItem.revision == pod.revision if pod.revision else PodItem.revision.does_not_exist()
        return self._conditional_update(
            pod,
            [PodItem.open_pool.set(open_partition(pod.pool, second_choice))],
            PodItem.open_pool.exists() & PodItem.cordoned.does_not_exist() & revision & self._same_pod(pod),
        )

    def note(self, pod: Pod, note: str) -> bool:
        """Observe/paused: remember what podslots would do to this pod. True when the note is new."""
        return self._conditional_update(
            pod,
            [PodItem.noted.set(note)],
            self._same_pod(pod) & (PodItem.noted.does_not_exist() | (PodItem.noted != note)),
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
        token = new_token()
        tx = self._tx(token)
        lost: list[tuple[str, str]] = []
        for key, slot in sorted(pod.slots.items()):
            if slot.is_idle or slot.task_id is None:
                continue
            lost.append((key, slot.task_id))
            tx.update(
                f"task:{slot.task_id}",
                task_key(slot.task_id),
                actions=self._end_actions(TaskStatus.LOST, now, token),
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
        token = new_token()
        tx = self._tx(token)
        held = TaskStatus.APPLY_PENDING if slot.status is SlotStatus.RESERVED else TaskStatus.RUNNING
        tx.update(
            "task",
            task_key(slot.task_id),
            actions=self._end_actions(TaskStatus.LOST, now, token),
            condition=(TaskItem.status == held.value) & (TaskItem.pod == pod.name) & (TaskItem.slot == key),
        )
        tx.update(
            "slot",
            pod_key(pod.pool, pod.name),
            actions=free_slot(key),
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
            pod,
            [PodItem.state.set(PodState.UNHEALTHY.value), PodItem.open_pool.remove()],
            (PodItem.state == PodState.READY.value) & beat,
        )

    def observe_pod(self, pod: Pod, uid: str | None, pod_ip: str | None, revision: str | None = None) -> bool:
        """Record what the cluster says of the pod: its uid (first seen), its IP, its revision."""
        actions: list[Action] = []
        if uid and uid != pod.uid:
            actions.append(PodItem.uid.set(uid))
        if pod_ip and pod_ip != pod.pod_ip:
            actions.append(PodItem.pod_ip.set(pod_ip))
        if revision and revision != pod.revision:
            actions.append(PodItem.revision.set(revision))
        if not actions:
            return False
        return self._conditional_update(pod, actions, self._same_pod(pod))

    @staticmethod
    def _same_pod(pod: Pod) -> Condition:
        """The item is still the one that was read (not a new pod that took the same name)."""
        return PodItem.created_at == pod.created_at

    def _conditional_update(self, pod: Pod, actions: list[Action], condition: Condition) -> bool:
        return conditional(lambda: pod_key(pod.pool, pod.name).update(actions=actions, condition=condition))


def _takes_pods(namespace: str | None) -> Condition:
    """The pool's settings exist, it is not being deleted, and (if given) they name this namespace."""
    condition: Condition = PoolItem.pk.exists() & (PoolItem.deleting == False)  # noqa: E712 (a DynamoDB condition)
    if namespace is None:
        return condition
    named: Condition = PoolItem.settings["namespace"] == namespace
    if namespace == DEFAULT_NAMESPACE:  # a document stored without it means the default
        named |= PoolItem.settings["namespace"].does_not_exist()
    both: Condition = condition & named
    return both


def new_pod(pool: str, name: str, slots: int, now: int, *, uid: str | None = None, revision: str | None = None) -> Pod:
    """A pod item as it starts: every slot idle, not yet beating."""
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
