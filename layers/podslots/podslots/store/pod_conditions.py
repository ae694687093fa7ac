"""Conditions on a pod item that more than one part of the store writes under."""

from __future__ import annotations

from pynamodb.expressions.condition import Condition

from podslots.model import Pod
from podslots.settings import PoolSettings
from podslots.store.items import PodItem, PoolItem

DEFAULT_NAMESPACE = PoolSettings.model_fields["namespace"].default


def same_pod(pod: Pod) -> Condition:
    """The item is still the one that was read (not a new pod that took the same name)."""
    return PodItem.created_at == pod.created_at


def takes_pods(namespace: str | None) -> Condition:
    """The pool's settings exist, it is not being deleted, and (if given) they name this namespace."""
    condition: Condition = PoolItem.pk.exists() & (PoolItem.deleting == False)  # noqa: E712 (a DynamoDB condition)
    if namespace is None:
        return condition
    named: Condition = PoolItem.settings["namespace"] == namespace
    if namespace == DEFAULT_NAMESPACE:  # a document stored without it means the default
        named |= PoolItem.settings["namespace"].does_not_exist()
    both: Condition = condition & named
    return both
