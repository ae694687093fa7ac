"""The heartbeat agent as a Kubernetes native sidecar (`pod_template.sidecar`).

With it, the agent image needs nothing of podslots but to write one file per held task: the sidecar
(clients/: `python -m podslots_client.agent`, its own small image) beats for the pod, naming the
tasks it finds in the shared directory. It is an init container with `restartPolicy: Always` (a
native sidecar, Kubernetes 1.29+): it starts before the agent, runs beside it, and does not keep a
finished pod alive. The directory is an `emptyDir` mounted into both, at the same path, and both
are told it by `PODSLOTS_HELD_TASKS_DIR`; the sidecar only reads it.

Its security context is the restricted profile whatever the pool's level, and its resources are
small and fixed: it is podslots' part of the pod, so nothing of it is the pool's to set. It names its
user and group (the image's USER, clients/sidecar/Dockerfile) rather than inherit the pod's: in a
baseline pod that runs as root (`securityContext.runAsUser: 0`), `runAsNonRoot` alone would make the
kubelet refuse to start it.
"""

from __future__ import annotations

from typing import Any

from podslots.pod_template_spec import AGENT_CONTAINER, HELD_TASKS_DIR, HELD_TASKS_VOLUME, SIDECAR_CONTAINER
from podslots.pod_template_spec import HELD_TASKS_ENV as HELD_TASKS_ENV_NAME

ENTRYPOINT = ["python", "-m", "podslots_client.agent"]
SIDECAR_USER = 65532  # clients/sidecar/Dockerfile's USER (and group)
RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
HELD_TASKS_ENV = {"name": HELD_TASKS_ENV_NAME, "value": HELD_TASKS_DIR}


def sidecar_container(image: str, own_env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": SIDECAR_CONTAINER,
        "image": image,
        "restartPolicy": "Always",
        "command": list(ENTRYPOINT),
        "env": [*own_env, dict(HELD_TASKS_ENV)],
        "resources": {kind: dict(amounts) for kind, amounts in RESOURCES.items()},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_USER,
            "runAsGroup": SIDECAR_USER,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": HELD_TASKS_VOLUME, "mountPath": HELD_TASKS_DIR, "readOnly": True}],
    }


def add_sidecar(spec: dict[str, Any], image: str, own_env: list[dict[str, Any]]) -> None:
    """Put the sidecar first among the init containers (it starts before any other), the shared
    volume among the volumes, and the mount and its env into the agent container."""
    spec["initContainers"] = [sidecar_container(image, own_env), *(spec.get("initContainers") or [])]
    spec["volumes"] = [*(spec.get("volumes") or []), {"name": HELD_TASKS_VOLUME, "emptyDir": {}}]
    for container in spec["containers"]:
        if container.get("name") == AGENT_CONTAINER:
            container["env"] = [*(container.get("env") or []), dict(HELD_TASKS_ENV)]
            mount = {"name": HELD_TASKS_VOLUME, "mountPath": HELD_TASKS_DIR}
            container["volumeMounts"] = [*(container.get("volumeMounts") or []), mount]
