"""The Pod Security Standards as podslots checks them: one test per control, each at both levels,
with a manifest that breaks the control and one that meets it.

Each manifest starts from a pod that meets `restricted` (an init container, the agent, an ephemeral
container, an emptyDir volume), so a failing check names exactly the control and field changed.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from local.template import ROOT, template
from podslots.pod_security import Level, check
from podslots.podspec import pod_manifest, security_violations
from podslots.settings import PoolSettings

BASELINE, RESTRICTED = Level.BASELINE, Level.RESTRICTED
BOTH = (BASELINE, RESTRICTED)
AGENT = "spec.containers[0].securityContext"
INIT = "spec.initContainers[0].securityContext"
DEBUG = "spec.ephemeralContainers[0].securityContext"


def _context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod() -> dict[str, Any]:
    """A pod that meets restricted: every kind of container, and a volume."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "tf-abc12", "namespace": "agents", "annotations": {"podslots.io/slots": "3"}},
        "spec": {
            "initContainers": [{"name": "fetch", "image": "x", "securityContext": _context()}],
            "containers": [{"name": "agent", "image": "x", "securityContext": _context()}],
            "ephemeralContainers": [{"name": "debug", "image": "x", "securityContext": _context()}],
            "volumes": [{"name": "work", "emptyDir": {}}],
        },
    }


def found(manifest: dict[str, Any], level: Level) -> set[tuple[str, str]]:
    return {(v.control, v.field) for v in check(manifest, level)}


def changed(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod with one field set (a dotted path; `[i]` indexes a list)."""
    manifest = copy.deepcopy(base if base is not None else pod())
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = manifest
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if last.isdigit() and int(last) == len(node):
        node.append(value)  # one more entry
    else:
        node[int(last) if last.isdigit() else last] = value
    return manifest


def annotated(key: str, value: str) -> dict[str, Any]:
    """The pod with one more annotation (a key with dots and slashes, so not a `changed` path)."""
    manifest = pod()
    manifest["metadata"]["annotations"][key] = value
    return manifest


def test_the_starting_pod_and_the_default_agent_pod_meet_both_levels():
    settings_ = PoolSettings.model_validate({"pod_template": {"image": "registry.example/tf-agent:1.9"}})
    for level in BOTH:
        assert found(pod(), level) == set()
        assert check(pod_manifest("tf", "tf-abc12", settings_, "https://api.example/v1"), level) == []
    assert security_violations("tf", settings_) == []


# ---- baseline's controls (and so restricted's) ----------------------------------------------------


def test_host_process_windows_containers_are_refused_at_both_levels():
    bad = changed(f"{INIT}.windowsOptions", {"hostProcess": True})
    bad_pod = changed("spec.securityContext.windowsOptions", {"hostProcess": True})
    for level in BOTH:
        assert found(bad, level) == {("windowsHostProcess", f"{INIT}.windowsOptions.hostProcess")}
        assert found(bad_pod, level) == {("windowsHostProcess", "spec.securityContext.windowsOptions.hostProcess")}
        assert found(changed(f"{INIT}.windowsOptions", {"hostProcess": False}), level) == set()


def test_host_namespaces_are_refused_at_both_levels():
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        for level in BOTH:
            assert found(changed(f"spec.{field}", True), level) == {("hostNamespaces", f"spec.{field}")}
            assert found(changed(f"spec.{field}", False), level) == set()


def test_privileged_containers_are_refused_at_both_levels():
    for level in BOTH:
        assert found(changed(f"{DEBUG}.privileged", True), level) == {("privileged", f"{DEBUG}.privileged")}
        assert found(changed(f"{DEBUG}.privileged", "true"), level) == {("privileged", f"{DEBUG}.privileged")}
        assert found(changed(f"{DEBUG}.privileged", False), level) == set()


def test_capabilities_beyond_the_default_set_are_refused_at_baseline():
    # Given capabilities named in the finding, the kernel's spelling, and ALL
    for name in ("SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "BPF", "SYS_RAWIO", "CAP_CHOWN", "ALL"):
        bad = changed(f"{AGENT}.capabilities.add", ["CHOWN", name])
        assert found(bad, BASELINE) == {("capabilities_baseline", f"{AGENT}.capabilities.add[1]")}
    # And the runtime's default set is baseline's to add, even without dropping ALL
    default_set = changed(f"{AGENT}.capabilities", {"add": ["CHOWN", "KILL", "NET_BIND_SERVICE", "SETUID"]})
    assert found(default_set, BASELINE) == set()


def test_host_path_volumes_are_refused_at_both_levels():
    bad = changed("spec.volumes[0]", {"name": "root", "hostPath": {"path": "/"}})
    assert found(bad, BASELINE) == {("hostPathVolumes", "spec.volumes[0].hostPath")}
    assert found(bad, RESTRICTED) == {("restrictedVolumes", "spec.volumes[0].hostPath")}  # its stricter form
    assert found(changed("spec.volumes[0]", {"name": "work", "emptyDir": {}}), BASELINE) == set()


def test_host_ports_are_refused_at_both_levels():
    for level in BOTH:
        bad = changed("spec.containers[0].ports", [{"containerPort": 80}, {"containerPort": 8080, "hostPort": 8080}])
        assert found(bad, level) == {("hostPorts", "spec.containers[0].ports[1].hostPort")}
        assert found(changed("spec.containers[0].ports", [{"containerPort": 80, "hostPort": 0}]), level) == set()


def test_an_unconfined_apparmor_profile_is_refused_at_both_levels():
    annotation = "container.apparmor.security.beta.kubernetes.io/agent"
    for level in BOTH:
        by_field = changed(f"{AGENT}.appArmorProfile", {"type": "Unconfined"})
        assert found(by_field, level) == {("appArmorProfile", f"{AGENT}.appArmorProfile.type")}
        by_annotation = annotated(annotation, "unconfined")
        assert found(by_annotation, level) == {("appArmorProfile", f"metadata.annotations[{annotation!r}]")}
        assert found(changed(f"{AGENT}.appArmorProfile", {"type": "RuntimeDefault"}), level) == set()
        assert found(annotated(annotation, "localhost/agent"), level) == set()


def test_custom_selinux_options_are_refused_at_both_levels():
    for level in BOTH:
        assert found(changed("spec.securityContext.seLinuxOptions", {"type": "spc_t"}), level) == {
            ("seLinuxOptions", "spec.securityContext.seLinuxOptions.type")
        }
        assert found(changed(f"{INIT}.seLinuxOptions", {"user": "root"}), level) == {
            ("seLinuxOptions", f"{INIT}.seLinuxOptions.user")
        }
        assert found(changed(f"{INIT}.seLinuxOptions", {"type": "container_t", "level": "s0:c1"}), level) == set()


def test_an_unmasked_proc_mount_is_refused_at_both_levels():
    for level in BOTH:
        assert found(changed(f"{AGENT}.procMount", "Unmasked"), level) == {("procMount", f"{AGENT}.procMount")}
        assert found(changed(f"{AGENT}.procMount", "Default"), level) == set()


def test_an_unconfined_seccomp_profile_is_refused_at_baseline():
    # Given seccomp Unconfined on the pod, on a container, or by the old annotation
    on_pod = changed("spec.securityContext.seccompProfile", {"type": "Unconfined"})
    assert found(on_pod, BASELINE) == {("seccompProfile_baseline", "spec.securityContext.seccompProfile.type")}
    on_agent = changed(f"{AGENT}.seccompProfile", {"type": "Unconfined"})
    assert found(on_agent, BASELINE) == {("seccompProfile_baseline", f"{AGENT}.seccompProfile.type")}
    annotation = "seccomp.security.alpha.kubernetes.io/pod"
    by_annotation = annotated(annotation, "unconfined")
    assert found(by_annotation, BASELINE) == {("seccompProfile_baseline", f"metadata.annotations[{annotation!r}]")}
    # And baseline lets a container leave it unset (the runtime's default applies)
    unset = pod()
    del unset["spec"]["containers"][0]["securityContext"]["seccompProfile"]
    assert found(unset, BASELINE) == set()
    assert (
        found(changed(f"{AGENT}.seccompProfile", {"type": "Localhost", "localhostProfile": "p.json"}), BASELINE)
        == set()
    )


def test_unsafe_sysctls_are_refused_at_both_levels():
    for level in BOTH:
        bad = changed("spec.securityContext.sysctls", [{"name": "net.ipv4.tcp_syncookies"}, {"name": "kernel.msgmax"}])
        assert found(bad, level) == {("sysctls", "spec.securityContext.sysctls[1].name")}
        safe = changed(
            "spec.securityContext.sysctls", [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]
        )
        assert found(safe, level) == set()


def test_probes_and_lifecycle_hooks_that_reach_another_host_are_refused_at_both_levels():
    for level in BOTH:
        probe = changed("spec.containers[0].livenessProbe", {"httpGet": {"host": "169.254.169.254", "port": 80}})
        assert found(probe, level) == {
            ("hostProbesAndHostLifecycle", "spec.containers[0].livenessProbe.httpGet.host"),
        }
        hook = changed("spec.initContainers[0].lifecycle", {"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}})
        assert found(hook, level) == {
            ("hostProbesAndHostLifecycle", "spec.initContainers[0].lifecycle.preStop.tcpSocket.host"),
        }
        assert found(changed("spec.containers[0].readinessProbe", {"httpGet": {"port": 8080}}), level) == set()


# ---- restricted's own controls ----------------------------------------------------------------------


def test_only_the_restricted_volume_types_are_allowed_at_restricted():
    for source in ("nfs", "awsElasticBlockStore", "gitRepo", "iscsi", "cephfs", "flexVolume", "somethingNew"):
        bad = changed("spec.volumes[1]", {"name": "shared", source: {}})
        assert found(bad, RESTRICTED) == {("restrictedVolumes", f"spec.volumes[1].{source}")}
        assert found(bad, BASELINE) == set()  # baseline refuses hostPath only
    for source in ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "secret"):
        assert found(changed("spec.volumes[1]", {"name": "ok", source: {}}), RESTRICTED) == set()


def test_privilege_escalation_must_be_off_at_restricted():
    allowed = changed(f"{INIT}.allowPrivilegeEscalation", True)
    assert found(allowed, RESTRICTED) == {("allowPrivilegeEscalation", f"{INIT}.allowPrivilegeEscalation")}
    unset = pod()
    del unset["spec"]["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"]
    assert found(unset, RESTRICTED) == {("allowPrivilegeEscalation", f"{INIT}.allowPrivilegeEscalation")}
    assert found(allowed, BASELINE) == found(unset, BASELINE) == set()


def test_containers_must_run_as_non_root_at_restricted():
    # Given a container that says it may run as root
    explicit = changed(f"{AGENT}.runAsNonRoot", False)
    assert found(explicit, RESTRICTED) == {("runAsNonRoot", f"{AGENT}.runAsNonRoot")}
    # And one that says nothing, with nothing said on the pod
    unset = pod()
    del unset["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]
    assert found(unset, RESTRICTED) == {("runAsNonRoot", f"{AGENT}.runAsNonRoot")}
    # Then the pod's runAsNonRoot covers the container that says nothing
    assert found(changed("spec.securityContext.runAsNonRoot", True, unset), RESTRICTED) == set()
    # And baseline allows root
    assert found(explicit, BASELINE) == found(unset, BASELINE) == set()


def test_user_zero_is_refused_at_restricted():
    on_pod = changed("spec.securityContext.runAsUser", 0)
    assert found(on_pod, RESTRICTED) == {("runAsUser", "spec.securityContext.runAsUser")}
    on_agent = changed(f"{AGENT}.runAsUser", 0)
    assert found(on_agent, RESTRICTED) == {("runAsUser", f"{AGENT}.runAsUser")}
    assert found(changed(f"{AGENT}.runAsUser", False), RESTRICTED) == {("runAsUser", f"{AGENT}.runAsUser")}
    assert found(changed(f"{AGENT}.runAsUser", 1000), RESTRICTED) == set()
    assert found(on_pod, BASELINE) == found(on_agent, BASELINE) == set()


def test_seccomp_must_be_runtime_default_or_localhost_at_restricted():
    # Given a container with no profile and none on the pod
    unset = pod()
    del unset["spec"]["ephemeralContainers"][0]["securityContext"]["seccompProfile"]
    assert found(unset, RESTRICTED) == {("seccompProfile_restricted", f"{DEBUG}.seccompProfile.type")}
    # And one that sets Unconfined
    unconfined = changed(f"{AGENT}.seccompProfile", {"type": "Unconfined"})
    assert found(unconfined, RESTRICTED) == {("seccompProfile_restricted", f"{AGENT}.seccompProfile.type")}
    # Then a profile on the pod covers the container that sets none
    assert found(changed("spec.securityContext.seccompProfile", {"type": "RuntimeDefault"}, unset), RESTRICTED) == set()
    assert (
        found(changed(f"{AGENT}.seccompProfile", {"type": "Localhost", "localhostProfile": "p"}), RESTRICTED) == set()
    )
    # And baseline refuses only the explicit Unconfined
    assert found(unset, BASELINE) == set()
    assert found(unconfined, BASELINE) == {("seccompProfile_baseline", f"{AGENT}.seccompProfile.type")}


def test_capabilities_must_drop_all_and_add_at_most_net_bind_service_at_restricted():
    kept = changed(f"{AGENT}.capabilities", {"drop": ["NET_RAW"]})
    assert found(kept, RESTRICTED) == {("capabilities_restricted", f"{AGENT}.capabilities.drop")}
    added = changed(f"{AGENT}.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]})
    assert found(added, RESTRICTED) == {("capabilities_restricted", f"{AGENT}.capabilities.add[1]")}
    net_bind = changed(f"{AGENT}.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
    assert found(net_bind, RESTRICTED) == set()
    assert found(kept, BASELINE) == found(added, BASELINE) == set()  # CHOWN is in the default set


def test_a_toleration_without_a_key_is_refused_at_restricted():
    # podslots' own rule: a keyless toleration (operator Exists) tolerates every taint
    everything = changed("spec.tolerations", [{"key": "gpu", "operator": "Exists"}, {"operator": "Exists"}])
    assert found(everything, RESTRICTED) == {("tolerations", "spec.tolerations[1].key")}
    assert found(everything, BASELINE) == set()
    assert found(changed("spec.tolerations", [{"key": "gpu", "operator": "Exists"}]), RESTRICTED) == set()


# ---- what any manifest gets ---------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(
    ["spec", "metadata", "containers", "initContainers", "securityContext", "capabilities", "add", "drop", "volumes"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(fields | st.text(max_size=6), json_values, max_size=4), st.sampled_from(list(BOTH)))
def test_any_manifest_is_answered_with_violations_never_an_exception(manifest: dict[str, Any], level: Level):
    # Given any JSON-shaped document, however malformed, Then the check answers with a list
    assert isinstance(check(manifest, level), list)
    # And a pod of the wrong shape in the right place is still read
    assert isinstance(check({"spec": {"containers": [manifest], "volumes": [manifest]}}, level), list)


def test_the_agents_namespace_enforces_the_default_level():
    # Given the namespace manifest of k8s/ and the template's AgentNamespaces
    namespace = yaml.safe_load((ROOT / "k8s" / "namespace.yaml").read_text())
    parameter = template()["Parameters"]["AgentNamespaces"]
    # Then it is the parameter's default namespace, and the cluster enforces a pool's default level there
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", namespace["metadata"]["name"])
    default = PoolSettings.model_validate({"pod_template": {"image": "x"}}).pod_security
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == default.value
