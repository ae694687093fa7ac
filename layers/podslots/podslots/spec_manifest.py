"""The pod's spec made from a pool's `pod_template.spec` (a PodSpec as the user wrote it).

The user's spec is kept as written, but for podslots' own parts: `restartPolicy: Never`, the
`PODSLOTS_*` env first in the agent container's, and the agent's image from `pod_template.image`
when the container names none (settings refuse two different ones). Then every container, init or
regular, gets the restricted profile's values where it leaves them unset (as the agent container
gets them from the older fields): no privilege escalation, every capability dropped, non-root, the
runtime's default seccomp profile. A value the user did set is kept; only one that breaks the
pool's level is refused (pod_security.check, at the PUT and by reconcile). Non-root and seccomp are
left alone where the pod's own securityContext sets them (the container inherits them), and
non-root where user 0 is asked for (baseline allows root; the kubelet would refuse the pair).
"""

from __future__ import annotations

import copy
from typing import Any

from podslots.pod_template_spec import AGENT_CONTAINER

DEFAULT_GRACE_S = 30  # Kubernetes' default too, and the older field's


def _unset(mapping: dict[str, Any], key: str) -> bool:
    return mapping.get(key) is None


def _context(holder: dict[str, Any]) -> dict[str, Any]:
    """The holder's securityContext, made an object where it is unset."""
    if not isinstance(holder.get("securityContext"), dict):
        holder["securityContext"] = {}
    context: dict[str, Any] = holder["securityContext"]
    return context


def fill_restricted_defaults(container: dict[str, Any], pod_context: dict[str, Any]) -> None:
    context = _context(container)
    if _unset(context, "allowPrivilegeEscalation"):
        context["allowPrivilegeEscalation"] = False
    if not isinstance(context.get("capabilities"), dict):
        context["capabilities"] = {}
    if _unset(context["capabilities"], "drop"):
        context["capabilities"]["drop"] = ["ALL"]
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    if _unset(context, "runAsNonRoot") and _unset(pod_context, "runAsNonRoot") and user != 0:
        context["runAsNonRoot"] = True
    if _unset(context, "seccompProfile") and _unset(pod_context, "seccompProfile"):
        context["seccompProfile"] = {"type": "RuntimeDefault"}


def spec_from_user_spec(
    user_spec: dict[str, Any], image: str | None, own_env: list[dict[str, Any]], automount: bool
) -> dict[str, Any]:
    spec = copy.deepcopy(user_spec)
    spec["restartPolicy"] = "Never"
    if _unset(spec, "terminationGracePeriodSeconds"):
        spec["terminationGracePeriodSeconds"] = DEFAULT_GRACE_S
    if _unset(spec, "automountServiceAccountToken"):
        spec["automountServiceAccountToken"] = automount
    pod_context: dict[str, Any] = spec["securityContext"] if isinstance(spec.get("securityContext"), dict) else {}
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            fill_restricted_defaults(container, pod_context)
            if container.get("name") == AGENT_CONTAINER:
                container["image"] = container.get("image") or image
                container["env"] = [*own_env, *(container.get("env") or [])]
    return spec
