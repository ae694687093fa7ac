"""A pod's cordon reasons: each added and removed on its own, so none is lost to another
(docs/architecture.md, "Cordons"). `cordoned`, the flag every "closed?" condition reads, is written
with the set, to the strongest reason."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action

from podslots.ids import new_token
from podslots.model import Pod, PodState, cordon_order
from podslots.store.conversions import pod_from, pod_key
from podslots.store.items import PodItem, PoolItem
from podslots.store.keys import CONFIG_SK, open_partition, pod_sk, pool_pk
from podslots.store.pod_conditions import same_pod, takes_pods
from podslots.store.pods import PodRecords
from podslots.store.transaction import CONDITION_FAILED, StoreConflict, conditional

CORDON_ATTEMPTS = 5  # a cordon that keeps meeting other cordons' writes reads and tries again


class PodCordons(PodRecords):
    """Cordon and uncordon a pod item."""

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
                condition=same_pod(pod) & _flag_as_read(pod),
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
        tx.condition_check("pool", PoolItem, pool_pk(pod.pool), CONFIG_SK, takes_pods(None))
        try:
            tx.commit()
        except StoreConflict:
            if self._cordon_token(pod.pool, pod.name) != token:
                raise
            # the answer was lost and the retry met this call's own write: it is done
        return self.get_pod(pod.pool, pod.name)


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
