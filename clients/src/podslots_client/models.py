"""The API's answers as frozen dataclasses.

Each keeps the whole answer in `raw`, read-only: fields the server adds later are there before
this package learns their names, and unknown fields never fail. Fields newer than the first server
(a pod's `cordoned` and `revision`, a pool's `revision` and `rollout`) are None when an older server
leaves them out; a pod's `cordon_reasons` is then read from its one `cordoned`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _reasons(data: Mapping[str, Any]) -> tuple[str, ...]:
    """A pod's cordon reasons; from a server older than the list, its one `cordoned` (or none)."""
    listed = data.get("cordon_reasons")
    if isinstance(listed, list):
        return tuple(str(r) for r in listed)
    one = data.get("cordoned")
    return (one,) if isinstance(one, str) else ()


def _raw(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


def _opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None


@dataclass(frozen=True)
class PreviousSlot:
    """The slot a task placed anew had, and how it ended: `status` is `lost` or `expired`, `reason`
    says why (`reservation expired`, `vanished`, `leaked`, `reserved slot gone`, ...; None if unknown)."""

    pod: str
    slot: str
    status: str
    reason: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreviousSlot:
        return cls(pod=data["pod"], slot=data["slot"], status=data["status"], reason=data.get("reason"), raw=_raw(data))


@dataclass(frozen=True)
class Allocation:
    """A task's slot. `created` is False when the task already held it (200).

    `outcome` says what happened: `placed` (201, a first slot), `placed_anew` (201: podslots had
    ended the task's slot, `previous` says which and why; an apply would not run where its plan
    did), `resumed` (200: its reserved slot runs again), `repeated` (200: it already ran there).
    None from a server older than the field; `placed_anew` is then False.
    """

    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    status: str
    created: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    outcome: str | None = None
    placed_anew: bool = False
    previous: PreviousSlot | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool) -> Allocation:
        return cls(
            task_id=data["task_id"],
            pool=data["pool"],
            pod=data["pod"],
            slot=data["slot"],
            pod_ip=data.get("pod_ip"),
            status=data["status"],
            created=created,
            raw=_raw(data),
            outcome=data.get("outcome"),
            placed_anew=bool(data.get("placed_anew")),
            previous=PreviousSlot.from_json(data["previous"]) if data.get("previous") else None,
        )


@dataclass(frozen=True)
class Task:
    """Where a task is. A waiting (`pending`), `lost` or `expired` task has no pod or slot."""

    task_id: str
    pool: str
    pod: str | None
    slot: str | None
    task_type: str
    status: str
    reserved_until: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    pod_ip: str | None = None  # the pod's IP once podslots knows it (absent from older servers' answers)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        return cls(
            task_id=data["task_id"],
            pool=data["pool"],
            pod=data.get("pod"),
            slot=data.get("slot"),
            task_type=data["task_type"],
            status=data["status"],
            reserved_until=_opt_int(data.get("reserved_until")),
            raw=_raw(data),
            pod_ip=data.get("pod_ip"),
        )


@dataclass(frozen=True)
class StatusChange:
    """The task after a status report; `changed` is False when it already had that status."""

    task: Task
    changed: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusChange:
        return cls(task=Task.from_json(data), changed=bool(data["changed"]))


@dataclass(frozen=True)
class Slot:
    slot: str
    status: str
    task_id: str | None
    task_type: str | None
    since: int | None
    reserved_until: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Slot:
        return cls(
            slot=data["slot"],
            status=data["status"],
            task_id=data.get("task_id"),
            task_type=data.get("task_type"),
            since=_opt_int(data.get("since")),
            reserved_until=_opt_int(data.get("reserved_until")),
            raw=_raw(data),
        )


@dataclass(frozen=True)
class Pod:
    """A pod and its slots: the heartbeat's answer, each pod of a pool's view, a cordon's answer.

    `cordoned` says why the pod takes no new task (`operator`, `pool deleted`, `outdated revision`;
    None: it is in service): its running and reserved tasks finish, then it is drained. A pod may be
    cordoned for several reasons at once: `cordon_reasons` lists them all, strongest first
    (`cordoned` is the first), and the pod stays out of service while any holds. `revision` is
    the pool template's revision it was made from (10 hex digits, or `adopted`; None: made before
    revisions, or an older server).
    """

    pool: str
    pod: str
    state: str
    busy: int
    pod_ip: str | None
    heartbeat_at: int | None
    slots: tuple[Slot, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    cordoned: str | None = None
    revision: str | None = None
    cordon_reasons: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pod:
        return cls(
            pool=data["pool"],
            pod=data["pod"],
            state=data["state"],
            busy=int(data["busy"]),
            pod_ip=data.get("pod_ip"),
            heartbeat_at=_opt_int(data.get("heartbeat_at")),
            slots=tuple(Slot.from_json(s) for s in data.get("slots") or ()),
            raw=_raw(data),
            cordoned=data.get("cordoned"),
            revision=data.get("revision"),
            cordon_reasons=_reasons(data),
        )


@dataclass(frozen=True)
class CordonChange:
    """The pod after a cordon or an uncordon; `changed` is False when it already was so."""

    pod: Pod
    changed: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CordonChange:
        return cls(pod=Pod.from_json(data), changed=bool(data["changed"]))


@dataclass(frozen=True)
class OutdatedPod:
    """A pod of an older revision that a roll-out replaces, and what it still holds."""

    pod: str
    revision: str | None
    state: str
    cordoned: str | None
    running: int
    reserved: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    cordon_reasons: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutdatedPod:
        return cls(
            pod=data["pod"],
            revision=data.get("revision"),
            state=data["state"],
            cordoned=data.get("cordoned"),
            running=int(data.get("running") or 0),
            reserved=int(data.get("reserved") or 0),
            raw=_raw(data),
            cordon_reasons=_reasons(data),
        )


@dataclass(frozen=True)
class Rollout:
    """A pool's roll-out to its current template `revision`: it is `rolling` while outdated pods live."""

    revision: str
    rolling: bool
    pods_by_revision: Mapping[str, int]
    outdated: tuple[OutdatedPod, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        by_revision = {str(k): int(v) for k, v in (data.get("pods_by_revision") or {}).items()}
        return cls(
            revision=data["revision"],
            rolling=bool(data.get("rolling")),
            pods_by_revision=_raw(by_revision),
            outdated=tuple(OutdatedPod.from_json(p) for p in data.get("outdated") or ()),
            raw=_raw(data),
        )


@dataclass(frozen=True)
class Pool:
    """A pool's settings (the server's whole document, defaults filled in), live figures and pods;
    its current template `revision` and its `rollout` (None from an older server)."""

    pool: str
    deleting: bool
    settings: Mapping[str, Any]
    figures: Mapping[str, Any]
    pods: tuple[Pod, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    revision: str | None = None
    rollout: Rollout | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pool:
        return cls(
            pool=data["pool"],
            deleting=bool(data.get("deleting")),
            settings=_raw(data["settings"]),
            figures=_raw(data.get("figures") or {}),
            pods=tuple(Pod.from_json(p) for p in data.get("pods") or ()),
            raw=_raw(data),
            revision=data.get("revision"),
            rollout=Rollout.from_json(data["rollout"]) if data.get("rollout") else None,
        )


@dataclass(frozen=True)
class PoolPut:
    """The settings as stored, defaults filled in; `created` is False when they replaced others."""

    pool: str
    settings: Mapping[str, Any]
    created: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, created: bool) -> PoolPut:
        return cls(pool=data["pool"], settings=_raw(data["settings"]), created=created, raw=_raw(data))


@dataclass(frozen=True)
class PoolDeletion:
    """`status` is `deleting`: the pool takes no new task, `pods_remaining` pods drain, and the pool
    goes once autoscale's LIST shows none of its pods (`deleted` came only from older servers)."""

    pool: str
    status: str
    pods_remaining: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolDeletion:
        return cls(pool=data["pool"], status=data["status"], pods_remaining=int(data["pods_remaining"]), raw=_raw(data))


@dataclass(frozen=True)
class PoolEvent:
    """One entry of a pool's history: its kind, when (epoch seconds), and the rest as `detail`."""

    kind: str
    at: int
    detail: Mapping[str, Any]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolEvent:
        detail = {k: v for k, v in data.items() if k not in ("kind", "at")}
        return cls(kind=data["kind"], at=int(data["at"]), detail=_raw(detail), raw=_raw(data))
