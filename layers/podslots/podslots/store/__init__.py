"""The slot table: the only package that touches DynamoDB.

Every write that changes a slot is conditional on what the caller saw, so that two Lambdas racing
each other cannot double-book a slot or lose one (docs/architecture.md, "Protocols"). The store
speaks in `podslots.model` values; PynamoDB items never leave this package.

- `keys`, `items`, `conversions`: the table's layout and what its items mean;
- `transaction`: conditional writes, the labelled transaction, `StoreConflict`;
- `tasks`, `pods` (with `cordons`, `repairs`), `pools`, `arrivals`: one part of the store per
  aggregate; `SlotStore` is all of them.

Each step sees only its part of the store, through its own port (`podslots.ports`).
"""

from __future__ import annotations

from podslots.store.arrivals import ArrivalHistory
from podslots.store.cordons import PodCordons
from podslots.store.items import bind_table
from podslots.store.pools import PoolRegistry
from podslots.store.records import Lease, PoolEvent, PoolRecord, PoolState, RegisteredPool, Rollout
from podslots.store.repairs import PodRepairs
from podslots.store.tasks import TaskSlots
from podslots.store.transaction import StoreConflict, is_transient


class SlotStore(TaskSlots, PodCordons, PodRepairs, PoolRegistry, ArrivalHistory):
    """Reads and conditional writes of the slot table, in the vocabulary of the life cycle."""


__all__ = [
    "Lease",
    "PoolEvent",
    "PoolRecord",
    "PoolState",
    "RegisteredPool",
    "Rollout",
    "SlotStore",
    "StoreConflict",
    "bind_table",
    "is_transient",
]
