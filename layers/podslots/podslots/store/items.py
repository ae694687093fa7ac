"""The table's item kinds, as PynamoDB models, and the binding of all of them to one table.

These classes never leave the store package: the steps see `podslots.model` values only.
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model


class Item(Model):
    """Base of every item kind: the table is bound at run time by `bind_table`."""

    class Meta:
        table_name = os.environ.get("TABLE_NAME", "podslots")
        region = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        host = os.environ.get("DYNAMODB_ENDPOINT") or None
        max_retry_attempts = 3
        connect_timeout_seconds = 2
        read_timeout_seconds = 5

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class ReservationIndex(GlobalSecondaryIndex["TaskItem"]):
    """Sparse: only reserved tasks carry `rsv_pool`/`rsv_until`, so expiry reads just those."""

    class Meta:
        index_name = "reservations"
        projection = AllProjection()

    rsv_pool = UnicodeAttribute(hash_key=True)
    rsv_until = NumberAttribute(range_key=True)


class WaitingIndex(GlobalSecondaryIndex["TaskItem"]):
    """Sparse: only tasks that asked and found no slot carry `wait_pool`/`wait_since`."""

    class Meta:
        index_name = "waiting"
        projection = AllProjection()

    wait_pool = UnicodeAttribute(hash_key=True)
    wait_since = NumberAttribute(range_key=True)


class OpenSlotsIndex(GlobalSecondaryIndex["PodItem"]):
    """Sparse: only pods that may take a new task carry `open_pool`; `idle` orders them fullest first.

    Allocation reads the first few items with `idle > 0`, so its read stays flat however large the
    pool. The index is eventually consistent: it only proposes; the conditional write on the pod
    item decides.
    """

    class Meta:
        index_name = "open_slots"
        projection = AllProjection()

    open_pool = UnicodeAttribute(hash_key=True)
    idle = NumberAttribute(range_key=True)


class PodItem(Item):
    pool = UnicodeAttribute()
    name = UnicodeAttribute()
    uid = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    slots = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    busy = NumberAttribute(default=0)
    pod_ip = UnicodeAttribute(null=True)  # the cluster's word (reconcile, autoscale's create), never a beat's
    reported_ip = UnicodeAttribute(null=True)  # what the agent's last beat claimed; never handed out
    created_at = NumberAttribute()
    heartbeat_at = NumberAttribute(null=True)
    registered_at = NumberAttribute(null=True)  # the first beat since the item was written (PodRegistered)
    held_tasks = ListAttribute[str](null=True)  # as the last beat that listed them said
    held_at = NumberAttribute(null=True)  # when that beat came: a beat without a list leaves both
    last_used_at = NumberAttribute(default=0)
    idle = NumberAttribute(null=True)  # idle slots: every write that moves `busy` moves this the other way
    open_pool = UnicodeAttribute(null=True)  # set while ready and not cordoned (the open_slots index)
    # Closed to new tasks (its tasks finish): present exactly while the pod holds a cordon reason, and
    # naming the strongest; every condition that asks "closed?" reads this one.
    cordoned = UnicodeAttribute(null=True)
    cordons = UnicodeSetAttribute(null=True)  # every reason it is cordoned for (a string set; ADD/DELETE)
    cordon_token = UnicodeAttribute(null=True)  # the last cordon write: a retry after a lost answer knows it
    revision = UnicodeAttribute(null=True)  # the template revision it was made from
    noted = UnicodeAttribute(null=True)  # observe/paused: what podslots last recorded it would do to it
    request_token = UnicodeAttribute(null=True)  # the put that created it: a retry recognises itself
    controller = UnicodeAttribute(null=True)  # `Kind/name` of its controller (reconcile's LIST): never drained
    placed = NumberAttribute(null=True)  # tasks placed on it (an ADD in allocation's write): prewarm's count
    open_slots = OpenSlotsIndex()


class TaskItem(Item):
    task_id = UnicodeAttribute()
    pool = UnicodeAttribute()
    task_type = UnicodeAttribute()
    status = UnicodeAttribute()
    pod = UnicodeAttribute(null=True)
    slot = UnicodeAttribute(null=True)
    pod_ip = UnicodeAttribute(null=True)
    allocated_at = NumberAttribute(null=True)
    updated_at = NumberAttribute()
    rsv_pool = UnicodeAttribute(null=True)
    rsv_until = NumberAttribute(null=True)
    wait_pool = UnicodeAttribute(null=True)
    wait_since = NumberAttribute(null=True)
    signalled_at = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)  # the table's TTL attribute, set once a task ends
    request_token = UnicodeAttribute(null=True)  # the write that last moved it: a retry recognises itself
    # {pod, slot, status, reason}: the slot podslots took from it (lost, expired); gone once placed again
    ended = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]
    # The principal that allocated it (a role, without the session): only it may read or move the task.
    # Absent on items stored before owners were recorded: those stay open to every task-queue caller.
    owner = UnicodeAttribute(null=True)
    reservations = ReservationIndex()
    waiting = WaitingIndex()


class PoolItem(Item):
    pool = UnicodeAttribute()
    settings = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    deleting = BooleanAttribute(default=False)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    request_token = UnicodeAttribute(null=True)  # the PUT that wrote it: a retry recognises itself
    # Pod items ever put into the pool (bumped by each put, in its transaction): a namespace change
    # is conditional on it, so no pod item can slip in between its check and its write.
    pod_puts = NumberAttribute(null=True)


class RegistryItem(Item):
    """One per pool under one key: the scheduled functions read every pool's settings in one Query."""

    pool = UnicodeAttribute()
    settings = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]
    deleting = BooleanAttribute(default=False)
    # The last figures recorded in the pool's history.
    figures = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]


class EventItem(Item):
    kind = UnicodeAttribute()
    at = NumberAttribute()
    detail = MapAttribute[str, Any]()  # type: ignore[no-untyped-call]
    expires_at = NumberAttribute(null=True)


class LeaseItem(Item):
    """One autoscale run per pool at a time; a crashed run's lease expires at its deadline."""

    holder = UnicodeAttribute()
    deadline = NumberAttribute()
    low_since = NumberAttribute(null=True)  # since when utilization has stayed below the down threshold
    rollout = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]  # {revision, started_at} while rolling
    noted = UnicodeAttribute(null=True)  # observe/paused: the scale step it last recorded it would take
    # Starting pods as the last autoscale run that wrote left them: allocation's 503 chooses its
    # Retry-After from this one item, never from the pool's pod items.
    starting = NumberAttribute(null=True)


class ArrivalsItem(Item):
    """One per pool (prewarm): tasks an hour by hour of the week, folded once an hour by autoscale."""

    hour = NumberAttribute()  # the epoch hour being counted
    rates = ListAttribute[Any](null=True)  # 168 numbers (or null: an hour never seen), Monday 00:00 UTC first
    seen = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]  # pod -> its `placed` at the fold


ITEM_KINDS: tuple[type[Item], ...] = (
    PodItem,
    TaskItem,
    PoolItem,
    RegistryItem,
    EventItem,
    LeaseItem,
    ArrivalsItem,
)
binding = {"generation": 0}


def bind_table(table_name: str, host: str | None = None, region: str | None = None) -> None:
    """Point every item kind at one table (tests and the local stack use their own endpoint)."""
    for kind in ITEM_KINDS:
        kind.Meta.table_name = table_name
        kind.Meta.host = host
        if region:
            kind.Meta.region = region
        kind._connection = None  # PynamoDB caches the connection per class
    binding["generation"] += 1
