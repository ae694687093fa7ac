"""What podslots reads and writes of a pod in the cluster, with no Kubernetes client behind it.

`ClusterPod` is a pod as a LIST answers it (read from the raw JSON); the labels and annotations
podslots writes on pods (`DO_NOT_DISRUPT`, the busy label, the claim); a pool's
PodDisruptionBudget manifest and its selectors; `Cluster`, the port the steps act through; and
`ClusterError`, what any failed call becomes. The one gateway that speaks to the API is
`cluster.py` (`KubeGateway`); the steps (reconcile, autoscale) import this module only, so they are
typed against the port and the gateway's client stays out of their imports.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from podslots.errors import PodSlotsError
from podslots.model import ADOPTED
from podslots.names import (
    CLAIM_ANNOTATION,
    DNS_SUBDOMAIN,
    DNS_SUBDOMAIN_MAX,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POOL_LABEL,
    REVISION_LABEL,
    SLOTS_ANNOTATION,
    SLOTS_MAX,
    SLOTS_MIN,
    is_pool_name,
    is_revision,
)
from podslots.scrub import scrub

# Node consolidation (Karpenter, cluster-autoscaler) may only take pods without these.
DO_NOT_DISRUPT: dict[str, str] = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
}
# While a pod holds a running or reserved slot it carries this label, valued with its pool's name (an
# adopted pod lacks the pool label, so the label names the pool itself); the pool's
# PodDisruptionBudget selects it, so the Eviction API (kubectl drain, node upgrades) waits for it.
BUSY_LABEL = "podslots.io/busy"
UNREADABLE = "(unreadable)"  # an owner's name that is not one podslots could have written: never logged as sent


class ClusterError(PodSlotsError):
    """A Kubernetes API call failed; `call` names it, `status` is the HTTP status if there was one.

    `reason` is partly the server's own words, so it is scrubbed here (cut, credential-like text and
    the exact `secrets` the call sent redacted): the message is safe to log, report and store.
    """

    code = "cluster_error"

    def __init__(self, call: str, reason: str, status: int | None = None, secrets: Iterable[str] = ()) -> None:
        reason = scrub(reason, secrets=secrets)
        super().__init__(f"kubernetes {call} failed: {reason}", call=call, status=status)
        self.call = call
        self.status = status


AGENT_CONTAINER = "agent"  # the agent of every pod podslots makes (pod_template_spec says so too)
WAITING_REASON = r"[A-Z][A-Za-z]{0,62}"  # a kubelet's reason is one CamelCase word: anything else is not repeated


class AgentState(StrEnum):
    """The agent container's state as its kubelet reports it (`status.containerStatuses`)."""

    RUNNING = "running"
    WAITING = "waiting"  # not started yet: pulling, ContainerCreating, ErrImagePull, CrashLoopBackOff...
    TERMINATED = "terminated"


@dataclass(frozen=True)
class AgentStatus:
    """What a pod's kubelet says of its `agent` container. Only fields checked as ours to repeat:
    a waiting reason that is one CamelCase word, an exit code that is an integer."""

    state: AgentState
    reason: str | None = None
    exit_code: int | None = None

    @classmethod
    def from_json(cls, statuses: Any) -> AgentStatus | None:
        """The `agent` entry of `containerStatuses`, or None when there is none or it says nothing
        readable: an unknown state, which is never taken for a dead agent."""
        entry = (
            next(
                (s for s in statuses if isinstance(s, Mapping) and s.get("name") == AGENT_CONTAINER),
                None,
            )
            if isinstance(statuses, list)
            else None
        )
        state = entry.get("state") if entry is not None else None
        if not isinstance(state, Mapping):
            return None
        if isinstance(state.get("terminated"), Mapping):
            code = state["terminated"].get("exitCode")
            return cls(AgentState.TERMINATED, exit_code=code if type(code) is int else None)
        if isinstance(state.get("running"), Mapping):
            return cls(AgentState.RUNNING)
        if isinstance(state.get("waiting"), Mapping):
            reason = state["waiting"].get("reason")
            readable = isinstance(reason, str) and re.fullmatch(WAITING_REASON, reason) is not None
            return cls(AgentState.WAITING, reason=reason if readable else None)
        return None


@dataclass(frozen=True)
class ClusterPod:
    name: str
    uid: str
    phase: str
    pod_ip: str | None
    deleting: bool
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""  # as listed: the claim's precondition
    controller: str | None = None  # `Kind/name` of the owner reference with `controller: true`
    agent: AgentStatus | None = None  # None: the kubelet has not said (or said nothing readable)

    @property
    def owner_pool(self) -> str | None:
        """The pool this pod belongs to, if any: the pool it was made for (its `podslots.io/pool`
        label), else the pool that claimed it on adoption. A pod belongs to at most one pool."""
        raw = self.labels.get(POOL_LABEL) or self.annotations.get(CLAIM_ANNOTATION) or None
        if raw is None:
            return None
        return raw if is_pool_name(raw) else UNREADABLE  # claimed all the same, by a name we do not repeat

    @property
    def finished(self) -> bool:
        """The pod's phase says it ended (restartPolicy Never). Not the only way it ends: a sidecar
        keeps a pod `Running` after its agent exited (`reconcile_plan.ended` reads `agent`)."""
        return self.phase in ("Failed", "Succeeded")

    @property
    def slots(self) -> int | None:
        """The slot count the pod was made with, if its annotation is one podslots could have written.

        ASCII digits only (`str.isdigit` accepts "²", which `int` refuses), within the settings'
        bounds: anything else is ignored and the pool's own slot count applies.
        """
        raw = self.annotations.get(SLOTS_ANNOTATION) or ""
        if not re.fullmatch(r"[0-9]{1,2}", raw):
            return None
        count = int(raw)
        return count if SLOTS_MIN <= count <= SLOTS_MAX else None

    @property
    def managed(self) -> bool:
        """Made by podslots (not a pod adopted from another controller)."""
        return self.labels.get(MANAGED_BY_LABEL) == MANAGED_BY

    @property
    def revision(self) -> str | None:
        """The template revision the pod was made from: its label, `adopted` for a pod podslots did
        not make (a roll-out replaces it), None for one made before revisions existed."""
        if not self.managed:
            return ADOPTED
        raw = self.labels.get(REVISION_LABEL) or ""
        return raw if is_revision(raw) else None

    @property
    def protected(self) -> bool:
        return all(self.annotations.get(k) == v for k, v in DO_NOT_DISRUPT.items())

    @property
    def unprotected(self) -> bool:
        return not any(k in self.annotations for k in DO_NOT_DISRUPT)

    @property
    def busy_label(self) -> str | None:
        """The pool whose disruption budget holds this pod (the busy label's value), if any."""
        return self.labels.get(BUSY_LABEL)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ClusterPod:
        meta = raw.get("metadata") or {}
        status = raw.get("status") or {}
        stamp = meta.get("creationTimestamp")
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            phase=status.get("phase", "Pending"),
            pod_ip=_ip(status.get("podIP")),
            deleting=meta.get("deletionTimestamp") is not None,
            created_at=created,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=str(meta.get("resourceVersion") or ""),
            controller=_controller(meta.get("ownerReferences")),
            agent=AgentStatus.from_json(status.get("containerStatuses")),
        )


def _ip(raw: Any) -> str | None:
    """The pod's IP if the server's answer is one (IPv4 or IPv6), in its normal form; anything else
    is dropped: the address is answered by `GET /tasks` and logged, so it must be an address."""
    if not isinstance(raw, str) or not raw or len(raw) > 45:
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _controller(references: Any) -> str | None:
    """The managing controller among a pod's owner references (`controller: true`; at most one)."""
    for ref in references if isinstance(references, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
            readable = re.fullmatch(r"[A-Z][A-Za-z0-9]{0,62}", kind) and re.fullmatch(DNS_SUBDOMAIN, name)
            return f"{kind}/{name}" if readable and len(name) <= DNS_SUBDOMAIN_MAX else UNREADABLE
    return None


class Cluster(Protocol):
    """What the steps need of a cluster (the gateway below, or a fake in a simulation)."""

    def list_pool_pods(
        self, namespace: str, pool: str, adopt_selector: Mapping[str, str] | None = None
    ) -> list[ClusterPod]: ...

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> ClusterPod: ...

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool: ...

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None: ...

    def patch_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> None: ...

    def ensure_disruption_budget(self, namespace: str, pool: str, now: float) -> bool: ...

    def delete_disruption_budget(self, namespace: str, pool: str) -> bool: ...

    def claim_pod(self, namespace: str, pod: ClusterPod, pool: str) -> bool: ...


def disruption_budget_name(pool: str) -> str:
    """`podslots-<pool>`: a pool name is a DNS label of at most 40 characters, so this is a valid name."""
    return f"podslots-{pool}"


def disruption_budget(pool: str) -> dict[str, Any]:
    """The pool's PodDisruptionBudget: no voluntary eviction of a pod while it carries the busy label.

    `maxUnavailable: 0` allows no disruption whatever the pods' controllers (a bare pod counts for
    none, so the budget expects none and allows none); `IfHealthyBudget` keeps an unready busy pod
    covered too (the API server's default, said here so nobody has to know it).
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": disruption_budget_name(pool),
            "labels": {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "maxUnavailable": 0,
            "selector": {"matchLabels": {BUSY_LABEL: pool}},
            "unhealthyPodEvictionPolicy": "IfHealthyBudget",
        },
    }


def pool_selector(pool: str) -> str:
    return f"{POOL_LABEL}={pool},{MANAGED_BY_LABEL}={MANAGED_BY}"


def label_selector(labels: Mapping[str, str]) -> str:
    """An equality selector; the settings' syntax rules keep `,` and `=` out of keys and values."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
