"""Pod items: their reads, the heartbeat, creation, the drain, and what the scheduled steps record
of the cluster. A pod's cordons are `cordons.py`; what reconcile repairs (lost pods, leaked slots,
refusals recorded once) is `repairs.py`."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from podslots.ids import new_token
from podslots.model import ADOPTED, Pod, PodState
from podslots.store.base import StoreBase
from podslots.store.conversions import pod_from, pod_key, slot_doc
from podslots.store.items import PodItem, PoolItem
from podslots.store.keys import CONFIG_SK, POD_PREFIX, open_partition, pod_sk, pool_pk
from podslots.store.pod_conditions import same_pod, takes_pods
from podslots.store.transaction import StoreConflict, condition_failed, conditional


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
            condition=takes_pods(namespace),
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

    def rank(self, pod: Pod, second_choice: bool) -> bool:
        """Move an open pod between the first- and second-choice partitions of `open_slots`.

        Conditional on the pod being open and of the revision that was read, so a pod that closed
        (drained, cordoned, unhealthy) meanwhile is not reopened by this write.
        """
        revision = PodItem.revision == pod.revision if pod.revision else PodItem.revision.does_not_exist()
        return self._conditional_update(
            pod,
            [PodItem.open_pool.set(open_partition(pod.pool, second_choice))],
            PodItem.open_pool.exists() & PodItem.cordoned.does_not_exist() & revision & same_pod(pod),
        )

    def note(self, pod: Pod, note: str) -> bool:
        """Observe/paused: remember what podslots would do to this pod. True when the note is new."""
        return self._conditional_update(
            pod,
            [PodItem.noted.set(note)],
            same_pod(pod) & (PodItem.noted.does_not_exist() | (PodItem.noted != note)),
        )

    def remove_drained_pod(self, pool: str, pod: str) -> None:
        """Delete a drained pod's item (its Kubernetes pod is gone). Idempotent."""
        conditional(lambda: pod_key(pool, pod).delete(condition=PodItem.state == PodState.DRAINING.value))

    def remove_idle_pod(self, pod: Pod) -> bool:
        """Delete the item of a pod that holds nothing (a starting pod that never came up)."""
        return conditional(lambda: pod_key(pod.pool, pod.name).delete(condition=same_pod(pod) & (PodItem.busy == 0)))

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
        return self._conditional_update(pod, actions, same_pod(pod))

    def record_controller(self, pod: Pod, controller: str | None) -> bool:
        """Record the controller that owns the pod (None: owned by none), as reconcile's LIST shows it,
        so the drain's condition refuses a controller's pod without a LIST of its own."""
        if controller == pod.controller:
            return False
        action = PodItem.controller.set(controller) if controller else PodItem.controller.remove()
        return self._conditional_update(pod, [action], same_pod(pod))

    @staticmethod
    def _not_awaiting_beat() -> Condition:
        """The store's side of `Pod.awaiting_beat`: not adopted, or its agent has beaten for this pool."""
        adopted: Condition = PodItem.revision == ADOPTED
        awaiting: Condition = PodItem.revision.does_not_exist() | ~adopted | PodItem.heartbeat_at.exists()
        return awaiting

    def _conditional_update(self, pod: Pod, actions: list[Action], condition: Condition) -> bool:
        return conditional(lambda: pod_key(pod.pool, pod.name).update(actions=actions, condition=condition))
