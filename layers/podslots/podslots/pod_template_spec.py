"""`pod_template.spec` (a Kubernetes PodSpec) and `pod_template.sidecar`: the fields, and what podslots
keeps for itself in them (docs/architecture.md, "The pod template").

A spec is the pod as a manifest writes it (camelCase), checked against the PodSpec schema of the
pinned client (podspec_schema.py). Its container named `agent` is the agent. podslots still owns
the parts it relies on, and a spec that sets one is refused, naming the field:

- the `PODSLOTS_*` environment, in any container: the agent and the sidecar read podslots' values
  (`PODSLOTS_HELD_TASKS_DIR` is the user's to set when podslots adds no sidecar: the user's own
  heartbeat needs it).
  An `envFrom` source may not give its keys that prefix either. A ConfigMap's or Secret's own keys
  cannot be seen at the PUT, but Kubernetes lets a container's `env` win over `envFrom`, and
  podslots' values are `env`: they still hold;
- `serviceAccountName` (or its old alias `serviceAccount`) of podslots itself, which may create and
  delete pods;
- the pod's `restartPolicy`: `Never`, so an agent that exits is gone and its tasks are reported lost
  instead of held by a restarted agent that forgot them (an init container's `restartPolicy: Always`,
  a native sidecar, is the user's). A regular container's own `restartPolicy` or
  `restartPolicyRules` (container restart rules, KEP-5307) would restart it in place all the same;
- `activeDeadlineSeconds`: the kubelet would end a pod that holds a reserved slot, and the apply
  would have no pod to run on; podslots decides when a pod ends (autoscale, roll-out);
- `nodeName`: it skips the scheduler, so taints (and the rule against tolerating them all) and
  podslots' placement would not apply; refused at every pod-security level;
- `ephemeralContainers`: the API server takes none at create, and no pod check would see them later;
- with `sidecar`, the container name `podslots-sidecar`, the volume name `podslots-held-tasks` and a
  volume mount at /var/run/podslots/tasks in any container (the sidecar's shared directory: two mounts
  at one path).

The older fields that a spec also says (`resources`, `env`...) may not be given beside it: two
sources for one field would leave the reader guessing which wins. `labels` and `annotations` are
pod metadata (a PodSpec has none) and stay; their `podslots.io/` keys are podslots' own.

A stored document was checked when it was put: read back, none of this is applied again.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from podslots.errors import FieldProblems
from podslots.names import CONTROLLER_SERVICE_ACCOUNT, PODSLOTS_LABEL_PREFIX
from podslots.podspec_schema import problems

AGENT_CONTAINER = "agent"
SIDECAR_CONTAINER = "podslots-sidecar"
HELD_TASKS_VOLUME = "podslots-held-tasks"
HELD_TASKS_DIR = "/var/run/podslots/tasks"
OWN_ENV_PREFIX = "PODSLOTS_"
HELD_TASKS_ENV = "PODSLOTS_HELD_TASKS_DIR"
# The older template fields a spec says too: not both.
OVERLAPPING = {
    "resources": "containers[agent].resources",
    "env": "containers[agent].env",
    "tolerations": "tolerations",
    "node_selector": "nodeSelector",
    "service_account": "serviceAccountName",
    "termination_grace_period_s": "terminationGracePeriodSeconds",
    "security_context": "containers[agent].securityContext",
    "automount_service_account_token": "automountServiceAccountToken",
}
SPEC = "pod_template.spec"
Problem = tuple[str, str]


def _seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(_seq(spec.get(kind))):
            if isinstance(container, Mapping):
                yield f"{SPEC}.{kind}[{i}]", container


def agent_container(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in _seq(spec.get("containers")) if isinstance(c, Mapping) and c.get("name") == "agent"), None)


def is_own_env(name: object, *, sidecar: bool) -> bool:
    """One rule for both paths (the older `env` map and a spec's containers): the prefix, not a list
    of today's names, so a variable podslots adds (PODSLOTS_HELD_TASKS_DIR) is covered too. That one
    is podslots' only with the sidecar: without it, the user runs the heartbeat and tells it the
    directory (docs/agent-protocol.md)."""
    if not (isinstance(name, str) and name.startswith(OWN_ENV_PREFIX)):
        return False
    return sidecar or name != HELD_TASKS_ENV


def _own_env(spec: Mapping[str, Any], sidecar: bool) -> Iterator[Problem]:
    for path, container in _containers(spec):
        for j, var in enumerate(_seq(container.get("env"))):
            if is_own_env(var.get("name") if isinstance(var, Mapping) else None, sidecar=sidecar):
                yield f"{path}.env[{j}].name", f"{OWN_ENV_PREFIX}* variables are podslots' own: it sets them"
        for j, source in enumerate(_seq(container.get("envFrom"))):
            prefix = source.get("prefix") if isinstance(source, Mapping) else None
            if isinstance(prefix, str) and prefix.startswith(OWN_ENV_PREFIX):
                yield f"{path}.envFrom[{j}].prefix", f"{OWN_ENV_PREFIX}* variables are podslots' own: it sets them"


def _restarts(spec: Mapping[str, Any]) -> Iterator[Problem]:
    """A regular container restarted in place is an agent that forgot its tasks, whatever the pod's
    restartPolicy says; an init container's restartPolicy (Always: a native sidecar) stays the user's."""
    for i, container in enumerate(_seq(spec.get("containers"))):
        for field in ("restartPolicy", "restartPolicyRules"):
            if isinstance(container, Mapping) and container.get(field) is not None:
                yield (
                    f"{SPEC}.containers[{i}].{field}",
                    "a container restarted in place forgets its tasks: podslots' pods never restart one",
                )


def _mounts_at_held_tasks(spec: Mapping[str, Any]) -> Iterator[Problem]:
    for path, container in _containers(spec):
        for j, mount in enumerate(_seq(container.get("volumeMounts"))):
            where = mount.get("mountPath") if isinstance(mount, Mapping) else None
            if isinstance(where, str) and posixpath.normpath(where) == HELD_TASKS_DIR:
                yield (
                    f"{path}.volumeMounts[{j}].mountPath",
                    f"{HELD_TASKS_DIR} is where podslots mounts its sidecar's directory",
                )


def _names(spec: Mapping[str, Any], sidecar: bool) -> Iterator[Problem]:
    seen: set[str] = set()
    for path, container in _containers(spec):
        name = container.get("name")
        if name in seen:
            yield f"{path}.name", "another container has this name"
        seen.add(str(name))
        if sidecar and name == SIDECAR_CONTAINER:
            yield f"{path}.name", f"{SIDECAR_CONTAINER} is the sidecar podslots adds"
    if AGENT_CONTAINER not in {c.get("name") for c in _seq(spec.get("containers")) if isinstance(c, Mapping)}:
        yield f"{SPEC}.containers", "needs a container named agent: the agent podslots gives slots to"
    for i, volume in enumerate(_seq(spec.get("volumes"))):
        if sidecar and isinstance(volume, Mapping) and volume.get("name") == HELD_TASKS_VOLUME:
            yield f"{SPEC}.volumes[{i}].name", f"{HELD_TASKS_VOLUME} is the volume podslots shares with its sidecar"
    if sidecar:
        yield from _mounts_at_held_tasks(spec)


def _pod_fields(spec: Mapping[str, Any]) -> Iterator[Problem]:
    if "restartPolicy" in spec:
        yield f"{SPEC}.restartPolicy", "is podslots' own (Never): an agent that exits is gone, its tasks lost"
    if spec.get("ephemeralContainers") is not None:
        yield f"{SPEC}.ephemeralContainers", "a pod is created without ephemeral containers"
    if spec.get("activeDeadlineSeconds") is not None:
        yield (
            f"{SPEC}.activeDeadlineSeconds",
            "is podslots' own: a pod may hold a reserved slot; podslots ends its pods",
        )
    if spec.get("nodeName") is not None:
        yield f"{SPEC}.nodeName", "skips the scheduler (and taints): podslots' pods are placed by the scheduler"
    for field in ("serviceAccountName", "serviceAccount"):
        if spec.get(field) == CONTROLLER_SERVICE_ACCOUNT:
            yield f"{SPEC}.{field}", f"{CONTROLLER_SERVICE_ACCOUNT!r} is podslots' own account"


def spec_problems(spec: Any, *, sidecar: bool, image: str | None) -> list[Problem]:
    """Every way `spec` is not a PodSpec, or sets what podslots owns; empty when it is fine."""
    shape = problems(spec, SPEC)
    if shape or not isinstance(spec, Mapping):
        return shape
    found = [*_pod_fields(spec), *_restarts(spec), *_names(spec, sidecar), *_own_env(spec, sidecar)]
    agent = agent_container(spec)
    named = agent.get("image") if agent is not None else None
    if agent is not None and named is None and image is None:
        found.append(("pod_template.image", "is required: here or as the spec's agent container's image"))
    if named is not None and image is not None and named != image:
        found.append(("pod_template.image", "differs from pod_template.spec.containers[agent].image; give one"))
    return found


def own_keys(labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[Problem]:
    """`podslots.io/` labels and annotations are podslots' own (the pool, the slots, the revision)."""
    return [
        (f"pod_template.{where}[{key!r}]", f"{PODSLOTS_LABEL_PREFIX} keys are podslots' own")
        for where, keys in (("labels", labels), ("annotations", annotations))
        for key in sorted(keys)
        if key.startswith(PODSLOTS_LABEL_PREFIX)
    ]


SPEC_FIELD: Any = Field(
    default=None,
    description=(
        "A Kubernetes PodSpec as a manifest writes it (camelCase), checked against the schema of the "
        "client podslots pins; its container named `agent` is the agent. With it, resources, env, "
        "tolerations, node_selector, service_account, termination_grace_period_s, security_context and "
        "automount_service_account_token may not also be given. podslots sets restartPolicy and the "
        "PODSLOTS_* env itself, and refuses activeDeadlineSeconds, nodeName and a regular container's "
        "restartPolicy or restartPolicyRules."
    ),
)
SIDECAR_FIELD: Any = Field(
    default=None,
    min_length=1,
    max_length=512,
    pattern=r"^\S+$",
    description=(
        "An image of the podslots heartbeat agent (clients/): podslots adds it as a native sidecar "
        "(init container `podslots-sidecar`, restartPolicy Always) sharing an emptyDir at "
        f"{HELD_TASKS_DIR} with the agent (PODSLOTS_HELD_TASKS_DIR)."
    ),
)


class SpecRules(BaseModel):
    """The rules `PodTemplate` (settings.py) adds for its `spec` and `sidecar` fields (declared there,
    with SPEC_FIELD and SIDECAR_FIELD, so the document keeps its order); kept here, as settings.py
    holds the rest of the settings."""

    @model_validator(mode="after")
    def _podslots_keeps_its_parts(self, info: ValidationInfo) -> Self:
        if info.context and info.context.get("stored"):
            return self
        spec, sidecar, image = getattr(self, "spec", None), getattr(self, "sidecar", None), getattr(self, "image", None)
        found = own_keys(getattr(self, "labels", {}), getattr(self, "annotations", {}))
        if spec is None and image is None:
            found.append(("pod_template.image", "is required (or a spec whose agent container names one)"))
        if spec is not None:
            found += spec_problems(spec, sidecar=sidecar is not None, image=image)
            found += [
                (f"pod_template.{field}", f"is said by {SPEC}.{where}: give one or the other")
                for field, where in OVERLAPPING.items()
                if field in self.model_fields_set
            ]
        if found:
            raise FieldProblems(found)
        return self
