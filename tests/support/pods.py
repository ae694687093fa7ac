"""Givens shared by tests: a pool with settings, pods that started and beat."""

from __future__ import annotations

import boto3

from local.kube_api import KubeApiStandIn
from podslots.cluster import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, REVISION_LABEL
from podslots.settings import PoolSettings, template_revision
from podslots.store import SlotStore, new_pod
from podslots.store.keys import pod_sk, pool_pk

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
    endpoint_url: str, table_name: str, kube: KubeApiStandIn | None, store: SlotStore, pool: str, count: int, now: int
) -> None:
    """`count` running pods in the cluster (when a cluster is given) and their ready, idle,
    just-beaten items, written in batches (a 1,000-pod pool in seconds): the given of the at-scale
    tests and benchmarks. The first pod goes through the store (`put_pod`, what reconcile observes, a
    first beat); the others are copies of its item with their own name, uid and IP, so the layout is
    always the store's own, never a copy of it here."""
    revision = template_revision(given_pool(store, pool, now=now, max_pods=count))
    labels = {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY, REVISION_LABEL: revision}
    table = boto3.resource("dynamodb", endpoint_url=endpoint_url).Table(table_name)

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
    item = table.get_item(Key={"pk": pool_pk(pool), "sk": pod_sk(name)}, ConsistentRead=True)["Item"]
    with table.batch_writer() as batch:
        for i in range(1, count):
            name, uid, ip = running_pod(i)
            batch.put_item(Item={**item, "sk": pod_sk(name), "name": name, "uid": uid, "pod_ip": ip, "reported_ip": ip})


def given_starting_pods_in_bulk(
    endpoint_url: str, table_name: str, store: SlotStore, pool: str, count: int, now: int, **settings: object
) -> None:
    """`count` pods just created and not yet beating (`starting`, so none is open to allocation),
    written in batches: a pool mid-way through a large scale-up. The first goes through the store
    (`put_pod`, what autoscale writes before a create); the others are copies of its item with their
    own name, so the layout is always the store's own."""
    given_pool(store, pool, now=now, **{"max_pods": count, **settings})
    table = boto3.resource("dynamodb", endpoint_url=endpoint_url).Table(table_name)
    store.put_pod(new_pod(pool, f"{pool}-0000", 3, now))
    item = table.get_item(Key={"pk": pool_pk(pool), "sk": pod_sk(f"{pool}-0000")}, ConsistentRead=True)["Item"]
    with table.batch_writer() as batch:
        for i in range(1, count):
            name = f"{pool}-{i:04d}"
            batch.put_item(Item={**item, "sk": pod_sk(name), "name": name})
