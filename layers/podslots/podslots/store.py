"""The slot table: the only module that touches DynamoDB.

Every write that changes a slot is conditional on what the caller saw, so that two Lambdas racing
each other cannot double-book a slot or lose one:

- allocation is one transaction: the task item (it does not exist, or it may be re-dispatched),
  the slot (pod `ready`, slot `idle`, `busy + 1`) and a check that the pool still takes work;
- reserve, resume and release are transactions conditional on the slot still holding that task;
- draining (`ready -> draining`) requires `busy = 0`, and allocation requires `ready`.

The store speaks in `podslots.model` values; PynamoDB items never leave this module.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DeleteError,
    DoesNotExist,
    PutError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from podslots.model import (
    Pod,
    PodState,
    Slot,
    SlotStatus,
    Task,
    TaskStatus,
    TaskType,
    empty_slots,
)
from podslots.settings import PoolSettings

POOL_PREFIX = "POOL#"
POD_PREFIX = "POD#"
TASK_PREFIX = "TASK#"
EVENT_PREFIX = "EVENT#"
CONFIG_SK = "#CONFIG"
TASK_SK = "#TASK"
REGISTRY_PK = "POOLS"
LEASE_SK = "#LEASE#autoscale"  # one item per pool under one key, so listing pools is a Query, not a Scan


def pool_pk(pool: str) -> str:
    return f"{POOL_PREFIX}{pool}"


def pod_sk(pod: str) -> str:
    return f"{POD_PREFIX}{pod}"


def task_pk(task_id: str) -> str:
    return f"{TASK_PREFIX}{task_id}"


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


class _Item(Model):
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


class PodItem(_Item):
    pool = UnicodeAttribute()
    name = UnicodeAttribute()
    uid = UnicodeAttribute(null=True)
    state = UnicodeAttribute()
    slots = MapAttribute[str, Any]()
    busy = NumberAttribute(default=0)
    pod_ip = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    heartbeat_at = NumberAttribute(null=True)
    held_tasks = ListAttribute[str](null=True)
    last_used_at = NumberAttribute(default=0)


class TaskItem(_Item):
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
    reservations = ReservationIndex()
    waiting = WaitingIndex()


class PoolItem(_Item):
    pool = UnicodeAttribute()
    settings = MapAttribute[str, Any]()
    deleting = BooleanAttribute(default=False)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()


class RegistryItem(_Item):
    """One per pool under one key: the scheduled functions read every pool's settings in one Query."""

    pool = UnicodeAttribute()
    settings = MapAttribute[str, Any](null=True)
    deleting = BooleanAttribute(default=False)
    figures = MapAttribute[str, Any](null=True)  # the last figures recorded in the pool's history


class EventItem(_Item):
    kind = UnicodeAttribute()
    at = NumberAttribute()
    detail = MapAttribute[str, Any]()
    expires_at = NumberAttribute(null=True)


class LeaseItem(_Item):
    """One autoscale run per pool at a time; a crashed run's lease expires at its deadline."""

    holder = UnicodeAttribute()
    deadline = NumberAttribute()
    low_since = NumberAttribute(null=True)  # since when utilization has stayed below the down threshold


ITEM_KINDS: tuple[type[_Item], ...] = (PodItem, TaskItem, PoolItem, RegistryItem, EventItem, LeaseItem)
_binding = {"generation": 0}


def bind_table(table_name: str, host: str | None = None, region: str | None = None) -> None:
    """Point every item kind at one table (tests and the local stack use their own endpoint)."""
    for kind in ITEM_KINDS:
        kind.Meta.table_name = table_name
        kind.Meta.host = host
        if region:
            kind.Meta.region = region
        kind._connection = None  # PynamoDB caches the connection per class
    _binding["generation"] += 1


# --------------------------------------------------------------------------------------------
# Outcomes the steps act on
# --------------------------------------------------------------------------------------------


class StoreConflict(Exception):
    """A conditional write lost: `reasons` names each item whose condition failed."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in reasons.items()) or "conflict")
        self.reasons = reasons

    def failed(self, label: str) -> bool:
        return self.reasons.get(label) == "ConditionalCheckFailed"


@dataclass(frozen=True)
class PoolRecord:
    name: str
    settings: PoolSettings
    deleting: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Lease:
    pool: str
    holder: str
    low_since: int | None


@dataclass(frozen=True)
class RegisteredPool:
    name: str
    settings: PoolSettings
    deleting: bool
    figures: dict[str, Any] | None


@dataclass(frozen=True)
class PoolEvent:
    kind: str
    at: int
    detail: dict[str, Any]


class _LabelledTransaction:
    """A TransactWrite that remembers which item is which.

    DynamoDB answers a cancelled transaction with one reason per item, in request order; PynamoDB
    sends its items grouped by kind (condition checks, deletes, puts, updates), not in call order.
    So each item is labelled, and the labels are put in PynamoDB's order to read the reasons.
    """

    _ORDER = ("condition_check", "delete", "put", "update")

    def __init__(self, connection: Connection, token: str | None = None) -> None:
        self._tx = TransactWrite(connection=connection, client_request_token=token)
        self._labels: dict[str, list[str]] = {kind: [] for kind in self._ORDER}

    def condition_check(self, label: str, kind: type[_Item], pk: str, sk: str, condition: Condition) -> None:
        self._tx.condition_check(kind, pk, sk, condition=condition)
        self._labels["condition_check"].append(label)

    def put(self, label: str, item: _Item, condition: Condition | None = None) -> None:
        self._tx.save(item, condition=condition)
        self._labels["put"].append(label)

    def update(self, label: str, item: _Item, actions: list[Action], condition: Condition | None) -> None:
        self._tx.update(item, actions=actions, condition=condition)
        self._labels["update"].append(label)

    def delete(self, label: str, item: _Item, condition: Condition | None = None) -> None:
        self._tx.delete(item, condition=condition)
        self._labels["delete"].append(label)

    def commit(self) -> None:
        try:
            self._tx._commit()
        except TransactWriteError as exc:
            if exc.cause_response_code not in ("TransactionCanceledException",):
                raise
            order = [label for kind in self._ORDER for label in self._labels[kind]]
            reasons = {
                label: reason.code
                for label, reason in zip(order, exc.cancellation_reasons, strict=False)
                if reason is not None
            }
            raise StoreConflict(reasons) from exc


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------


def _slot_from(raw: dict[str, Any]) -> Slot:
    return Slot(
        status=SlotStatus(raw.get("status", "idle")),
        task_id=raw.get("task_id"),
        task_type=TaskType(raw["task_type"]) if raw.get("task_type") else None,
        since=int(raw["since"]) if raw.get("since") is not None else None,
        reserved_until=int(raw["reserved_until"]) if raw.get("reserved_until") is not None else None,
    )


def _slot_doc(slot: Slot) -> dict[str, Any]:
    doc: dict[str, Any] = {"status": slot.status.value}
    if slot.task_id is not None:
        doc["task_id"] = slot.task_id
    if slot.task_type is not None:
        doc["task_type"] = slot.task_type.value
    if slot.since is not None:
        doc["since"] = slot.since
    if slot.reserved_until is not None:
        doc["reserved_until"] = slot.reserved_until
    return doc


IDLE_DOC = {"status": SlotStatus.IDLE.value}


def _pod_from(item: PodItem) -> Pod:
    raw_slots = item.slots.as_dict() if isinstance(item.slots, MapAttribute) else dict(item.slots)
    return Pod(
        pool=item.pool,
        name=item.name,
        state=PodState(item.state),
        slots={key: _slot_from(dict(value)) for key, value in raw_slots.items()},
        uid=item.uid,
        pod_ip=item.pod_ip,
        created_at=int(item.created_at),
        heartbeat_at=int(item.heartbeat_at) if item.heartbeat_at is not None else None,
        held_tasks=tuple(item.held_tasks or ()),
        last_used_at=int(item.last_used_at or 0),
    )


def _task_from(item: TaskItem) -> Task:
    return Task(
        task_id=item.task_id,
        pool=item.pool,
        task_type=TaskType(item.task_type),
        status=TaskStatus(item.status),
        pod=item.pod,
        slot=item.slot,
        allocated_at=int(item.allocated_at) if item.allocated_at is not None else None,
        updated_at=int(item.updated_at),
        reserved_until=int(item.rsv_until) if item.rsv_until is not None else None,
        waiting_since=int(item.wait_since) if item.wait_since is not None else None,
        shortage_signalled_at=int(item.signalled_at) if item.signalled_at is not None else None,
        pod_ip=item.pod_ip,
    )


def _pod_key(pool: str, pod: str) -> PodItem:
    return PodItem(pool_pk(pool), pod_sk(pod))


def _task_key(task_id: str) -> TaskItem:
    return TaskItem(task_pk(task_id), TASK_SK)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class SlotStore:
    """Reads and conditional writes of the slot table, in the vocabulary of the life cycle."""

    def __init__(self, event_ttl_s: int = 14 * 86400, task_ttl_s: int = 30 * 86400) -> None:
        self.event_ttl_s = event_ttl_s
        self.task_ttl_s = task_ttl_s
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._conn_generation = -1

    def _connection(self) -> Connection:
        """One PynamoDB connection for transactions, built once (botocore clients are thread-safe)."""
        with self._lock:
            if self._conn is None or self._conn_generation != _binding["generation"]:
                self._conn = Connection(
                    region=PodItem.Meta.region,
                    host=PodItem.Meta.host,
                    max_retry_attempts=PodItem.Meta.max_retry_attempts,
                    connect_timeout_seconds=PodItem.Meta.connect_timeout_seconds,
                    read_timeout_seconds=PodItem.Meta.read_timeout_seconds,
                )
                self._conn.client  # noqa: B018 (build the botocore client now, under the lock)
                self._conn_generation = _binding["generation"]
            return self._conn

    def _tx(self, token: str | None = None) -> _LabelledTransaction:
        return _LabelledTransaction(self._connection(), token)

    # ---- reads -------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task | None:
        try:
            return _task_from(TaskItem.get(task_pk(task_id), TASK_SK, consistent_read=True))
        except DoesNotExist:
            return None

    def pods(self, pool: str) -> list[Pod]:
        """Every pod item of a pool: one consistent Query (its pages)."""
        return [
            _pod_from(item)
            for item in PodItem.query(pool_pk(pool), PodItem.sk.startswith(POD_PREFIX), consistent_read=True)
        ]

    def get_pod(self, pool: str, pod: str) -> Pod | None:
        try:
            return _pod_from(PodItem.get(pool_pk(pool), pod_sk(pod), consistent_read=True))
        except DoesNotExist:
            return None

    def get_pool(self, pool: str) -> PoolRecord | None:
        try:
            item = PoolItem.get(pool_pk(pool), CONFIG_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return PoolRecord(
            name=item.pool,
            settings=PoolSettings.from_stored(item.settings.as_dict()),
            deleting=bool(item.deleting),
            created_at=int(item.created_at),
            updated_at=int(item.updated_at),
        )

    def list_pools(self) -> list[str]:
        return [item.pool for item in RegistryItem.query(REGISTRY_PK, consistent_read=True)]

    def events(self, pool: str, limit: int) -> list[PoolEvent]:
        items: Iterator[EventItem] = EventItem.query(
            pool_pk(pool),
            EventItem.sk.startswith(EVENT_PREFIX),
            scan_index_forward=False,
            limit=limit,
        )
        return [PoolEvent(i.kind, int(i.at), i.detail.as_dict()) for i in items]

    # ---- allocation ---------------------------------------------------------------------------

    def allocate(self, task: Task, pod: Pod, slot: str, previous: Task | None, now: int) -> None:
        """Put the task in the slot, atomically. Raises StoreConflict naming what moved.

        `previous` is the task item the caller read (None if there was none): a re-dispatch of a
        lost, expired or waiting task is conditional on it still being in that status.
        """
        tx = self._tx()
        item = TaskItem(
            task_pk(task.task_id),
            TASK_SK,
            task_id=task.task_id,
            pool=task.pool,
            task_type=task.task_type.value,
            status=TaskStatus.RUNNING.value,
            pod=pod.name,
            slot=slot,
            pod_ip=pod.pod_ip,
            allocated_at=now,
            updated_at=now,
        )
        if previous is None:
            task_condition = TaskItem.pk.does_not_exist()
        else:
            task_condition = (TaskItem.status == previous.status.value) & (TaskItem.updated_at == previous.updated_at)
        tx.put("task", item, condition=task_condition)
        tx.update(
            "slot",
            _pod_key(pod.pool, pod.name),
            actions=[
                PodItem.slots[slot].set(_slot_doc(Slot(SlotStatus.RUNNING, task.task_id, task.task_type, now))),
                PodItem.busy.add(1),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.state == PodState.READY.value)
            & (PodItem.slots[slot]["status"] == SlotStatus.IDLE.value),
        )
        tx.condition_check(
            "pool",
            PoolItem,
            pool_pk(task.pool),
            CONFIG_SK,
            PoolItem.pk.exists() & (PoolItem.deleting == False),  # noqa: E712 (a DynamoDB condition)
        )
        tx.commit()

    def record_waiting(self, task: Task, previous: Task | None, now: int, signal_every_s: int) -> bool:
        """Record that the task asked and found no slot. True when a shortage should be signalled.

        The task item turns `pending` (with the sparse `waiting` index keys), unless it holds a
        slot or ended meanwhile. The signal is rate-limited per task through `signalled_at`.
        """
        base_condition = TaskItem.pk.does_not_exist() | TaskItem.status.is_in(
            *(s.value for s in TaskStatus if s.redispatchable)
        )
        actions: list[Action] = [
            TaskItem.task_id.set(task.task_id),
            TaskItem.pool.set(task.pool),
            TaskItem.task_type.set(task.task_type.value),
            TaskItem.status.set(TaskStatus.PENDING.value),
            TaskItem.updated_at.set(now),
            TaskItem.wait_pool.set(task.pool),
            TaskItem.expires_at.remove(),
            TaskItem.pod.remove(),
            TaskItem.slot.remove(),
        ]
        first = previous.waiting_since if previous and previous.status is TaskStatus.PENDING else None
        actions.append(TaskItem.wait_since.set(first if first is not None else now))
        signal_condition = TaskItem.signalled_at.does_not_exist() | (TaskItem.signalled_at <= now - signal_every_s)
        try:
            _task_key(task.task_id).update(
                actions=[*actions, TaskItem.signalled_at.set(now)],
                condition=base_condition & signal_condition,
            )
            return True
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
        try:
            _task_key(task.task_id).update(actions=actions, condition=base_condition)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise StoreConflict({"task": "ConditionalCheckFailed"}) from exc
        return False

    # ---- the slot life cycle of an allocated task ------------------------------------------------

    def reserve(self, task: Task, until: int, now: int) -> None:
        """running -> reserved (apply_pending), both conditional on the slot holding the task."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            _task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.APPLY_PENDING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.set(task.pool),
                TaskItem.rsv_until.set(until),
            ],
            condition=(TaskItem.status == TaskStatus.RUNNING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            _pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(
                    _slot_doc(Slot(SlotStatus.RESERVED, task.task_id, task.task_type, now, until))
                ),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RUNNING.value),
        )
        tx.commit()

    def resume(self, task: Task, now: int) -> None:
        """reserved -> running: the apply runs on the pod and slot that ran the plan."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            _task_key(task.task_id),
            actions=[
                TaskItem.status.set(TaskStatus.RUNNING.value),
                TaskItem.updated_at.set(now),
                TaskItem.rsv_pool.remove(),
                TaskItem.rsv_until.remove(),
            ],
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            _pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(_slot_doc(Slot(SlotStatus.RUNNING, task.task_id, task.task_type, now))),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        tx.commit()

    def release(self, task: Task, end: TaskStatus, now: int) -> None:
        """End the task and free its slot in one write; `busy - 1` in the same write."""
        assert task.pod and task.slot and end.is_end
        tx = self._tx()
        tx.update(
            "task",
            _task_key(task.task_id),
            actions=self._end_actions(end, now),
            condition=(TaskItem.status == task.status.value)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            _pod_key(task.pool, task.pod),
            actions=[
                PodItem.slots[task.slot].set(IDLE_DOC),
                PodItem.busy.set(PodItem.busy - 1),
                PodItem.last_used_at.set(now),
            ],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] != SlotStatus.IDLE.value),
        )
        tx.commit()

    def close_without_slot(self, task: Task, end: TaskStatus, now: int) -> None:
        """End a task that holds no slot: a waiting task, or one whose pod item is gone.

        Conditional on the task being exactly as the caller read it (status and updated_at).
        """
        try:
            _task_key(task.task_id).update(
                actions=self._end_actions(end, now),
                condition=(TaskItem.status == task.status.value) & (TaskItem.updated_at == task.updated_at),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise StoreConflict({"task": "ConditionalCheckFailed"}) from exc

    def _end_actions(self, end: TaskStatus, now: int) -> list[Action]:
        return [
            TaskItem.status.set(end.value),
            TaskItem.updated_at.set(now),
            TaskItem.expires_at.set(now + self.task_ttl_s),
            TaskItem.rsv_pool.remove(),
            TaskItem.rsv_until.remove(),
            TaskItem.wait_pool.remove(),
            TaskItem.wait_since.remove(),
            TaskItem.signalled_at.remove(),
        ]

    # ---- pods -----------------------------------------------------------------------------------

    def heartbeat(self, pool: str, pod: str, held_tasks: list[str], pod_ip: str | None, now: int) -> Pod:
        """Record a beat; `starting` and `unhealthy` become `ready`. StoreConflict if draining/absent."""
        actions: list[Action] = [
            PodItem.heartbeat_at.set(now),
            PodItem.held_tasks.set(held_tasks),
            PodItem.state.set(PodState.READY.value),
        ]
        if pod_ip:
            actions.append(PodItem.pod_ip.set(pod_ip))
        item = _pod_key(pool, pod)
        try:
            item.update(
                actions=actions,
                condition=PodItem.state.is_in(PodState.STARTING.value, PodState.READY.value, PodState.UNHEALTHY.value),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise StoreConflict({"pod": "ConditionalCheckFailed"}) from exc
        return _pod_from(item)  # PynamoDB refreshes the instance with ALL_NEW

    def put_pod(self, pod: Pod) -> None:
        """Create a pod item (a new pod starting, or an adopted one); never overwrites."""
        PodItem(
            pool_pk(pod.pool),
            pod_sk(pod.name),
            pool=pod.pool,
            name=pod.name,
            uid=pod.uid,
            state=pod.state.value,
            slots={k: _slot_doc(s) for k, s in pod.slots.items()},
            busy=pod.busy,
            pod_ip=pod.pod_ip,
            created_at=pod.created_at,
            heartbeat_at=pod.heartbeat_at,
            held_tasks=list(pod.held_tasks),
            last_used_at=pod.last_used_at,
        ).save(condition=PodItem.pk.does_not_exist())

    def start_draining(self, pool: str, pod: str, from_states: tuple[PodState, ...]) -> bool:
        """`-> draining` only while nothing runs or is reserved on it. False if it became busy."""
        try:
            _pod_key(pool, pod).update(
                actions=[PodItem.state.set(PodState.DRAINING.value)],
                condition=PodItem.state.is_in(*(s.value for s in from_states)) & (PodItem.busy == 0),
            )
            return True
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False

    def remove_drained_pod(self, pool: str, pod: str) -> None:
        """Delete a drained pod's item (its Kubernetes pod is gone). Idempotent."""
        try:
            _pod_key(pool, pod).delete(condition=PodItem.state == PodState.DRAINING.value)
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def lose_pod(self, pod: Pod, reason: str, now: int, event_id: str) -> list[tuple[str, str]]:
        """The pod is gone (vanished, failed, replaced): its tasks become `lost`, its item goes.

        One transaction: each task it held (conditional on still holding that slot), the pod item
        (conditional on being the item that was read), and a history entry per task. So a retry
        after a crash finds nothing left to lose, and no task is reported lost twice.
        Returns (slot, task_id) of each task lost; raises StoreConflict if anything moved.
        """
        tx = self._tx()
        lost: list[tuple[str, str]] = []
        for key, slot in sorted(pod.slots.items()):
            if slot.is_idle or slot.task_id is None:
                continue
            lost.append((key, slot.task_id))
            tx.update(
                f"task:{slot.task_id}",
                _task_key(slot.task_id),
                actions=self._end_actions(TaskStatus.LOST, now),
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
        tx.delete("pod", _pod_key(pod.pool, pod.name), condition=self._same_pod(pod))
        tx.commit()
        return lost

    def release_leaked(self, pod: Pod, key: str, now: int, event_id: str) -> None:
        """Free a slot whose task the agent no longer holds; the task becomes `lost` (recorded)."""
        slot = pod.slots[key]
        assert slot.task_id and slot.task_type
        tx = self._tx()
        held = TaskStatus.APPLY_PENDING if slot.status is SlotStatus.RESERVED else TaskStatus.RUNNING
        tx.update(
            "task",
            _task_key(slot.task_id),
            actions=self._end_actions(TaskStatus.LOST, now),
            condition=(TaskItem.status == held.value) & (TaskItem.pod == pod.name) & (TaskItem.slot == key),
        )
        tx.update(
            "slot",
            _pod_key(pod.pool, pod.name),
            actions=[PodItem.slots[key].set(IDLE_DOC), PodItem.busy.set(PodItem.busy - 1)],
            condition=(PodItem.slots[key]["task_id"] == slot.task_id) & (PodItem.slots[key]["since"] == slot.since),
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
        tx.commit()

    def remove_idle_pod(self, pod: Pod) -> bool:
        """Delete the item of a pod that holds nothing (a starting pod that never came up)."""
        try:
            _pod_key(pod.pool, pod.name).delete(condition=self._same_pod(pod) & (PodItem.busy == 0))
            return True
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False

    def mark_unhealthy(self, pod: Pod) -> bool:
        """ready -> unhealthy, unless it beat meanwhile (the condition is on the beat we saw)."""
        beat = (
            PodItem.heartbeat_at == pod.heartbeat_at
            if pod.heartbeat_at is not None
            else PodItem.heartbeat_at.does_not_exist()
        )
        return self._conditional_update(
            pod, [PodItem.state.set(PodState.UNHEALTHY.value)], (PodItem.state == PodState.READY.value) & beat
        )

    def observe_pod(self, pod: Pod, uid: str | None, pod_ip: str | None) -> bool:
        """Record what the cluster says of the pod: its uid (first seen) and its IP."""
        actions: list[Action] = []
        if uid and uid != pod.uid:
            actions.append(PodItem.uid.set(uid))
        if pod_ip and pod_ip != pod.pod_ip:
            actions.append(PodItem.pod_ip.set(pod_ip))
        if not actions:
            return False
        return self._conditional_update(pod, actions, self._same_pod(pod))

    @staticmethod
    def _same_pod(pod: Pod) -> Condition:
        """The item is still the one that was read (not a new pod that took the same name)."""
        return PodItem.created_at == pod.created_at

    def _conditional_update(self, pod: Pod, actions: list[Action], condition: Condition) -> bool:
        try:
            _pod_key(pod.pool, pod.name).update(actions=actions, condition=condition)
            return True
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False

    # ---- autoscale and expiry ---------------------------------------------------------------------

    def acquire_lease(self, pool: str, holder: str, now: int, ttl_s: int) -> Lease | None:
        """Take the pool's autoscale lease if it is free or expired; None if another run holds it."""
        item = LeaseItem(pool_pk(pool), LEASE_SK)
        try:
            item.update(
                actions=[LeaseItem.holder.set(holder), LeaseItem.deadline.set(now + ttl_s)],
                condition=LeaseItem.pk.does_not_exist() | (LeaseItem.deadline < now) | (LeaseItem.holder == holder),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return None
        low = int(item.low_since) if item.low_since is not None else None
        return Lease(pool, holder, low)

    def release_lease(self, lease: Lease, low_since: int | None) -> None:
        """Give the lease back, keeping when utilization went low (the scale-down delay's clock)."""
        actions: list[Action] = [LeaseItem.deadline.set(0)]
        actions.append(LeaseItem.low_since.set(low_since) if low_since is not None else LeaseItem.low_since.remove())
        try:
            LeaseItem(pool_pk(lease.pool), LEASE_SK).update(actions=actions, condition=LeaseItem.holder == lease.holder)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise  # another run took the expired lease: it decides now

    def waiting(self, pool: str) -> list[Task]:
        """Tasks that asked and found no slot (the sparse `waiting` index; eventually consistent)."""
        return [_task_from(item) for item in TaskItem.waiting.query(pool)]

    def forget_waiting(self, task: Task) -> None:
        """A task that stopped asking leaves the demand (it stays `pending`; a new ask brings it back)."""
        try:
            _task_key(task.task_id).update(
                actions=[TaskItem.wait_pool.remove(), TaskItem.wait_since.remove()],
                condition=(TaskItem.status == TaskStatus.PENDING.value) & (TaskItem.updated_at == task.updated_at),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise

    def due_reservations(self, pool: str, now: int) -> list[Task]:
        """Reserved tasks whose deadline has come (the sparse `reservations` index, not a scan)."""
        return [_task_from(item) for item in TaskItem.reservations.query(pool, TaskItem.rsv_until <= now)]

    def expire(self, task: Task, now: int) -> bool:
        """Free a reservation past its deadline; the task becomes `expired`. False if it moved."""
        assert task.pod and task.slot
        tx = self._tx()
        tx.update(
            "task",
            _task_key(task.task_id),
            actions=self._end_actions(TaskStatus.EXPIRED, now),
            condition=(TaskItem.status == TaskStatus.APPLY_PENDING.value)
            & (TaskItem.rsv_until <= now)
            & (TaskItem.pod == task.pod)
            & (TaskItem.slot == task.slot),
        )
        tx.update(
            "slot",
            _pod_key(task.pool, task.pod),
            actions=[PodItem.slots[task.slot].set(IDLE_DOC), PodItem.busy.set(PodItem.busy - 1)],
            condition=(PodItem.slots[task.slot]["task_id"] == task.task_id)
            & (PodItem.slots[task.slot]["status"] == SlotStatus.RESERVED.value),
        )
        try:
            tx.commit()
            return True
        except StoreConflict:
            return False

    # ---- pools ----------------------------------------------------------------------------------

    def put_pool(self, pool: str, settings: PoolSettings, now: int) -> bool:
        """Create or replace a pool's settings. True when created. A deleting pool is refused."""
        existing = self.get_pool(pool)
        document = settings.model_dump(mode="json", exclude_none=True)
        created_at = existing.created_at if existing else now
        tx = self._tx()
        condition = (
            PoolItem.pk.does_not_exist()
            if existing is None
            else (PoolItem.deleting == False) & (PoolItem.updated_at == existing.updated_at)  # noqa: E712
        )
        tx.put(
            "pool",
            PoolItem(
                pool_pk(pool),
                CONFIG_SK,
                pool=pool,
                settings=document,
                deleting=False,
                created_at=created_at,
                updated_at=now,
            ),
            condition=condition,
        )
        tx.put(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool), pool=pool, settings=document, deleting=False),
        )
        tx.commit()
        return existing is None

    def mark_pool_deleting(self, pool: str, now: int) -> None:
        tx = self._tx()
        tx.update(
            "pool",
            PoolItem(pool_pk(pool), CONFIG_SK),
            actions=[PoolItem.deleting.set(True), PoolItem.updated_at.set(now)],
            condition=PoolItem.pk.exists(),
        )
        tx.update(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool)),
            actions=[RegistryItem.deleting.set(True)],
            condition=RegistryItem.pk.exists(),
        )
        tx.commit()

    def pool_records(self) -> list[RegisteredPool]:
        """Every pool with its settings and last recorded figures: one consistent Query (its pages)."""
        return [
            RegisteredPool(
                name=item.pool,
                settings=PoolSettings.from_stored(item.settings.as_dict()),
                deleting=bool(item.deleting),
                figures=item.figures.as_dict() if item.figures is not None else None,
            )
            for item in RegistryItem.query(REGISTRY_PK, consistent_read=True)
            if item.settings is not None
        ]

    def record_figures(self, pool: str, figures: dict[str, Any], now: int, event_id: str) -> None:
        """Keep the figures on the registry item and in the pool's history (only called on change)."""
        tx = self._tx()
        tx.update(
            "registry",
            RegistryItem(REGISTRY_PK, pool_pk(pool)),
            actions=[RegistryItem.figures.set(figures)],
            condition=RegistryItem.pk.exists(),
        )
        tx.put("event", self._event_item(pool, "PoolFigures", figures, now, event_id))
        tx.commit()

    def remove_pool(self, pool: str) -> None:
        """Remove a deleting pool's settings once it has no pod left (the check is the caller's)."""
        tx = self._tx()
        tx.delete("pool", PoolItem(pool_pk(pool), CONFIG_SK), condition=PoolItem.deleting == True)  # noqa: E712
        tx.delete("registry", RegistryItem(REGISTRY_PK, pool_pk(pool)))
        try:
            tx.commit()
        except StoreConflict as exc:
            if not exc.failed("pool"):
                raise

    def _event_item(self, pool: str, kind: str, detail: dict[str, Any], now: int, event_id: str) -> EventItem:
        return EventItem(
            pool_pk(pool),
            f"{EVENT_PREFIX}{now:012d}#{event_id}",
            kind=kind,
            at=now,
            detail=detail,
            expires_at=now + self.event_ttl_s,
        )

    def add_event(self, pool: str, kind: str, detail: dict[str, Any], now: int, event_id: str) -> None:
        try:
            self._event_item(pool, kind, detail, now, event_id).save(condition=EventItem.pk.does_not_exist())
        except PutError as exc:  # the same event written twice by a retry: already recorded
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise


def new_pod(pool: str, name: str, slots: int, now: int, uid: str | None = None) -> Pod:
    """A pod item as it starts: every slot idle, not yet beating."""
    return Pod(
        pool=pool,
        name=name,
        state=PodState.STARTING,
        slots=empty_slots(slots),
        uid=uid,
        created_at=now,
        last_used_at=now,
    )


__all__ = [
    "Lease",
    "PoolEvent",
    "PoolRecord",
    "RegisteredPool",
    "SlotStore",
    "StoreConflict",
    "bind_table",
    "new_pod",
]
