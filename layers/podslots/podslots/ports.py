"""What each step needs of the slot table: one small interface per consumer.

The store (`podslots.store.SlotStore`) is one class of about forty methods; a step that took all
of it would depend on every one, and no honest stand-in could replace it for that step alone. So
each step names the part it uses here, as a `typing.Protocol`, and is typed against that part
only. The store satisfies them structurally (it imports none of them): mypy proves it at every
place a handler hands a `SlotStore` to a step, and `tests/unit/test_ports.py` states it for every port.

The ports live beside the steps, not in the store package, because they are the steps' side of
the contract (what a consumer asks for), and because a second implementation (an in-memory
table for a simulation) can then satisfy them without importing the store, PynamoDB or boto3.
They name only `model` values and the store's plain records (`store/records.py`, dataclasses);
those are imported for the type checker alone, so importing a port loads no gateway.

A write that loses a race raises `podslots.store.StoreConflict`, whichever port it is called through.
"""

from __future__ import annotations

from collections.abc import Callable
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Protocol

from podslots.model import EndedSlot, Pod, PodState, Task, TaskStatus

if TYPE_CHECKING:
    from podslots.prewarm import Arrivals
    from podslots.settings import PoolSettings
    from podslots.store.records import Lease, PoolEvent, PoolRecord, PoolState, RegisteredPool, Rollout

# ---- parts more than one step shares -------------------------------------------------------------


class History(Protocol):
    """A pool's history: entries the events API reads back."""

    def add_event(self, pool: str, kind: str, detail: dict[str, Any], now: int, event_id: str) -> None: ...


class Notices(Protocol):
    """A refusal recorded in the history once per pod (`pool_guard`, reconcile, autoscale)."""

    def notice_once(self, pool: str, kind: str, *, pod: str, uid: str, detail: dict[str, Any], now: int) -> bool: ...


class PoolRounds(History, Protocol):
    """How a scheduled step finds its pools (`pool_order`), and records a pool's failure."""

    def pool_record(self, pool: str, unreadable: Callable[[str, str], None] | None = None) -> RegisteredPool | None: ...

    def pool_records(self, unreadable: Callable[[str, str], None] | None = None) -> list[RegisteredPool]: ...


class PoolNames(Protocol):
    """The registry's names: what the dispatcher fans out over."""

    def list_pools(self) -> list[str]: ...


class PodLife(Protocol):
    """The pod items both cluster steps read and move: create, observe, drain, remove."""

    def pods(self, pool: str) -> list[Pod]: ...

    def put_pod(self, pod: Pod, *, namespace: str | None = None) -> bool: ...

    def observe_pod(self, pod: Pod, uid: str | None, pod_ip: str | None, revision: str | None = None) -> bool: ...

    def start_draining(self, pool: str, pod: str, from_states: tuple[PodState, ...]) -> bool: ...

    def remove_drained_pod(self, pool: str, pod: str) -> None: ...

    def remove_idle_pod(self, pod: Pod) -> bool: ...


# ---- one port per consumer -----------------------------------------------------------------------


class AllocationStore(Protocol):
    """`allocation`: open slots, the allocate and resume writes, a task's wait, the pool's state."""

    def get_task(self, task_id: str) -> Task | None: ...

    def get_pod(self, pool: str, pod: str) -> Pod | None: ...

    def open_slots(self, pool: str, pods: int, second_choice: bool = False) -> list[Pod]: ...

    def allocate(
        self, task: Task, pod: Pod, slot: str, previous: Task | None, now: int, *, token: str | None = None
    ) -> None: ...

    def resume(self, task: Task, now: int, *, token: str | None = None) -> None: ...

    def close_without_slot(
        self, task: Task, end: TaskStatus, now: int, *, token: str | None = None, ended: EndedSlot | None = None
    ) -> None: ...

    def record_waiting(self, task: Task, now: int, signal_every_s: int) -> tuple[bool, int]: ...

    def pool_state(self, pool: str) -> PoolState | None: ...

    def recent_pool_state(self, pool: str, now: int, max_age_s: int) -> tuple[PoolState | None, bool]: ...

    def starting_pods(self, pool: str) -> int: ...


class TaskStatusStore(Protocol):
    """`tasks`: a task's status moves its slot (reserve, resume, release), or closes it alone."""

    def get_task(self, task_id: str) -> Task | None: ...

    def get_pool(self, pool: str) -> PoolRecord | None: ...

    def get_pod(self, pool: str, pod: str) -> Pod | None: ...

    def reserve(self, task: Task, until: int, now: int, *, token: str | None = None) -> None: ...

    def resume(self, task: Task, now: int, *, token: str | None = None) -> None: ...

    def release(self, task: Task, end: TaskStatus, now: int, *, token: str | None = None) -> None: ...

    def close_without_slot(
        self, task: Task, end: TaskStatus, now: int, *, token: str | None = None, ended: EndedSlot | None = None
    ) -> None: ...


class HeartbeatStore(Protocol):
    """`heartbeat`: one conditional write per beat."""

    def heartbeat(
        self, pool: str, pod: str, held_tasks: list[str] | None, reported_ip: str | None, now: int
    ) -> Pod: ...


class PoolRegistryStore(PoolNames, History, Protocol):
    """`pools` (the API's pool routes): settings, the registry, the history, operator cordons."""

    def get_pool(self, pool: str) -> PoolRecord | None: ...

    def pool_state(self, pool: str) -> PoolState | None: ...

    def put_pool(
        self, pool: str, settings: PoolSettings, now: int, seen: PoolState | EllipsisType | None = ...
    ) -> bool: ...

    def mark_pool_deleting(self, pool: str, now: int) -> None: ...

    def events(self, pool: str, limit: int) -> list[PoolEvent]: ...

    def pods(self, pool: str) -> list[Pod]: ...

    def get_pod(self, pool: str, pod: str) -> Pod | None: ...

    def cordon(self, pool: str, pod: str, reason: str) -> tuple[Pod | None, bool]: ...

    def uncordon(self, pod: Pod, reason: str, *, second_choice: bool = False) -> Pod | None: ...


class ExpiryStore(PoolRounds, Protocol):
    """`expiry`: the due reservations of a pool, each expired by a conditional write."""

    def due_reservations(self, pool: str, now: int) -> list[Task]: ...

    def expire(self, task: Task, now: int, *, token: str | None = None) -> bool: ...


class ReconcileStore(PodLife, PoolRounds, Notices, Protocol):
    """`reconcile`: what it repairs (lost pods, leaked slots, silent agents) and records."""

    def lose_pod(self, pod: Pod, reason: str, now: int, event_id: str) -> list[tuple[str, str]]: ...

    def release_leaked(self, pod: Pod, key: str, now: int, event_id: str) -> None: ...

    def mark_unhealthy(self, pod: Pod) -> bool: ...

    def note(self, pod: Pod, note: str) -> bool: ...

    def record_controller(self, pod: Pod, controller: str | None) -> bool: ...

    def record_figures(self, pool: str, figures: dict[str, Any], now: int, event_id: str) -> None: ...


class AutoscaleStore(PodLife, PoolRounds, Notices, Protocol):
    """`autoscale`: its lease, the waiting tasks (demand), roll-out cordons and ranks, a pool's removal."""

    def acquire_lease(self, pool: str, holder: str, now: int, ttl_s: int) -> Lease | None: ...

    def read_lease(self, pool: str) -> Lease | None: ...

    def release_lease(
        self,
        lease: Lease,
        low_since: int | None,
        rollout: Rollout | None = None,
        noted: str | None = None,
        starting: int | None = None,
    ) -> None: ...

    def waiting(self, pool: str) -> list[Task]: ...

    def forget_waiting(self, task: Task) -> None: ...

    def cordon(self, pool: str, pod: str, reason: str) -> tuple[Pod | None, bool]: ...

    def rank(self, pod: Pod, second_choice: bool) -> bool: ...

    def remove_pool(self, pool: str) -> bool: ...

    def arrivals(self, pool: str) -> Arrivals | None: ...

    def save_arrivals(self, pool: str, arrivals: Arrivals, read: Arrivals | None) -> bool: ...
