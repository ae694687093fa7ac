"""Givens shared by tests: a pool with settings, pods that started and beat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from local.kube_api import KubeApiStandIn
from podslots.model import new_pod
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, REVISION_LABEL
from podslots.settings import PoolSettings, template_revision
from podslots.store import SlotStore
from podslots.store.conversions import pod_key
from podslots.store.items import PodItem

AGENT_IMAGE = "registry.example/tf-agent:1.9"


def given_pool(store: SlotStore, pool: str = "terraform", now: int = 1, **settings: object) -> PoolSettings:
    document = {"pod_template": {"image": AGENT_IMAGE}, **settings}
    value = PoolSettings.model_validate(document)
    store.put_pool(pool, value, now)
    return value


def given_ready_pods(
    store: SlotStore, pool: str = "terraform", count: int = 1, slots: int = 3, now: int = 1
) -> list[str]:
    """Pods whose item exists, whose IP the cluster reported, and whose agent has sent its first
    beat (so they take tasks)."""
    names = []
    for i in range(count):
        name, ip = f"{pool}-{i:04d}", f"10.0.0.{i % 250 + 1}"
        pod = new_pod(pool, name, slots, now, uid=f"uid-{name}")
        store.put_pod(pod)
        store.observe_pod(pod, pod.uid, ip)  # what reconcile records from the cluster
        store.heartbeat(pool, name, [], ip, now)
        names.append(name)
    return names


def given_idle_ready_pods_in_bulk(
    kube: KubeApiStandIn | None, store: SlotStore, pool: str, count: int, now: int
) -> None:
    """`count` running pods in the cluster (when a cluster is given) and their ready, idle,
    just-beaten items, written in batches (a 1,000-pod pool in seconds): the given of the at-scale
    tests and benchmarks. The first pod goes through the store (`put_pod`, what reconcile observes, a
    first beat); the others are copies of its item with their own name, uid and IP, keyed and
    written by the store's own item model, so the layout is always the store's, never a copy of it here."""
    revision = template_revision(given_pool(store, pool, now=now, max_pods=count))
    labels = {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY, REVISION_LABEL: revision}

    def running_pod(i: int) -> tuple[str, str, str]:
        name, ip = f"{pool}-{i:04d}", f"10.{i // 62500}.{i // 250 % 250}.{i % 250}"
        uid = f"uid-{name}"
        if kube is not None:
            created = kube.add_pod(
                "agents",
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "x"}]},
                    "status": {"phase": "Running", "podIP": ip},
                },
            )
            uid = created["metadata"]["uid"]
        return name, uid, ip

    name, uid, ip = running_pod(0)
    first = new_pod(pool, name, 3, now, uid=uid, revision=revision)
    store.put_pod(first)
    store.observe_pod(first, uid, ip)
    store.heartbeat(pool, name, [], ip, now)
    copies = []
    for i in range(1, count):
        name, uid, ip = running_pod(i)
        copies.append({"name": name, "uid": uid, "pod_ip": ip, "reported_ip": ip})
    _write_copies(pool, f"{pool}-0000", copies)


def given_starting_pods_in_bulk(store: SlotStore, pool: str, count: int, now: int, **settings: object) -> None:
    """`count` pods just created and not yet beating (`starting`, so none is open to allocation),
    written in batches: a pool mid-way through a large scale-up. The first goes through the store
    (`put_pod`, what autoscale writes before a create); the others are copies of its item with their
    own name, keyed and written by the store's own item model, so the layout is always the store's."""
    given_pool(store, pool, now=now, **{"max_pods": count, **settings})
    store.put_pod(new_pod(pool, f"{pool}-0000", 3, now))
    _write_copies(pool, f"{pool}-0000", [{"name": f"{pool}-{i:04d}"} for i in range(1, count)])


def _write_copies(pool: str, first: str, changes: Sequence[Mapping[str, object]]) -> None:
    """Copies of the pod item `first`, one per change (each names its pod), in batches.

    The item is read and each copy keyed (`pod_key`) and written (`PodItem.batch_write`) by the
    store's own item model: no key or attribute layout is spelled out here.
    """
    template = pod_key(pool, first)
    template.refresh(consistent_read=True)
    with PodItem.batch_write() as batch:
        for change in changes:
            copy = pod_key(pool, str(change["name"]))
            for attribute, value in template.attribute_values.items():
                if attribute not in copy.attribute_values:  # its own keys stay
                    setattr(copy, attribute, value)
            for attribute, value in change.items():
                setattr(copy, attribute, value)
            batch.save(copy)
