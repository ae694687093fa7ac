"""Pod items: their reads, the heartbeat, creation, the drain protocol, and what reconcile repairs."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action

from podslots.ids import new_token
from podslots.model import ADOPTED, EndedSlot, Pod, PodState, SlotStatus, TaskStatus, cordon_order, empty_slots
from podslots.settings import PoolSettings
from podslots.store.base import StoreBase
from podslots.store.conversions import free_slot, pod_from, pod_key, slot_doc, task_key
from podslots.store.items import EventItem, PodItem, PoolItem, TaskItem
from podslots.store.keys import CONFIG_SK, POD_PREFIX, TASK_SK, notice_sk, open_partition, pod_sk, pool_pk, task_pk
from podslots.store.transaction import CONDITION_FAILED, StoreConflict, condition_failed, conditional

CORDON_ATTEMPTS = 5  # a cordon that keeps meeting other cordons' writes reads and tries again

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

    def heartbeat(self, pool: str, pod: str, held_tasks: list[str] | None, reported_ip: str | None, now: int) -> Pod:
        """Record a beat; `starting` and `unhealthy` become `ready`. StoreConflict if draining/absent.

        `held_tasks` None: the agent could not say what it holds. The beat keeps the pod alive, but
        the last listing (`held_tasks`, `held_at`) stays as it was: reconcile judges leaks only from
        a beat that listed its tasks, and an empty list is such a beat ("holds nothing").

        The IP the agent reports is kept apart (`reported_ip`): `pod_ip`, which allocation hands to
        the task queue, is only ever what the cluster says (`observe_pod`), so a beat cannot point
        the queue at another address.

        A pod that is not cordoned opens to new tasks (`open_pool`); a cordoned one beats without
        opening. One write in the common case, a second only for a cordoned pod. An open pod keeps
        the partition it is in (`if_not_exists`): a beat never promotes an outdated pod that a
        roll-out made a second choice; one that reopens (after `unhealthy`) starts as a first choice
        until autoscale's next run ranks it again.

        `registered_at` is set by the first beat and kept: the answer's `registered_at == now` tells
        the caller that this beat registered the pod (or beat again within that second).
        """
        actions: list[Action] = [
            PodItem.heartbeat_at.set(now),
            PodItem.state.set(PodState.READY.value),
            PodItem.registered_at.set(PodItem.registered_at | now),  # kept from the first beat on
        ]
        if held_tasks is not None:
            actions += [PodItem.held_tasks.set(held_tasks), PodItem.held_at.set(now)]
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
            held_at=pod.held_at,
            last_used_at=pod.last_used_at,
            cordoned=pod.cordoned,
            revision=pod.revision,
            controller=pod.controller,
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
        Never a pod that a controller owns (as reconcile last saw it: the controller would recreate
        it, and it is that controller's to delete), nor an adopted pod whose agent has not yet beaten
        for this pool (it was running before podslots saw it; its `busy = 0` means "unknown", not idle).
        """
        if conditional(
            lambda: pod_key(pool, pod).update(
                actions=[PodItem.state.set(PodState.DRAINING.value), PodItem.open_pool.remove()],
                condition=PodItem.state.is_in(*(s.value for s in from_states))
                & (PodItem.busy == 0)
                & PodItem.controller.does_not_exist()
                & self._not_awaiting_beat(),
            )
        ):
            return True
        there = self.get_pod(pool, pod)
        return there is not None and there.state is PodState.DRAINING

    def cordon(self, pool: str, pod: str, reason: str) -> tuple[Pod | None, bool]:
        """Add `reason` to the pod's cordon reasons: it takes no new task; its tasks finish.

        Returns the pod as it now is (None if it is gone) and whether this call added the reason.
        A reason is added whatever others the pod already holds (a roll-out marks an outdated pod
        an operator cordoned, a deletion marks every pod), and each is only ever removed on its
        own, so none is lost to another. The set takes the reason with ADD; `cordoned`, the flag
        every other condition reads, is set in the same write to the strongest reason, on the
        condition that it is still what was read.
        """
        token = new_token()
        for attempt in range(CORDON_ATTEMPTS):
            current = self.get_pod(pool, pod)
            if current is not None and attempt and self._cordon_token(pool, pod) == token:
                return current, True  # a retry after a lost answer met this call's own write
            if current is None or reason in current.cordon_reasons:
                return current, False
            added = self._add_cordon(current, reason, token)
            if added is not None:
                return added, True
        raise StoreConflict({"pod": CONDITION_FAILED})

    def _cordon_token(self, pool: str, pod: str) -> str | None:
        """The token of the last cordon write on the pod (None if gone or never cordoned)."""
        try:
            item = PodItem.get(pool_pk(pool), pod_sk(pod), consistent_read=True, attributes_to_get=["cordon_token"])
        except DoesNotExist:
            return None
        return item.cordon_token

    def _add_cordon(self, pod: Pod, reason: str, token: str) -> Pod | None:
        """One conditional update adding the reason; None if the pod moved since it was read.

        The reason `cordoned` names goes into the set too: an item from before the set holds its
        reason there only, and the flag is about to name another. The condition pins the flag,
        so that reason still holds when it is written (re-adding one the set has is no change).
        """
        item = pod_key(pod.pool, pod.name)
        added = {reason} | ({pod.cordoned} if pod.cordoned is not None else set())
        shown = cordon_order(pod.cordon_reasons | {reason})[0]
        if conditional(
            lambda: item.update(
                actions=[
                    PodItem.cordons.add(added),
                    PodItem.cordoned.set(shown),
                    PodItem.open_pool.remove(),
                    PodItem.cordon_token.set(token),
                ],
                condition=self._same_pod(pod) & _flag_as_read(pod),
            )
        ):
            return pod_from(item)
        return None

    def uncordon(self, pod: Pod, reason: str, *, second_choice: bool = False) -> Pod | None:
        """Remove `reason` from the pod's cordon reasons, as they were read; None if the pod is gone.

        Conditional on the whole set as read (and the state and revision the reopening is decided
        from), and on the pool still taking pods: a pod of a pool being deleted never reopens,
        however the removal races the DELETE. The pod stays closed while any other reason holds;
        without one, a ready pod reopens, as a second choice if the caller says it is outdated.
        StoreConflict if anything moved (the caller reads again); a reason the pod does not hold
        is no change. Each cordon write leaves its token on the item (`cordon_token`), so a retry
        after a lost answer knows its own write.
        """
        if reason not in pod.cordon_reasons:
            return pod
        left = pod.cordon_reasons - {reason}
        token = new_token()
        tx = self._tx(token)
        actions = [*_removal(pod, reason, left, second_choice), PodItem.cordon_token.set(token)]
        tx.update("pod", pod_key(pod.pool, pod.name), actions, _set_as_read(pod))
        tx.condition_check("pool", PoolItem, pool_pk(pod.pool), CONFIG_SK, _takes_pods(None))
        try:
            tx.commit()
        except StoreConflict:
            if self._cordon_token(pod.pool, pod.name) != token:
                raise
            # the answer was lost and the retry met this call's own write: it is done
        return self.get_pod(pod.pool, pod.name)

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
                actions=self._end_actions(
                    TaskStatus.LOST, now, token, EndedSlot(pod.name, key, TaskStatus.LOST, reason)
                ),
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
        tx.delete("pod", pod_key(pod.pool, pod.name), condition=self._same_pod(pod) & self._same_slots(pod))
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
        for key, slot in sorted(pod.slots.items()):
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

    def record_controller(self, pod: Pod, controller: str | None) -> bool:
        """Record the controller that owns the pod (None: owned by none), as reconcile's LIST shows it,
        so the drain's condition refuses a controller's pod without a LIST of its own."""
        if controller == pod.controller:
            return False
        action = PodItem.controller.set(controller) if controller else PodItem.controller.remove()
        return self._conditional_update(pod, [action], self._same_pod(pod))

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
        tx.put("event", self._event_item(pool, kind, {"pool": pool, **detail}, now, f"{pod}-{token[:12]}"))
        try:
            tx.commit()
            return True
        except StoreConflict:  # recorded before (its marker is there), or a transient failure
            return False

    @staticmethod
    def _not_awaiting_beat() -> Condition:
        """The store's side of `Pod.awaiting_beat`: not adopted, or its agent has beaten for this pool."""
        adopted: Condition = PodItem.revision == ADOPTED
        awaiting: Condition = PodItem.revision.does_not_exist() | ~adopted | PodItem.heartbeat_at.exists()
        return awaiting

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

    @staticmethod
    def _same_pod(pod: Pod) -> Condition:
        """The item is still the one that was read (not a new pod that took the same name)."""
        return PodItem.created_at == pod.created_at

    def _conditional_update(self, pod: Pod, actions: list[Action], condition: Condition) -> bool:
        return conditional(lambda: pod_key(pod.pool, pod.name).update(actions=actions, condition=condition))


def _flag_as_read(pod: Pod) -> Condition:
    """`cordoned` is what was read (a concurrent cordon of a stronger reason changes it)."""
    return PodItem.cordoned == pod.cordoned if pod.cordoned is not None else PodItem.cordoned.does_not_exist()


def _set_as_read(pod: Pod) -> Condition:
    """The pod's cordon reasons, its state and revision are exactly as read, and it is the same pod."""
    stored: Condition = PodItem.cordons.does_not_exist()
    if pod.cordons:
        stored = size(PodItem.cordons) == len(pod.cordons)
        for reason in sorted(pod.cordons):
            stored &= PodItem.cordons.contains(reason)
    revision: Condition = PodItem.revision == pod.revision if pod.revision else PodItem.revision.does_not_exist()
    same: Condition = PodItem.created_at == pod.created_at
    state: Condition = PodItem.state == pod.state.value
    exact: Condition = same & _flag_as_read(pod) & stored & state & revision
    return exact


def _removal(pod: Pod, reason: str, left: frozenset[str], second_choice: bool) -> list[Action]:
    """The update that leaves `left`: the set and the flag together, and `open_pool` if it reopens.

    The set loses the reason with DELETE; an item from before the set (its reason in `cordoned`
    only) gets the whole set that is left, under the same condition on what was read.
    """
    if not left:
        actions: list[Action] = [PodItem.cordons.remove(), PodItem.cordoned.remove()]
        if pod.state is PodState.READY:
            actions.append(PodItem.open_pool.set(open_partition(pod.pool, second_choice)))
        return actions
    shown = cordon_order(left)[0]
    if left <= pod.cordons:
        return [PodItem.cordons.delete({reason}), PodItem.cordoned.set(shown)]
    return [PodItem.cordons.set(set(left)), PodItem.cordoned.set(shown)]


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
