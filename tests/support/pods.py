"""Givens shared by tests: a pool with settings, pods that started and beat."""

from __future__ import annotations

from podslots.settings import PoolSettings
from podslots.store import SlotStore, new_pod

AGENT_IMAGE = "registry.example/tf-agent:1.9"


def given_pool(store: SlotStore, pool: str = "terraform", now: int = 1, **settings: object) -> PoolSettings:
    document = {"pod_template": {"image": AGENT_IMAGE}, **settings}
    value = PoolSettings.model_validate(document)
    store.put_pool(pool, value, now)
    return value


def given_ready_pods(
    store: SlotStore, pool: str = "terraform", count: int = 1, slots: int = 3, now: int = 1
) -> list[str]:
    """Pods whose item exists and whose agent has sent its first beat (so they take tasks)."""
    names = []
    for i in range(count):
        name = f"{pool}-{i:04d}"
        store.put_pod(new_pod(pool, name, slots, now, uid=f"uid-{name}"))
        store.heartbeat(pool, name, [], f"10.0.0.{i % 250 + 1}", now)
        names.append(name)
    return names
