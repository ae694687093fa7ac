"""One way to record an event: the history, the bus, a metric and the log in one call.

The history is the record of fact, so it is written first, with an id this module makes
(`ids.new_event_id`); the bus is best effort after it: a failed publish is logged once, here, by its
type and place only (`scrub.exception_facts`: an answer from EventBridge is not ours to log as
text), and never fails the step that recorded the event. An event that a store transaction already
wrote to the history with its own change (a lost task, a released leak) is only published
(`history=False`); one that nobody outside needs is only recorded (`publish=False`).

"Would…" records, what an observed or paused pool would have done, go through `would` below, so
both scheduled steps record them the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podslots.bus import EventPublisher
from podslots.ids import new_event_id
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.ports import History
from podslots.scrub import exception_facts


@dataclass(frozen=True)
class Events:
    """Where a step's events go: the pool's history and the bus."""

    history: History
    bus: EventPublisher

    def record(
        self,
        pool: str,
        kind: str,
        detail: dict[str, Any],
        now: int,
        *,
        history: bool = True,
        publish: bool = True,
        metrics: Iterable[tuple[str, MetricUnit, float]] = (),
        log: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record one event; returns its history id. `log` names the info line (default: the kind)."""
        event_id = event_id or new_event_id()
        if history:
            self.history.add_event(pool, kind, detail, now, event_id)
        if publish:
            self.publish(kind, detail)
        metrics = list(metrics)
        if metrics:
            pool_metrics(pool, metrics)
        logger.info(log or kind, extra=_loggable(detail))
        return event_id

    def publish(self, kind: str, detail: dict[str, Any]) -> bool:
        """Put the event on the bus; False (logged, by type only) when the bus refused or failed."""
        return publish(self.bus, kind, detail)

    def would(
        self,
        pool: str,
        kind: str,
        detail: dict[str, Any],
        now: int,
        *,
        metrics: Iterable[tuple[str, MetricUnit, float]],
        recorded: bool,
    ) -> None:
        """What a pool that may not act would have done: counted every run (`metrics`), written to
        the history only when `recorded` (once per change, as the caller's note decides), never
        published (nothing happened in the cluster)."""
        metrics = list(metrics)
        if recorded:
            self.record(pool, kind, detail, now, publish=False, metrics=metrics)
        else:
            pool_metrics(pool, metrics)


_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class StepEvents:
    """`step.events`: an `Events` made from the step's own `store` and `bus` on each use, so a swapped
    bus or store (the local stack's, a test's, the simulation's) is the one its events go to."""

    def __get__(self, step: Any, owner: type | None = None) -> Events:
        return Events(step.store, step.bus)


def publish(bus: EventPublisher, kind: str, detail: dict[str, Any]) -> bool:
    """An event for the bus alone (no history: allocation's CapacityShortage); False, logged by type
    only, when the bus refused or failed."""
    try:
        bus.publish(kind, detail)
    except Exception as exc:  # the history (or the table's own state) already holds it
        extra = {"detail_type": kind, **_loggable(detail), **exception_facts(exc)}
        logger.error(f"{kind} not published", extra=extra)
        return False
    return True


def _loggable(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail as log fields: a key the log record itself uses (`created`, `name`, ...) would make
    the logging call raise, so it is logged as `detail_<key>`."""
    return {f"detail_{k}" if k in _RECORD_FIELDS else k: v for k, v in detail.items()}
