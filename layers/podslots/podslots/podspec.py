"""The agent pod's manifest, made from the pool's template.

podslots creates bare pods (no Deployment, so nothing else picks which pod dies). Each one carries
the labels reconcile selects on, the slot count it was made with, and what the agent needs to beat:
the pool, its own name (downward API) and the heartbeat URL. `restartPolicy: Never`: an agent that
exits is gone, and reconcile reports its tasks lost instead of a restarted agent that forgot them.

The agent talks to podslots' API with its own IAM identity, never to Kubernetes, so by default it
gets no service account token (`automountServiceAccountToken: false`) and a restricted container:
non-root, no privilege escalation, every capability dropped, the runtime's default seccomp profile.
A pool may loosen these (`automount_service_account_token`, `security_context`) within its
`pod_security` level, never to privileged: `security_violations` checks the whole manifest this
module makes against the level (pod_security.py), at every PUT and on every reconcile run.
podslots' own service account is refused for the agents in both places a pool can name one:
settings.py for `service_account`, pod_template_spec.py for a spec's `serviceAccountName`.

A pool with `pod_template.spec` gives the whole PodSpec (spec_manifest.py keeps podslots' parts and
fills the restricted defaults); `pod_template.sidecar` adds the heartbeat agent as a native sidecar
(heartbeat_sidecar.py). The same level check covers every container, init container and volume.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from podslots.heartbeat_sidecar import add_sidecar
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, REVISION_LABEL, SLOTS_ANNOTATION
from podslots.pod_security import check
from podslots.pod_security_reading import Violation
from podslots.settings import PodTemplate, PoolSettings, SecurityContext, template_revision
from podslots.spec_manifest import spec_from_user_spec

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def new_pod_name(pool: str) -> str:
    """`<pool>-<5 random>`: the name is known before the create call, so the item comes first."""
    return f"{pool}-{''.join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))}"


def heartbeat_url(api_base_url: str, pool: str, pod: str) -> str:
    return f"{api_base_url.rstrip('/')}/pools/{pool}/pods/{pod}/heartbeat"


def container_security_context(context: SecurityContext) -> dict[str, Any]:
    """Restricted by default (the Pod Security Standards' `restricted` profile); the pool may loosen it."""
    out: dict[str, Any] = {
        "runAsNonRoot": context.run_as_non_root,
        "allowPrivilegeEscalation": context.allow_privilege_escalation,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": context.seccomp_profile},
    }
    if context.capabilities_add:
        out["capabilities"]["add"] = sorted(set(context.capabilities_add))
    if context.read_only_root_filesystem:
        out["readOnlyRootFilesystem"] = True
    if context.run_as_user is not None:
        out["runAsUser"] = context.run_as_user
    if context.run_as_group is not None:
        out["runAsGroup"] = context.run_as_group
    return out


def security_violations(pool: str, settings: PoolSettings) -> list[Violation]:
    """What the pool's pods would break of its `pod_security` level: the manifest this module makes
    for them, checked whole (a pod's name and the API's URL change nothing the standard reads)."""
    return check(pod_manifest(pool, f"{pool}-check", settings, "https://podslots.invalid"), settings.pod_security)


def podslots_env(pool: str, name: str, settings: PoolSettings, api_base_url: str) -> list[dict[str, Any]]:
    """What the agent (and the sidecar) need to beat: podslots' own, never the pool's to set."""
    return [
        {"name": "PODSLOTS_POOL", "value": pool},
        {"name": "PODSLOTS_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PODSLOTS_SLOTS", "value": str(settings.slots_per_pod)},
        {"name": "PODSLOTS_HEARTBEAT_URL", "value": heartbeat_url(api_base_url, pool, name)},
    ]


def _template_spec(template: PodTemplate, own_env: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec of the older fields (a pool without `spec`: the same pod as before `spec` existed)."""
    env = own_env + [{"name": key, "value": value} for key, value in sorted(template.env.items())]
    container: dict[str, Any] = {
        "name": "agent",
        "image": template.image,
        "env": env,
        "securityContext": container_security_context(template.security_context),
    }
    resources = template.resources.model_dump(exclude_defaults=True)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": template.termination_grace_period_s,
        "automountServiceAccountToken": template.automount_service_account_token,
        "containers": [container],
    }
    if template.security_context.fs_group is not None:
        spec["securityContext"] = {"fsGroup": template.security_context.fs_group}
    if template.service_account:
        spec["serviceAccountName"] = template.service_account
    if template.node_selector:
        spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        spec["tolerations"] = [
            {
                key: value
                for key, value in {
                    "key": t.key,
                    "operator": t.operator,
                    "value": t.value,
                    "effect": t.effect,
                    "tolerationSeconds": t.toleration_seconds,
                }.items()
                if value is not None
            }
            for t in template.tolerations
        ]
    return spec


def pod_manifest(pool: str, name: str, settings: PoolSettings, api_base_url: str) -> dict[str, Any]:
    template = settings.pod_template
    own_env = podslots_env(pool, name, settings, api_base_url)
    if template.spec is None:
        spec = _template_spec(template, own_env)
    else:
        automount = template.automount_service_account_token
        spec = spec_from_user_spec(template.spec, template.image, own_env, automount)
    if template.sidecar is not None:
        add_sidecar(spec, template.sidecar, own_env)
    labels = {
        **template.labels,
        POOL_LABEL: pool,
        MANAGED_BY_LABEL: MANAGED_BY,
        REVISION_LABEL: template_revision(settings),
    }
    annotations = {**template.annotations, SLOTS_ANNOTATION: str(settings.slots_per_pod)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
