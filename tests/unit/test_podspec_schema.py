"""The PodSpec schema file and its validator (podslots.podspec_schema), and the rules podslots keeps
over a spec (podslots.pod_template_spec), as tables.

The validator reads a JSON file so that the pools function needs no `kubernetes`; these tests hold
the file to the pinned client: regenerated, it is the committed one, and every case below is judged
alike by the validator and by the client's own V1PodSpec (the model `create_namespaced_pod`
validates its body against before it sends it).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import models

from podslots.pod_template_spec import spec_problems
from podslots.podspec_schema import SCHEMA_FILE, kubernetes_client_version, problems, schema
from podslots.request_guards import MAX_BODY_DEPTH
from podslots.spec_manifest import fill_restricted_defaults
from tools import podspec_schema

AGENT = {"name": "agent", "image": "registry.example/tf-agent:1.9"}


def test_the_committed_schema_is_the_one_the_pinned_client_makes():
    # When the schema is made again from the installed (pinned) client
    fresh = podspec_schema.render()
    # Then it is the committed file: a new pin without `make podspec-schema` fails here
    assert SCHEMA_FILE.read_text() == fresh, "stale: run `make podspec-schema`"
    import kubernetes

    assert kubernetes_client_version() == kubernetes.__version__


def spec(**fields: Any) -> dict[str, Any]:
    return {"containers": [dict(AGENT)], **fields}


def container(**fields: Any) -> dict[str, Any]:
    return {"containers": [{**AGENT, **fields}]}


# (case, spec, the paths the validator names; empty: a PodSpec)
CASES: list[tuple[str, Any, list[str]]] = [
    ("the least spec", spec(), []),
    ("volumes and mounts", {
        "containers": [{**AGENT, "volumeMounts": [{"name": "w", "mountPath": "/work", "readOnly": True}]}],
        "volumes": [{"name": "w", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "s", "secret": {"secretName": "x"}}],
    }, []),
    ("command, args, probes by port name or number", container(
        command=["tf"], args=["--x"],
        livenessProbe={"httpGet": {"path": "/", "port": "http"}},
        readinessProbe={"tcpSocket": {"port": 8080}},
    ), []),
    ("a native sidecar", spec(initContainers=[{"name": "s", "image": "i", "restartPolicy": "Always"}]), []),
    ("scheduling", spec(
        priorityClassName="p", runtimeClassName="r", imagePullSecrets=[{"name": "c"}],
        topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
        tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule"}], nodeSelector={"a/b": "c"},
    ), []),
    ("quantities as strings", container(resources={"limits": {"cpu": "1", "memory": "1Gi"}}), []),
    ("an unknown field", container(workingDirectory="/w"), ["pod_template.spec.containers[0].workingDirectory"]),
    ("a misspelt pod field", spec(nodeNmae="x"), ["pod_template.spec.nodeNmae"]),
    ("containers missing", {}, ["pod_template.spec.containers"]),
    ("a container without a name", {"containers": [{"image": "i"}]}, ["pod_template.spec.containers[0].name"]),
    ("a mount without a path", container(volumeMounts=[{"name": "w"}]),
     ["pod_template.spec.containers[0].volumeMounts[0].mountPath"]),
    ("a number for a string", container(image=5), ["pod_template.spec.containers[0].image"]),
    ("a string for a number", spec(priority="1"), ["pod_template.spec.priority"]),
    ("a float for a whole number", spec(priority=1.5), ["pod_template.spec.priority"]),
    ("true for a number", spec(priority=True), ["pod_template.spec.priority"]),
    ("a string for a bool", spec(hostNetwork="false"), ["pod_template.spec.hostNetwork"]),
    ("an object for a list", spec(volumes={"name": "w"}), ["pod_template.spec.volumes"]),
    ("a number for a quantity", container(resources={"requests": {"cpu": 1}}),
     ["pod_template.spec.containers[0].resources.requests.cpu"]),
    ("a list for a port", container(livenessProbe={"tcpSocket": {"port": [1]}}),
     ["pod_template.spec.containers[0].livenessProbe.tcpSocket.port"]),
    ("not an object at all", ["containers"], ["pod_template.spec"]),
    ("null for a field: unset", container(command=None, env=None), []),
    ("a null container", {"containers": [AGENT, None]}, ["pod_template.spec.containers[1]"]),
    ("a null init container", spec(initContainers=[None]), ["pod_template.spec.initContainers[0]"]),
    ("a null env var", container(env=[None]), ["pod_template.spec.containers[0].env[0]"]),
    ("a null volume", spec(volumes=[None]), ["pod_template.spec.volumes[0]"]),
    ("a null map value", spec(nodeSelector={"a": None}), ["pod_template.spec.nodeSelector.a"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "value", "paths"), CASES, ids=[c[0] for c in CASES])
def test_the_validator_names_each_path_and_judges_as_the_client_does(case: str, value: Any, paths: list[str]):
    # When a spec is checked
    found = problems(value)
    # Then each problem names its path as a manifest writes it
    assert [path for path, _ in found] == paths
    # And the pinned client's own model takes exactly the specs the validator takes
    try:
        models.V1PodSpec.model_validate(copy.deepcopy(value))
        client_takes = True
    except Exception:
        client_takes = False
    assert client_takes == (not found), case


def test_a_python_name_is_refused_where_a_manifest_writes_camel_case():
    # The client's models take `node_name` as well as `nodeName`; a manifest (and the API server)
    # knows only `nodeName`, and one document should read the same to kubectl and to podslots.
    assert problems(spec(node_name="n")) == [
        ("pod_template.spec.node_name", "is not a field of the Kubernetes PodSpec")
    ]
    assert problems(spec(nodeName="n")) == []


# (case, spec, sidecar, image, the paths the rules name)
RULES: list[tuple[str, dict[str, Any], bool, str | None, list[str]]] = [
    ("fine", spec(), True, None, []),
    ("PODSLOTS_ env in an init container",
     spec(initContainers=[{"name": "i", "image": "i", "env": [{"name": "PODSLOTS_SLOTS", "value": "9"}]}]),
     False, None, ["pod_template.spec.initContainers[0].env[0].name"]),
    ("the pod's restart policy", spec(restartPolicy="Never"), False, None, ["pod_template.spec.restartPolicy"]),
    ("an init container's restart policy is the user's",
     spec(initContainers=[{"name": "s", "image": "i", "restartPolicy": "Always"}]), False, None, []),
    ("podslots' account", spec(serviceAccountName="podslots"), False, None, ["pod_template.spec.serviceAccountName"]),
    ("podslots' account by the old alias", spec(serviceAccount="podslots"), False, None,
     ["pod_template.spec.serviceAccount"]),
    ("the sidecar's name with the sidecar",
     spec(initContainers=[{"name": "podslots-sidecar", "image": "i"}]), True, None,
     ["pod_template.spec.initContainers[0].name"]),
    ("the sidecar's name without the sidecar", spec(initContainers=[{"name": "podslots-sidecar", "image": "i"}]),
     False, None, []),
    ("the shared volume's name with the sidecar", spec(volumes=[{"name": "podslots-held-tasks", "emptyDir": {}}]),
     True, None, ["pod_template.spec.volumes[0].name"]),
    ("no agent container", {"containers": [{"name": "worker", "image": "i"}]}, False, "i",
     ["pod_template.spec.containers"]),
    ("two containers of one name", {"containers": [AGENT, AGENT]}, False, None,
     ["pod_template.spec.containers[1].name"]),
    ("ephemeral containers", spec(ephemeralContainers=[{"name": "debug"}]), False, None,
     ["pod_template.spec.ephemeralContainers"]),
    ("no image anywhere", {"containers": [{"name": "agent"}]}, False, None, ["pod_template.image"]),
    ("the image from the template", {"containers": [{"name": "agent"}]}, False, "i", []),
    ("the same image twice", spec(), False, AGENT["image"], []),
    ("two images", spec(), False, "registry.example/other:2", ["pod_template.image"]),
    ("a container's own restart policy", container(restartPolicy="Always"), False, None,
     ["pod_template.spec.containers[0].restartPolicy"]),
    ("a container's restart rules", container(restartPolicyRules=[
        {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]), False, None,
     ["pod_template.spec.containers[0].restartPolicyRules"]),
    ("an init container's restart rules stay the user's", spec(initContainers=[{"name": "s", "image": "i",
        "restartPolicy": "Always", "restartPolicyRules": [{"action": "Restart",
        "exitCodes": {"operator": "In", "values": [42]}}]}]), False, None, []),
    ("a deadline for the pod", spec(activeDeadlineSeconds=3600), False, None,
     ["pod_template.spec.activeDeadlineSeconds"]),
    ("a node named", spec(nodeName="node-1"), False, None, ["pod_template.spec.nodeName"]),
    ("an envFrom prefix of podslots'", container(envFrom=[{"prefix": "PODSLOTS_", "configMapRef": {"name": "c"}}]),
     False, None, ["pod_template.spec.containers[0].envFrom[0].prefix"]),
    ("the held-task directory's variable with the sidecar",
     container(env=[{"name": "PODSLOTS_HELD_TASKS_DIR", "value": "/held"}]), True, None,
     ["pod_template.spec.containers[0].env[0].name"]),
    ("the held-task directory's variable without the sidecar: the user's heartbeat needs it",
     container(env=[{"name": "PODSLOTS_HELD_TASKS_DIR", "value": "/held"}]), False, None, []),
    ("an envFrom prefix of one's own", container(envFrom=[{"prefix": "TF_", "configMapRef": {"name": "c"}}]),
     False, None, []),
    ("a mount at the held-task directory with the sidecar",
     container(volumeMounts=[{"name": "w", "mountPath": "/var/run/podslots/tasks/"}]), True, None,
     ["pod_template.spec.containers[0].volumeMounts[0].mountPath"]),
    ("a mount at the held-task directory without the sidecar",
     container(volumeMounts=[{"name": "w", "mountPath": "/var/run/podslots/tasks"}]), False, None, []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "value", "sidecar", "image", "paths"), RULES, ids=[r[0] for r in RULES])
def test_podslots_keeps_its_own_parts_of_a_spec(
    case: str, value: dict[str, Any], sidecar: bool, image: str | None, paths: list[str]
):
    assert [path for path, _ in spec_problems(value, sidecar=sidecar, image=image)] == paths


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

# (case, the container's securityContext, the pod's, what the container gets)
DEFAULTS: list[tuple[str, Any, dict[str, Any], dict[str, Any]]] = [
    ("unset: the restricted profile", None, {}, RESTRICTED),
    ("what is set is kept", {"allowPrivilegeEscalation": True, "capabilities": {"add": ["CHOWN"], "drop": []}},
     {}, {**RESTRICTED, "allowPrivilegeEscalation": True, "capabilities": {"add": ["CHOWN"], "drop": []}}),
    ("root asked for: not made non-root", {"runAsUser": 0}, {},
     {k: v for k, v in RESTRICTED.items() if k != "runAsNonRoot"} | {"runAsUser": 0}),
    ("root asked for by the pod", None, {"runAsUser": 0}, {k: v for k, v in RESTRICTED.items() if k != "runAsNonRoot"}),
    ("the pod's own non-root and seccomp are inherited", None,
     {"runAsNonRoot": False, "seccompProfile": {"type": "Localhost", "localhostProfile": "p"}},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
]  # fmt: skip


@pytest.mark.parametrize(("case", "context", "pod", "expected"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_a_container_gets_the_restricted_defaults_only_where_it_leaves_a_field_unset(
    case: str, context: Any, pod: dict[str, Any], expected: dict[str, Any]
):
    holder = {"name": "c", "securityContext": copy.deepcopy(context)}
    fill_restricted_defaults(holder, pod)
    assert holder["securityContext"] == expected


def _nesting(node: Any, seen: frozenset[str] = frozenset()) -> int:
    """How many arrays and objects deep a value of this schema node can be."""
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        assert name not in seen, f"{name} nests itself: no body depth bounds it"
        return _nesting(schema()["$defs"][name], seen | {name})
    kinds = node["type"] if isinstance(node.get("type"), list) else [node.get("type", "object")]
    if "array" in kinds:
        return 1 + _nesting(node["items"], seen)
    if "object" not in kinds:
        return 0
    inner = [*node.get("properties", {}).values()]
    if isinstance(node.get("additionalProperties"), dict):
        inner.append(node["additionalProperties"])
    return 1 + max((_nesting(child, seen) for child in inner), default=0)


def test_the_deepest_podspec_fits_in_a_body_the_api_takes():
    # Given the body's nesting limit, and a pool document {pod_template: {spec: ...}}: two levels
    # Then the deepest PodSpec the pinned client allows fits inside it
    assert 2 + _nesting(schema()) <= MAX_BODY_DEPTH
