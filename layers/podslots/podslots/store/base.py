"""What every part of the store shares: the retention settings, the transaction factory, and the
writes more than one part makes (ending a task, writing a history entry)."""

from __future__ import annotations

from typing import Any

from pynamodb.expressions.update import Action

from podslots.model import EndedSlot, TaskStatus
from podslots.store.conversions import ended_doc
from podslots.store.items import EventItem, TaskItem
from podslots.store.keys import event_sk, pool_pk
from podslots.store.records import PoolState
from podslots.store.transaction import LabelledTransaction, SharedConnection


class StoreBase:
    def __init__(self, event_ttl_s: int = 14 * 86400, task_ttl_s: int = 30 * 86400) -> None:
        self.event_ttl_s = event_ttl_s
        self.task_ttl_s = task_ttl_s
        self._connection = SharedConnection()
        # pool -> (table binding, read at, state): `PoolRegistry.recent_pool_state`
        self._recent_pools: dict[str, tuple[int, int, PoolState]] = {}

    def _tx(self, token: str | None = None) -> LabelledTransaction:
        return LabelledTransaction(self._connection.get(), token)

    def _end_actions(self, end: TaskStatus, now: int, token: str, ended: EndedSlot | None = None) -> list[Action]:
        """A task ends: it leaves both sparse indexes and is forgotten after the task TTL.

        `ended`: podslots itself took the task's slot (lost, expired); the item keeps which and why
        until the task is placed again, so that placement can say what it replaced.
        """
        extra = [TaskItem.ended.set(ended_doc(ended))] if ended is not None else []
        return [
            *extra,
            TaskItem.request_token.set(token),
            TaskItem.status.set(end.value),
            TaskItem.updated_at.set(now),
            TaskItem.expires_at.set(now + self.task_ttl_s),
            TaskItem.rsv_pool.remove(),
            TaskItem.rsv_until.remove(),
            TaskItem.wait_pool.remove(),
            TaskItem.wait_since.remove(),
            TaskItem.signalled_at.remove(),
        ]

    def _event_item(self, pool: str, kind: str, detail: dict[str, Any], now: int, event_id: str) -> EventItem:
        return EventItem(
            pool_pk(pool),
            event_sk(now, event_id),
            kind=kind,
            at=now,
            detail=detail,
            expires_at=now + self.event_ttl_s,
        )
