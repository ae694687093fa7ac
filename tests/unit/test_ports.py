"""The store satisfies every step's port, and each step asks for its own port, not the whole store.

mypy checks `_every_port`'s assignments (a method missing or typed differently fails the type check);
the tests check the same at run time, signature by signature, and that no step module names the
concrete store.
"""

from __future__ import annotations

import inspect
import re
from typing import get_protocol_members

import pytest

from local.template import ROOT
from podslots import ports
from podslots.store import SlotStore

PORTS = [
    ports.AllocationStore,
    ports.TaskStatusStore,
    ports.HeartbeatStore,
    ports.PoolRegistryStore,
    ports.ExpiryStore,
    ports.ReconcileStore,
    ports.AutoscaleStore,
    ports.PoolRounds,
    ports.PoolNames,
    ports.Notices,
]
STEPS = [
    "allocation",
    "held_slots",
    "tasks",
    "heartbeat",
    "pools",
    "expiry",
    "reconcile",
    "autoscale",
    "pool_order",
    "pool_guard",
    "fanout",
]


def _every_port(store: SlotStore) -> list[object]:
    """Typed assignments: the type checker's proof that a SlotStore is each port."""
    allocation: ports.AllocationStore = store
    task_status: ports.TaskStatusStore = store
    heartbeat: ports.HeartbeatStore = store
    registry: ports.PoolRegistryStore = store
    expiry: ports.ExpiryStore = store
    reconcile: ports.ReconcileStore = store
    autoscale: ports.AutoscaleStore = store
    rounds: ports.PoolRounds = store
    names: ports.PoolNames = store
    notices: ports.Notices = store
    return [allocation, task_status, heartbeat, registry, expiry, reconcile, autoscale, rounds, names, notices]


@pytest.mark.parametrize("port", PORTS, ids=lambda p: p.__name__)
def test_the_store_has_every_method_of_a_port_with_its_signature(port: type):
    # Given a port, When each of its members is looked up on the store, Then it is there, called alike
    members = get_protocol_members(port)
    assert members, f"{port.__name__} names no method"
    for name in sorted(members):
        wanted = inspect.signature(getattr(port, name))
        found = inspect.signature(getattr(SlotStore, name))
        assert str(found) == str(wanted), f"{port.__name__}.{name}: the store has {found}, the port {wanted}"


def test_every_port_is_narrower_than_the_store():
    # Given the store's public methods, Then no single port asks for all of them
    public = {n for n in dir(SlotStore) if not n.startswith("_") and callable(getattr(SlotStore, n))}
    for port in PORTS:
        assert get_protocol_members(port) < public, port.__name__


@pytest.mark.parametrize("step", STEPS)
def test_a_step_is_typed_against_its_port_not_the_concrete_store(step: str):
    # Given a step module's source, Then it never names SlotStore (it asks for its port instead)
    source = (ROOT / "layers/podslots/podslots" / f"{step}.py").read_text()
    assert "from podslots.ports import" in source, step
    assert not re.search(r"\bSlotStore\b", source), step
