"""Expiry: a reservation nobody approved is freed at its deadline (24 hours by default).

The due reservations come from the sparse `reservations` index, not a scan. Each is released by a
conditional write that also requires the deadline to have passed and the task still to wait for
approval, so a task resumed (or reserved anew) meanwhile is never expired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.events import StepEvents
from podslots.observability import MetricUnit, pool_metrics
from podslots.pool_order import each_pool
from podslots.ports import ExpiryStore


@dataclass
class ExpiryReport:
    pool: str
    expired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Expirer:
    events = StepEvents()  # history, bus, metric and log, through the step's own store and bus

    def __init__(self, store: ExpiryStore, bus: EventPublisher, clock: Clock) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock

    def run(
        self, only_pool: str | None = None, time_left_s: Callable[[], float] | None = None, *, strict: bool = False
    ) -> list[ExpiryReport]:
        return each_pool(
            self.store,
            self.clock,
            "expire",
            lambda pool: self.expire_pool(pool.name),
            lambda pool, problem: ExpiryReport(pool.name, errors=[problem]),
            only_pool=only_pool,
            time_left_s=time_left_s,
            strict=strict,
        )

    def expire_pool(self, pool: str) -> ExpiryReport:
        report = ExpiryReport(pool)
        now = int(self.clock.now())
        for task in self.store.due_reservations(pool, now):
            if task.reserved_until is None or task.reserved_until > now:
                continue  # the index is eventually consistent: trust only the item's own deadline
            if not self.store.expire(task, now):
                continue  # resumed, ended or re-reserved meanwhile
            report.expired.append(task.task_id)
            detail = {
                "pool": pool,
                "pod": task.pod,
                "slot": task.slot,
                "task_id": task.task_id,
                "reserved_until": task.reserved_until,
            }
            # The store's write is the record of fact (the task's status): the event is only told.
            self.events.record(pool, "ReservationExpired", detail, now, history=False, log="reservation expired")
        if report.expired:
            pool_metrics(pool, [("ReservationsExpired", MetricUnit.Count, len(report.expired))])
        return report
