"""What each pool setting means, for the fields that do not say it beside their own definition.

A field's description is part of the API: the OpenAPI document, the client's settings schema and
docs/settings.md (`make docs`) all read it from the settings' JSON schema. Short ones sit on the
field itself in settings.py; the rest live here, so that settings.py stays a page of rules, and
reach the schema through each model's `json_schema_extra` (`described`). A field with neither is
a test failure (tests/unit/test_settings_reference.py), as is a text here for a field that is gone.
"""

from __future__ import annotations

from typing import Any

FIELD_HELP: dict[str, dict[str, str]] = {
    "Resources": {
        "requests": (
            "The agent container's resource requests, by resource name (`cpu`, `memory`, `nvidia.com/gpu`), "
            "as Kubernetes quantities (`500m`, `2Gi`). Size them for `slots_per_pod` tasks at once."
        ),
        "limits": "The agent container's resource limits, by resource name, as Kubernetes quantities.",
    },
    "Toleration": {
        "key": "The taint key this toleration matches; empty with `operator: Exists` matches every taint.",
        "operator": "`Equal` (the default in Kubernetes: key and value match) or `Exists` (the key alone).",
        "value": "The taint value to match with `operator: Equal`.",
        "effect": "The taint effect to match (`NoSchedule`, `PreferNoSchedule`, `NoExecute`); empty: all.",
        "toleration_seconds": "`NoExecute` only: how long the pod stays bound after the taint appears.",
    },
    "SecurityContext": {
        "run_as_non_root": (
            "The kubelet refuses to start a container whose user is root. `false` needs "
            "`pod_security: baseline` (restricted requires it)."
        ),
        "run_as_user": "The UID the agent runs as; 0 only with `run_as_non_root: false`. Empty: the image's user.",
        "run_as_group": "The primary GID the agent runs as. Empty: the image's group.",
        "fs_group": "Pod level: the group that owns the pod's volumes, so a non-root agent can write them.",
        "allow_privilege_escalation": (
            "Whether a process may gain more privileges than its parent (setuid binaries); `true` needs "
            "`pod_security: baseline`."
        ),
        "read_only_root_filesystem": "Mount the container's root filesystem read-only.",
        "capabilities_add": (
            "Linux capabilities given back after `drop: [ALL]`, as Kubernetes names them (`NET_BIND_SERVICE`, "
            "no `CAP_` prefix); restricted allows only `NET_BIND_SERVICE`, baseline the runtime's default set."
        ),
        "seccomp_profile": (
            "The container's seccomp profile: `RuntimeDefault` (the default). `Unconfined` breaks both "
            "`pod_security` levels, so a PUT that sets it is refused."
        ),
    },
    "PodTemplate": {
        "image": "The agent's container image, pulled by the kubelet (`registry.example/tf-agent:1.9`).",
        "service_account": (
            "The Kubernetes ServiceAccount the agent pods run as (the one associated with the agent role "
            "through EKS Pod Identity); never `podslots`. Empty: the namespace's `default`."
        ),
        "resources": "Requests and limits of the agent container.",
        "env": (
            "Environment variables of the agent container (strings). Not for secrets: stored in the table, "
            "answered to every operator and written into each pod's spec. `PODSLOTS_*` variables podslots "
            "sets itself are refused."
        ),
        "node_selector": "Node labels every agent pod's node must carry (`nodeSelector`).",
        "tolerations": "Taints the agent pods tolerate, as in a pod spec.",
        "labels": (
            "Labels added to every agent pod; podslots' own (`podslots.io/*`, `app.kubernetes.io/managed-by`) "
            "win over them."
        ),
        "annotations": (
            "Annotations added to every agent pod; not the AppArmor or seccomp ones (`security_context` "
            "says which profile)."
        ),
        "termination_grace_period_s": (
            "Seconds the agent has between SIGTERM and SIGKILL when its pod is deleted (podslots deletes only "
            "idle pods)."
        ),
        "automount_service_account_token": (
            "Mount the ServiceAccount's Kubernetes API token into the pod. The agent talks to podslots with "
            "its IAM identity, not to Kubernetes, so it is off unless the agent needs the cluster's API."
        ),
        "security_context": (
            "The agent container's security context; every field left out keeps the restricted default, "
            "whatever `pod_security` allows."
        ),
    },
    "PoolSettings": {
        "slots_per_pod": "How many tasks one agent pod runs at once (its task slots). Changing it rolls the pods.",
        "min_pods": "The fewest pods the pool keeps, busy or idle; not above `max_pods`.",
        "max_pods": "The most pods the pool may have (a roll-out may add up to `max_surge` more for a while).",
        "scale_down_delay_s": (
            "Seconds the rule must want fewer pods, without a break, before a step down; a step up is at once."
        ),
        "reservation_ttl_s": (
            "How long a plan's slot stays reserved for its apply after `apply_pending` (24 h by default); then "
            "the task is `expired`, the slot freed, and the queue plans again."
        ),
        "heartbeat_timeout_s": (
            "A ready pod with no beat for this long is `unhealthy`: it takes no new task until it beats again."
        ),
        "startup_timeout_s": "A pod that has not registered (its first beat) this long after its creation is deleted.",
        "leak_grace_s": (
            "A slot whose task the agent's beats have stopped listing for this long is freed and the task "
            "`lost` (judged only from beats that list their tasks)."
        ),
        "pod_template": "What every agent pod of the pool is made from. Changing it rolls the pods, busy-safe.",
        "mode": (
            "How far podslots acts on the pool's cluster: `active` (everything, the default), `observe` "
            "(records what it would do, changes nothing in the cluster) or `paused` (no scale step, no "
            "deletion; allocation goes on)."
        ),
    },
}


def described(schema: dict[str, Any], model: type) -> None:
    """`json_schema_extra` of the settings' models: each property without a description of its own
    takes the one `FIELD_HELP` holds for it (the field's own, when it has one, wins)."""
    texts = FIELD_HELP.get(model.__name__, {})
    for name, prop in schema.get("properties", {}).items():
        if name in texts:
            prop.setdefault("description", texts[name])
