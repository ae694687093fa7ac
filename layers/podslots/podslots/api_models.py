"""The API's shapes: path parameters, request bodies and answers, and how a task or pod is shown.

The handlers declare their routes with these (Powertools validates requests against them and writes
the OpenAPI document from them, `make openapi`); the steps never see them.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from podslots.model import Pod, ReportedStatus, TakenStatus, Task, TaskStatus, TaskType, cordon_order, shown_cordon
from podslots.names import (
    DNS_SUBDOMAIN,
    DNS_SUBDOMAIN_MAX,
    POOL_NAME,
    POOL_NAME_MAX,
    TASK_ID,
    TASK_ID_MAX,
    TaskIdStr,
)

PoolName = Annotated[str, Path(pattern=POOL_NAME, max_length=POOL_NAME_MAX, description="A DNS label")]
PodName = Annotated[str, Path(pattern=DNS_SUBDOMAIN, max_length=DNS_SUBDOMAIN_MAX)]
TaskIdPath = Annotated[str, Path(pattern=TASK_ID, max_length=TASK_ID_MAX)]
TaskId = TaskIdStr
EventLimit = Annotated[int, Query(ge=1, le=500, description="How many events, newest first")]


# ---- request bodies ---------------------------------------------------------------------------


class AllocateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: TaskId
    task_type: TaskType
    expect: Literal["resume"] | None = Field(
        default=None,
        description=(
            "`resume`: this is an approval. The task's reserved slot (200), or 409 `reservation_gone` "
            "if the reservation is gone (expired, lost, unknown task); never a new slot"
        ),
    )


class StatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: ReportedStatus


class HeartbeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    held_tasks: list[TaskId] | None = Field(
        default=None,
        max_length=64,
        description=(
            "The tasks the agent holds, when it could read its task list: `[]` means it holds nothing, "
            "and reconcile frees (as lost) a slot whose task a recent listing leaves out, past the leak "
            "grace. Absent (or null): unknown; the beat keeps the pod alive and frees nothing."
        ),
    )
    pod_ip: IPv4Address | IPv6Address | None = None


# ---- answers ----------------------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    error: str
    message: str


class PreviousSlot(BaseModel):
    pod: str
    slot: str
    status: TakenStatus = Field(description="How the task's previous slot ended")
    reason: str | None = Field(description="Why: `reservation expired`, reconcile's reason for a loss, ...")


class AllocationAnswer(BaseModel):
    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    status: Literal["running"]
    outcome: Literal["placed", "placed_anew", "resumed", "repeated"] = Field(
        description=(
            "201: `placed` (a first slot), `placed_anew` (podslots had ended its slot: see `previous`); "
            "200: `resumed` (its reserved slot runs again), `repeated` (it already ran in this slot)"
        )
    )
    placed_anew: bool = Field(description="The task had a slot that podslots ended (lost, expired); this is another")
    previous: PreviousSlot | None = Field(default=None, description="Placed anew: the slot it had and why it ended")


class TaskAnswer(BaseModel):
    task_id: str
    pool: str
    pod: str | None
    slot: str | None
    task_type: TaskType
    status: TaskStatus
    reserved_until: int | None = None
    pod_ip: str | None = Field(
        default=None,
        description="The IP of the task's pod, as the cluster reports it; null until podslots has recorded it",
    )


class SlotAnswer(BaseModel):
    slot: str
    status: str
    task_id: str | None = None
    task_type: str | None = None
    since: int | None = None
    reserved_until: int | None = None


class PodAnswer(BaseModel):
    pool: str
    pod: str
    state: str
    busy: int
    pod_ip: str | None
    heartbeat_at: int | None
    held_at: int | None = Field(
        default=None, description="The last beat that listed the agent's tasks (leaks are judged from it alone)"
    )
    slots: list[SlotAnswer]
    cordoned: str | None = Field(
        default=None,
        description="Why the pod takes no new task (its tasks finish; then it is drained): the strongest of"
        " `cordon_reasons`, null while it has none",
    )
    cordon_reasons: list[str] = Field(
        default_factory=list,
        description="Every reason the pod is cordoned for (`pool deleted`, `outdated revision`, `operator`),"
        " strongest first; it takes no new task while any holds",
    )
    revision: str | None = Field(default=None, description="The pool template's revision the pod was made from")


class CordonAnswer(PodAnswer):
    changed: bool


def task_answer(task: Task) -> dict[str, Any]:
    return TaskAnswer(
        task_id=task.task_id,
        pool=task.pool,
        pod=task.pod,
        slot=task.slot,
        task_type=task.task_type,
        status=task.status,
        reserved_until=task.reserved_until,
        pod_ip=task.pod_ip,
    ).model_dump(mode="json")


def pod_answer(pod: Pod) -> dict[str, Any]:
    return PodAnswer(
        pool=pod.pool,
        pod=pod.name,
        state=pod.state.value,
        busy=pod.busy,
        pod_ip=pod.pod_ip,
        heartbeat_at=pod.heartbeat_at,
        held_at=pod.held_at,
        cordoned=shown_cordon(pod.cordon_reasons),
        cordon_reasons=cordon_order(pod.cordon_reasons),
        revision=pod.revision,
        slots=[
            SlotAnswer(
                slot=key,
                status=slot.status.value,
                task_id=slot.task_id,
                task_type=slot.task_type.value if slot.task_type else None,
                since=slot.since,
                reserved_until=slot.reserved_until,
            )
            for key, slot in pod.slots_in_order()
        ],
    ).model_dump(mode="json")
