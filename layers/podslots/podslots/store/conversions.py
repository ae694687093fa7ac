"""Items to domain values and back: what a slot map, a pod item and a task item mean."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import MapAttribute
from pynamodb.expressions.update import Action

from podslots.model import EndedSlot, Pod, PodState, Slot, SlotStatus, Task, TaskStatus, TaskType
from podslots.store.items import PodItem, TaskItem
from podslots.store.keys import SECOND_CHOICE, TASK_SK, pod_sk, pool_pk, task_pk


def slot_from(raw: dict[str, Any]) -> Slot:
    return Slot(
        status=SlotStatus(raw.get("status", "idle")),
        task_id=raw.get("task_id"),
        task_type=TaskType(raw["task_type"]) if raw.get("task_type") else None,
        since=int(raw["since"]) if raw.get("since") is not None else None,
        reserved_until=int(raw["reserved_until"]) if raw.get("reserved_until") is not None else None,
    )


def slot_doc(slot: Slot) -> dict[str, Any]:
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


def pod_from(item: PodItem) -> Pod:
    raw_slots = item.slots.as_dict() if isinstance(item.slots, MapAttribute) else dict(item.slots)
    return Pod(
        pool=item.pool,
        name=item.name,
        state=PodState(item.state),
        slots={key: slot_from(dict(value)) for key, value in raw_slots.items()},
        uid=item.uid,
        pod_ip=item.pod_ip,
        reported_ip=item.reported_ip,
        created_at=int(item.created_at),
        heartbeat_at=int(item.heartbeat_at) if item.heartbeat_at is not None else None,
        registered_at=int(item.registered_at) if item.registered_at is not None else None,
        held_tasks=tuple(item.held_tasks or ()),
        held_at=int(item.held_at) if item.held_at is not None else None,
        last_used_at=int(item.last_used_at or 0),
        cordoned=item.cordoned,
        cordons=frozenset(item.cordons or ()),
        revision=item.revision,
        second_choice=bool(item.open_pool and item.open_pool.endswith(SECOND_CHOICE)),
        controller=item.controller,
        placed=int(item.placed or 0),
    )


def task_from(item: TaskItem) -> Task:
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
        request_token=item.request_token,
        ended=ended_from(item.ended),
        owner=item.owner,
    )


def ended_from(raw: Any) -> EndedSlot | None:
    """The `ended` map of a task item: the slot podslots took from it, and why."""
    if raw is None:
        return None
    doc = raw.as_dict() if isinstance(raw, MapAttribute) else dict(raw)
    return EndedSlot(pod=doc["pod"], slot=doc["slot"], status=TaskStatus(doc["status"]), reason=doc.get("reason"))


def ended_doc(ended: EndedSlot) -> dict[str, Any]:
    doc = {"pod": ended.pod, "slot": ended.slot, "status": ended.status.value}
    if ended.reason is not None:
        doc["reason"] = ended.reason
    return doc


def take_slot(key: str, slot: Slot, now: int) -> list[Action]:
    """An idle slot takes a task: `busy` up, `idle` down, in the same write."""
    return [
        PodItem.slots[key].set(slot_doc(slot)),
        PodItem.busy.set(PodItem.busy + 1),
        PodItem.idle.set(PodItem.idle - 1),
        PodItem.last_used_at.set(now),
        PodItem.placed.add(1),  # the pool's arrivals, for prewarm: counted on the item this write moves anyway
    ]


def free_slot(key: str, now: int | None = None) -> list[Action]:
    """A slot is freed: `busy` down, `idle` up, in the same write."""
    actions = [
        PodItem.slots[key].set(IDLE_DOC),
        PodItem.busy.set(PodItem.busy - 1),
        PodItem.idle.set(PodItem.idle + 1),
    ]
    if now is not None:
        actions.append(PodItem.last_used_at.set(now))
    return actions


def pod_key(pool: str, pod: str) -> PodItem:
    return PodItem(pool_pk(pool), pod_sk(pod))


def task_key(task_id: str) -> TaskItem:
    return TaskItem(task_pk(task_id), TASK_SK)
