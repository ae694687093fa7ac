"""`pod_template.spec` (a Kubernetes PodSpec) and `pod_template.sidecar` (issue 18), through the real
handlers on the local stack: the pools function takes the document, autoscale makes the pod, and the
Kubernetes API stand-in (real HTTP, the real `kubernetes` client) keeps it as sent.

A pool with a full spec reaches the cluster with all of it plus podslots' own env and labels; a spec
over podslots' own parts, or beyond the pool's pod security, is a 422 naming the field; a pool
without a spec is the same pod, of the same revision, as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from local.stack import Stack
from podslots.clock import ManualClock
from podslots.names import POOL_LABEL, REVISION_LABEL

IMAGE = "registry.example/tf-agent:1.9"
SIDECAR = "registry.example/podslots-sidecar:1"
POOL = "tf"
HELD = "/var/run/podslots/tasks"
OWN_ENV = {"PODSLOTS_POOL", "PODSLOTS_POD_NAME", "PODSLOTS_SLOTS", "PODSLOTS_HEARTBEAT_URL"}
# A spec-less pool's revision before `spec` existed (computed on the parent commit): unchanged, or
# every running pod would read as outdated on upgrade and be rolled.
SPECLESS_REVISION = "82a1a5b7a1"


def full_spec() -> dict[str, Any]:
    """What a platform team's agent pod holds: a working dir, a secret, command and args, an extra
    container, pull secrets, a priority class, topology spread, affinity and a runtime class."""
    return {
        "containers": [
            {
                "name": "agent",
                "image": IMAGE,
                "command": ["tf-agent"],
                "args": ["--work-dir", "/work", "--plugin-cache", "/cache"],
                "env": [{"name": "TF_IN_AUTOMATION", "value": "1"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi", "cpu": "2"}},
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "plugins", "mountPath": "/cache"},
                    {"name": "cloud", "mountPath": "/etc/cloud", "readOnly": True},
                ],
            },
            {"name": "log-shipper", "image": "registry.example/shipper:2", "args": ["--from", "/work/logs"]},
        ],
        "volumes": [
            {"name": "work", "emptyDir": {"sizeLimit": "10Gi"}},
            {"name": "plugins", "emptyDir": {}},
            {"name": "cloud", "secret": {"secretName": "tf-cloud-credentials"}},
        ],
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "priorityClassName": "terraform-agents",
        "runtimeClassName": "gvisor",
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["tf"]}]}]
                }
            }
        },
        "serviceAccountName": "tf-agent",
    }


def document(spec: dict[str, Any] | None = None, **template: Any) -> dict[str, Any]:
    pod_template = {**({"spec": spec} if spec is not None else {}), **template}
    return {"min_pods": 1, "max_pods": 2, "pod_template": pod_template}


class World:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def put(self, body: dict[str, Any]) -> Any:
        return self.stack.call("PUT", "/pools/{pool}", body, pool=POOL)

    def get(self) -> Any:
        return self.stack.call("GET", "/pools/{pool}", pool=POOL)

    def autoscale(self) -> None:
        self.stack.clock.advance(60)
        self.stack.invoke("AutoscaleFunction", {"pool": POOL})

    def pod(self) -> dict[str, Any]:
        (pod,) = self.stack.kube.pods("agents")
        return pod

    def refused(self, body: dict[str, Any]) -> tuple[str, str]:
        """The 422's error code and message; no pool was made."""
        answer = self.put(body)
        assert answer.status == 422, answer.body
        assert self.get().status == 404
        self.fields = [problem["field"] for problem in answer.body.get("problems", [])]
        return answer.body["error"], answer.body["message"]


@pytest.fixture
def world() -> Iterator[World]:
    with Stack(ManualClock()) as stack:
        yield World(stack)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_a_pool_with_a_full_spec_reaches_the_cluster_with_all_of_it_and_podslots_own_parts(world: World):
    # Given a pool whose template is a full PodSpec, with podslots' heartbeat sidecar
    sent = full_spec()
    answer = world.put(document(copy.deepcopy(sent), sidecar=SIDECAR, labels={"team": "platform"}))
    assert answer.status == 201, answer.body
    # When autoscale makes its pod
    world.autoscale()
    pod = world.pod()
    spec = pod["spec"]
    # Then the cluster holds every part of the spec as written
    for field in ("imagePullSecrets", "priorityClassName", "runtimeClassName", "topologySpreadConstraints"):
        assert spec[field] == sent[field], field
    assert (spec["affinity"], spec["serviceAccountName"]) == (sent["affinity"], "tf-agent")
    assert spec["volumes"] == [*sent["volumes"], {"name": "podslots-held-tasks", "emptyDir": {}}]
    containers = by_name(spec["containers"])
    agent, shipper = containers["agent"], containers["log-shipper"]
    assert set(containers) == {"agent", "log-shipper"}
    assert (agent["image"], agent["command"], agent["args"]) == (IMAGE, ["tf-agent"], sent["containers"][0]["args"])
    assert agent["resources"] == sent["containers"][0]["resources"]
    assert agent["volumeMounts"] == [
        *sent["containers"][0]["volumeMounts"],
        {"name": "podslots-held-tasks", "mountPath": HELD},
    ]
    assert shipper["args"] == ["--from", "/work/logs"]
    # And podslots' own parts: its env first in the agent's, then the user's; its labels beside the pool's
    env = by_name(agent["env"])
    assert set(env) >= OWN_ENV
    assert env["TF_IN_AUTOMATION"]["value"] == "1"
    assert env["PODSLOTS_HELD_TASKS_DIR"]["value"] == HELD
    assert env["PODSLOTS_HEARTBEAT_URL"]["value"].endswith(f"/pools/{POOL}/pods/{pod['metadata']['name']}/heartbeat")
    labels = pod["metadata"]["labels"]
    assert (labels["team"], labels[POOL_LABEL], labels[REVISION_LABEL]) == (
        "platform",
        POOL,
        world.get().body["revision"],
    )
    assert (spec["restartPolicy"], spec["automountServiceAccountToken"]) == ("Never", False)
    # And every container the user left unset got the restricted defaults
    for container in (agent, shipper):
        context = container["securityContext"]
        assert (context["allowPrivilegeEscalation"], context["runAsNonRoot"]) == (False, True)
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # And the sidecar is a native sidecar, first of the init containers, with the agent's own env
    (sidecar,) = spec["initContainers"]
    assert (sidecar["name"], sidecar["image"], sidecar["restartPolicy"]) == ("podslots-sidecar", SIDECAR, "Always")
    assert sidecar["command"] == ["python", "-m", "podslots_client.agent"]
    assert by_name(sidecar["env"]) == {k: env[k] for k in (*OWN_ENV, "PODSLOTS_HELD_TASKS_DIR")}
    assert sidecar["volumeMounts"] == [{"name": "podslots-held-tasks", "mountPath": HELD, "readOnly": True}]
    assert sidecar["securityContext"]["runAsNonRoot"] is True


def test_a_pool_without_spec_is_the_same_pod_of_the_same_revision(world: World):
    # When a pool is put as before `spec` existed
    answer = world.put(document(image=IMAGE))
    assert answer.status == 201, answer.body
    # Then its revision is the one it had before: no running pod reads as outdated on upgrade
    assert world.get().body["revision"] == SPECLESS_REVISION
    world.autoscale()
    pod = world.pod()
    assert pod["metadata"]["labels"][REVISION_LABEL] == SPECLESS_REVISION
    assert not {"initContainers", "volumes"} & set(pod["spec"])
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent"]


def test_the_sidecar_comes_without_spec_too(world: World):
    # Given a pool of the older fields, with the sidecar
    assert world.put(document(image=IMAGE, env={"TF_LOG": "info"}, sidecar=SIDECAR)).status == 201
    # When autoscale makes its pod
    world.autoscale()
    spec = world.pod()["spec"]
    # Then the sidecar and the shared directory are there, mounted in the agent too
    assert [c["name"] for c in spec["initContainers"]] == ["podslots-sidecar"]
    assert spec["volumes"] == [{"name": "podslots-held-tasks", "emptyDir": {}}]
    (agent,) = spec["containers"]
    assert agent["volumeMounts"] == [{"name": "podslots-held-tasks", "mountPath": HELD}]
    assert by_name(agent["env"])["PODSLOTS_HELD_TASKS_DIR"]["value"] == HELD
    # And a new spec rolls the pool: another revision
    before = world.get().body["revision"]
    assert world.put(document(image=IMAGE, env={"TF_LOG": "info"})).status == 200
    assert world.get().body["revision"] != before


def test_the_image_may_come_from_the_spec_and_must_match_when_given_twice(world: World):
    # When the agent container names the image and `image` is left out
    assert world.put(document(full_spec())).status == 201
    # Then the pod runs it
    world.autoscale()
    assert by_name(world.pod()["spec"]["containers"])["agent"]["image"] == IMAGE
    # And two different images are refused, naming the field
    assert world.put(document(full_spec(), image="registry.example/other:1")).status == 422


def spec_with(change: Any) -> dict[str, Any]:
    spec = full_spec()
    change(spec)
    return spec


@pytest.mark.parametrize(
    ("spec", "template", "field"),
    [
        (
            spec_with(lambda s: s["containers"][1].update(env=[{"name": "PODSLOTS_POOL", "value": "x"}])),
            {},
            "pod_template.spec.containers[1].env[0].name",
        ),
        (spec_with(lambda s: s.update(restartPolicy="Always")), {}, "pod_template.spec.restartPolicy"),
        (spec_with(lambda s: s.update(serviceAccountName="podslots")), {}, "pod_template.spec.serviceAccountName"),
        (
            spec_with(lambda s: s["containers"][1].update(name="podslots-sidecar")),
            {"sidecar": SIDECAR},
            "pod_template.spec.containers[1].name",
        ),
        (
            spec_with(lambda s: s["volumes"][0].update(name="podslots-held-tasks")),
            {"sidecar": SIDECAR},
            "pod_template.spec.volumes[0].name",
        ),
        (full_spec(), {"labels": {"podslots.io/pool": "other"}}, "pod_template.labels['podslots.io/pool']"),
        (full_spec(), {"annotations": {"podslots.io/slots": "9"}}, "pod_template.annotations['podslots.io/slots']"),
        (spec_with(lambda s: s["containers"][0].update(name="worker")), {}, "pod_template.spec.containers"),
        (
            spec_with(lambda s: s.update(ephemeralContainers=[{"name": "debug"}])),
            {},
            "pod_template.spec.ephemeralContainers",
        ),
        (full_spec(), {"resources": {"requests": {"cpu": "1"}}}, "pod_template.resources"),
        (full_spec(), {"service_account": "tf-agent"}, "pod_template.service_account"),
        (full_spec(), {"termination_grace_period_s": 60}, "pod_template.termination_grace_period_s"),
        (
            spec_with(lambda s: s["containers"][1].update(volumeMounts=[{"name": "work"}])),
            {},
            "pod_template.spec.containers[1].volumeMounts[0].mountPath",
        ),
        (
            spec_with(lambda s: s["containers"][0].update(workingDirectory="/work")),
            {},
            "pod_template.spec.containers[0].workingDirectory",
        ),
        (spec_with(lambda s: s.update(priority="high")), {}, "pod_template.spec.priority"),
        (
            # the client validates its body before sending: a quantity is a string there
            spec_with(lambda s: s["containers"][0]["resources"]["limits"].update(cpu=2)),
            {},
            "pod_template.spec.containers[0].resources.limits.cpu",
        ),
        # null is "unset" for a field only: a null list item was a 5xx at the PUT or at every create
        (spec_with(lambda s: s["containers"].append(None)), {}, "pod_template.spec.containers[2]"),
        (
            spec_with(lambda s: s.update(initContainers=[None])),
            {"sidecar": SIDECAR},
            "pod_template.spec.initContainers[0]",
        ),
        (spec_with(lambda s: s["containers"][0].update(env=[None])), {}, "pod_template.spec.containers[0].env[0]"),
        (spec_with(lambda s: s["volumes"].append(None)), {}, "pod_template.spec.volumes[3]"),
        # ways around the pod's restartPolicy: Never, and around podslots ending its own pods
        (
            spec_with(lambda s: s["containers"][0].update(restartPolicy="Always")),
            {},
            "pod_template.spec.containers[0].restartPolicy",
        ),
        (
            spec_with(
                lambda s: s["containers"][1].update(
                    restartPolicyRules=[{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]
                )
            ),
            {},
            "pod_template.spec.containers[1].restartPolicyRules",
        ),
        (spec_with(lambda s: s.update(activeDeadlineSeconds=3600)), {}, "pod_template.spec.activeDeadlineSeconds"),
        (spec_with(lambda s: s.update(nodeName="node-1")), {}, "pod_template.spec.nodeName"),
        (
            spec_with(lambda s: s["containers"][1].update(volumeMounts=[{"name": "work", "mountPath": HELD}])),
            {"sidecar": SIDECAR},
            "pod_template.spec.containers[1].volumeMounts[0].mountPath",
        ),
        (
            spec_with(
                lambda s: s["containers"][0].update(
                    envFrom=[{"prefix": "PODSLOTS_", "configMapRef": {"name": "agent-settings"}}]
                )
            ),
            {},
            "pod_template.spec.containers[0].envFrom[0].prefix",
        ),
        (full_spec(), {"automount_service_account_token": True}, "pod_template.automount_service_account_token"),
    ],
)
def test_a_spec_over_podslots_own_parts_or_not_a_podspec_is_a_422_naming_the_field(
    world: World, spec: dict[str, Any], template: dict[str, Any], field: str
):
    # When a pool's spec sets what podslots owns, or is not a PodSpec of the pinned client
    error, message = world.refused(document(spec, **template))
    # Then it is refused, naming the field (in the message, and as a problem of its own)
    assert error == "invalid_request"
    assert f"{field}:" in message
    assert field in world.fields


@pytest.mark.parametrize("level", ["restricted", "baseline"])
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.update(hostNetwork=True), "spec.hostNetwork"),
        (lambda s: s.update(hostPID=True), "spec.hostPID"),
        (lambda s: s.update(hostIPC=True), "spec.hostIPC"),
        (
            lambda s: s["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}}),
            "spec.volumes[3].hostPath",
        ),
        (
            lambda s: s.update(
                initContainers=[{"name": "setup", "image": "x", "securityContext": {"privileged": True}}]
            ),
            "spec.initContainers[1].securityContext.privileged",
        ),
    ],
)
def test_what_no_level_allows_is_refused_in_any_container_or_volume(world: World, level: str, change: Any, field: str):
    # When a spec shares the host's namespaces, mounts a host path or runs a privileged container
    error, message = world.refused({**document(spec_with(change), sidecar=SIDECAR), "pod_security": level})
    # Then it is refused at every level, naming the field in the pod (the sidecar is init container 0)
    assert error == "below_pod_security"
    assert field in message


def test_a_spec_beyond_restricted_is_refused_and_baseline_takes_it_filling_only_what_is_unset(world: World):
    # Given an extra container that runs as root and adds a baseline capability
    def root_shipper(spec: dict[str, Any]) -> None:
        spec["containers"][1]["securityContext"] = {"runAsUser": 0, "capabilities": {"add": ["CHOWN"]}}

    spec = spec_with(root_shipper)
    # When a restricted pool asks for it
    error, message = world.refused(document(spec))
    # Then each value that breaks the level is named
    assert error == "below_pod_security"
    assert "spec.containers[1].securityContext.runAsUser" in message
    assert "spec.containers[1].securityContext.capabilities.add[0]" in message
    # When a baseline pool asks for it
    assert world.put({**document(spec), "pod_security": "baseline"}).status == 201
    world.autoscale()
    shipper = by_name(world.pod()["spec"]["containers"])["log-shipper"]
    # Then the pod has what was asked, and the defaults only where it left a field unset (not
    # non-root: it asked for root)
    assert shipper["securityContext"] == {
        "runAsUser": 0,
        "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]},
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize(
    "env",
    [{"PODSLOTS_HELD_TASKS_DIR": "/tmp"}, {"PODSLOTS_TRACE": "1"}],
    ids=["the sidecar's variable", "a variable podslots does not set yet"],
)
def test_the_older_env_may_not_set_any_podslots_variable_either(world: World, env: dict[str, str]):
    # When a pool of the older fields, with the sidecar, sets a PODSLOTS_* variable in its env (the
    # prefix is the rule, as in a spec's containers, not a list of four names)
    answer = world.put(document(image=IMAGE, sidecar=SIDECAR, env=env))
    # Then it is refused, naming the variable, and no pool is made
    assert answer.status == 422, answer.body
    assert next(iter(env)) in answer.body["message"]
    assert world.get().status == 404


def test_without_the_sidecar_the_held_task_directory_is_the_users_to_name(world: World):
    # Given a pool that runs the heartbeat itself (docs/agent-protocol.md): it names the directory
    held = {"PODSLOTS_HELD_TASKS_DIR": "/var/run/podslots/held"}
    assert world.put(document(image=IMAGE, env=held)).status == 201
    # When autoscale makes its pod
    world.autoscale()
    # Then the agent is told it, once
    (agent,) = world.pod()["spec"]["containers"]
    assert [var["value"] for var in agent["env"] if var["name"] == "PODSLOTS_HELD_TASKS_DIR"] == [
        held["PODSLOTS_HELD_TASKS_DIR"]
    ]


def test_the_sidecar_names_its_own_non_root_user_in_a_pod_that_runs_as_root(world: World):
    # Given a baseline pool whose pod runs as root, with the sidecar
    spec = {**full_spec(), "securityContext": {"runAsUser": 0}}
    answer = world.put({**document(spec, sidecar=SIDECAR), "pod_security": "baseline"})
    assert answer.status == 201, answer.body
    # When autoscale makes its pod
    world.autoscale()
    spec = world.pod()["spec"]
    # Then the sidecar runs as the image's non-root user, not as the pod's root (with runAsNonRoot
    # and user 0 inherited, the kubelet would never start it, and the pod would never beat)
    (sidecar,) = spec["initContainers"]
    context = sidecar["securityContext"]
    assert (context["runAsNonRoot"], context["runAsUser"], context["runAsGroup"]) == (True, 65532, 65532)
    # And the agent keeps the root it asked for
    assert "runAsNonRoot" not in by_name(spec["containers"])["agent"]["securityContext"]
