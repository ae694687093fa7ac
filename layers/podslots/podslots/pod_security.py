"""The Kubernetes Pod Security Standards, checked by podslots over the whole manifest it would send.

Written from the published standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/)
and its reference implementation, the admission controller's `k8s.io/pod-security-admission`
(`policy/check_*.go`): one function per control, named by the reference's check id, so a violation
reads as the admission controller's own refusal would. The checks follow the newest version of each
control, but two relaxations are left out, so podslots is as strict or stricter: nothing is relaxed
for a pod in a user namespace (`hostUsers: false`) or for a Windows pod (`spec.os.name: windows`).

Pure and total: a manifest (a dict, as `podspec.pod_manifest` returns it) in, the list of violations
out. It never raises: a field of the wrong type is read as unset, and a value outside the allowed
ones, whatever its type, is a violation. Every container (init, regular, ephemeral) and every volume
is visited, so whatever the pod template grows to hold is covered without a new check.

A violation names its control and the field's path in the manifest; its problem is fixed text that
says what the level allows, never the offending value (that is in the pool's own document).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from podslots.pod_security_reading import (
    Check,
    Violation,
    annotation_items,
    annotation_path,
    as_map,
    as_seq,
    container_contexts,
    containers,
    one_of,
    pod_context,
    pod_spec,
    unset_or,
)


class Level(StrEnum):
    """The two non-privileged levels of the standard; `privileged` (no rule at all) is not offered."""

    BASELINE = "baseline"
    RESTRICTED = "restricted"


# ---- baseline -------------------------------------------------------------------------------


def windows_host_process(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    problem = "windowsOptions.hostProcess must be false or unset"
    if not unset_or(as_map(pod_context(manifest).get("windowsOptions")).get("hostProcess"), (False,)):
        yield Violation("windowsHostProcess", "spec.securityContext.windowsOptions.hostProcess", problem)
    for path, context in container_contexts(manifest):
        if not unset_or(as_map(as_map(context).get("windowsOptions")).get("hostProcess"), (False,)):
            yield Violation("windowsHostProcess", f"{path}.windowsOptions.hostProcess", problem)


def host_namespaces(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    spec = pod_spec(manifest)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if not unset_or(spec.get(field), (False,)):
            yield Violation(
                "hostNamespaces", f"spec.{field}", "the host's namespaces may not be shared: false or unset"
            )


def privileged(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    for path, context in container_contexts(manifest):
        if not unset_or(as_map(context).get("privileged"), (False,)):
            yield Violation(
                "privileged", f"{path}.privileged", "a privileged container is never allowed: false or unset"
            )


BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def capabilities_baseline(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    problem = f"only the runtime's default capabilities may be added: {', '.join(sorted(BASELINE_CAPABILITIES))}"
    for path, context in container_contexts(manifest):
        for i, name in enumerate(as_seq(as_map(as_map(context).get("capabilities")).get("add"))):
            if not one_of(name, BASELINE_CAPABILITIES):
                yield Violation("capabilities_baseline", f"{path}.capabilities.add[{i}]", problem)


def host_path_volumes(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    for i, volume in enumerate(as_seq(pod_spec(manifest).get("volumes"))):
        if as_map(volume).get("hostPath") is not None:
            yield Violation("hostPathVolumes", f"spec.volumes[{i}].hostPath", "a hostPath volume is never allowed")


def host_ports(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    for path, container in containers(manifest):
        for i, port in enumerate(as_seq(container.get("ports"))):
            if not unset_or(as_map(port).get("hostPort"), (0,)):
                yield Violation("hostPorts", f"{path}.ports[{i}].hostPort", "a host port is never allowed: 0 or unset")


APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
_APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _apparmor_annotation_allowed(value: Any) -> bool:
    return isinstance(value, str) and (value in ("", "runtime/default") or value.startswith("localhost/"))


def app_armor_profile(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    problem = "the AppArmor profile may not be overridden but by RuntimeDefault or Localhost"
    contexts = [("spec.securityContext", pod_context(manifest)), *container_contexts(manifest)]
    for path, context in contexts:
        profile = as_map(context).get("appArmorProfile")
        if profile is not None and not one_of(as_map(profile).get("type"), _APPARMOR_TYPES):
            yield Violation("appArmorProfile", f"{path}.appArmorProfile.type", problem)
    for key, value in annotation_items(manifest):
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not _apparmor_annotation_allowed(value):
            yield Violation("appArmorProfile", annotation_path(key), "allowed: runtime/default, localhost/<profile>")


# The newest reference set (1.31+ adds container_engine_t).
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def se_linux_options(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    contexts = [("spec.securityContext", pod_context(manifest)), *container_contexts(manifest)]
    for path, context in contexts:
        options = as_map(context).get("seLinuxOptions")
        if options is None:
            continue
        options = as_map(options)
        if options.get("type") is not None and not one_of(options.get("type"), _SELINUX_TYPES):
            yield Violation(
                "seLinuxOptions",
                f"{path}.seLinuxOptions.type",
                f"allowed: unset or one of {', '.join(sorted(t for t in _SELINUX_TYPES if t))}",
            )
        for field in ("user", "role"):
            if options.get(field) not in (None, ""):
                yield Violation(
                    "seLinuxOptions", f"{path}.seLinuxOptions.{field}", "a custom SELinux user or role is never allowed"
                )


def proc_mount(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """The default /proc masks (baseline, and restricted's `procMount_restricted`: podslots does not
    relax baseline for user-namespace pods, so the two are one check)."""
    for path, context in container_contexts(manifest):
        if not unset_or(as_map(context).get("procMount"), ("Default",)):
            yield Violation("procMount", f"{path}.procMount", "the default /proc masks are required: Default or unset")


SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _seccomp_annotations(manifest: Mapping[str, Any], control: str) -> Iterator[Violation]:
    """The pre-1.19 annotations, which older kubelets still honour: runtime/default, docker/default,
    localhost/<profile> only."""
    for key, value in annotation_items(manifest):
        if key == SECCOMP_POD_ANNOTATION or key.startswith(SECCOMP_CONTAINER_ANNOTATION_PREFIX):
            allowed = isinstance(value, str) and (
                value in ("runtime/default", "docker/default") or value.startswith("localhost/")
            )
            if not allowed:
                yield Violation(control, annotation_path(key), "allowed: runtime/default, localhost/<profile>")


def seccomp_profile_baseline(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    contexts = [("spec.securityContext", pod_context(manifest)), *container_contexts(manifest)]
    for path, context in contexts:
        profile = as_map(context).get("seccompProfile")
        if profile is not None and not one_of(as_map(profile).get("type"), _SECCOMP_TYPES):
            yield Violation(
                "seccompProfile_baseline", f"{path}.seccompProfile.type", "allowed: RuntimeDefault, Localhost or unset"
            )
    yield from _seccomp_annotations(manifest, "seccompProfile_baseline")


# The newest reference set (1.37).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    }
)


def sysctls(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    for i, sysctl in enumerate(as_seq(pod_context(manifest).get("sysctls"))):
        if not one_of(as_map(sysctl).get("name"), SAFE_SYSCTLS):
            yield Violation(
                "sysctls", f"spec.securityContext.sysctls[{i}].name", "only the namespaced, isolated (safe) sysctls"
            )


def host_probes_and_host_lifecycle(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    problem = "a probe or lifecycle handler may only reach its own pod: host empty or unset"
    for path, container in containers(manifest):
        handlers = [
            (probe, as_map(container.get(probe))) for probe in ("livenessProbe", "readinessProbe", "startupProbe")
        ]
        lifecycle = as_map(container.get("lifecycle"))
        handlers += [(f"lifecycle.{hook}", as_map(lifecycle.get(hook))) for hook in ("postStart", "preStop")]
        for where, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                if as_map(handler.get(action)).get("host") not in (None, ""):
                    yield Violation("hostProbesAndHostLifecycle", f"{path}.{where}.{action}.host", problem)


# ---- restricted -----------------------------------------------------------------------------

RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def restricted_volumes(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """Every volume's source (each key but `name`) is one of the restricted types (this overrides
    baseline's hostPath check, which it includes)."""
    problem = f"only these volume types: {', '.join(sorted(RESTRICTED_VOLUME_SOURCES))}"
    for i, volume in enumerate(as_seq(pod_spec(manifest).get("volumes"))):
        sources = sorted(str(key) for key in as_map(volume) if key != "name")
        bad = [s for s in sources if s not in RESTRICTED_VOLUME_SOURCES] or ([] if sources else ["(none)"])
        for source in bad:
            field = f"spec.volumes[{i}]" if source == "(none)" else f"spec.volumes[{i}].{source}"
            yield Violation("restrictedVolumes", field, problem)


def allow_privilege_escalation(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    for path, context in container_contexts(manifest):
        if as_map(context).get("allowPrivilegeEscalation") is not False:
            yield Violation("allowPrivilegeEscalation", f"{path}.allowPrivilegeEscalation", "must be set to false")


def run_as_non_root(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """True on every container, or on the pod and not false on any container."""
    pod = pod_context(manifest).get("runAsNonRoot")
    if pod is not None and pod is not True:
        yield Violation("runAsNonRoot", "spec.securityContext.runAsNonRoot", "must be true or unset")
    for path, context in container_contexts(manifest):
        value = as_map(context).get("runAsNonRoot")
        if value is None and pod is not True:
            yield Violation("runAsNonRoot", f"{path}.runAsNonRoot", "must be true (here or on the pod)")
        elif value is not None and value is not True:
            yield Violation("runAsNonRoot", f"{path}.runAsNonRoot", "must be true or unset")


def _non_root_uid(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value != 0)


def run_as_user(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    contexts = [("spec.securityContext", pod_context(manifest)), *container_contexts(manifest)]
    for path, context in contexts:
        if not _non_root_uid(as_map(context).get("runAsUser")):
            yield Violation("runAsUser", f"{path}.runAsUser", "user 0 (root) is not allowed")


def seccomp_profile_restricted(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """RuntimeDefault or Localhost, set on every container or on the pod (overrides baseline's)."""
    problem = "must be RuntimeDefault or Localhost"
    pod_profile = pod_context(manifest).get("seccompProfile")
    pod_set = pod_profile is not None and one_of(as_map(pod_profile).get("type"), _SECCOMP_TYPES)
    if pod_profile is not None and not pod_set:
        yield Violation("seccompProfile_restricted", "spec.securityContext.seccompProfile.type", problem)
    for path, context in container_contexts(manifest):
        profile = as_map(context).get("seccompProfile")
        if profile is None and not pod_set:
            yield Violation(
                "seccompProfile_restricted", f"{path}.seccompProfile.type", f"{problem} (here or on the pod)"
            )
        elif profile is not None and not one_of(as_map(profile).get("type"), _SECCOMP_TYPES):
            yield Violation("seccompProfile_restricted", f"{path}.seccompProfile.type", problem)
    yield from _seccomp_annotations(manifest, "seccompProfile_restricted")


def capabilities_restricted(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """Drop ALL; add at most NET_BIND_SERVICE (overrides baseline's list)."""
    for path, context in container_contexts(manifest):
        capabilities = as_map(as_map(context).get("capabilities"))
        if "ALL" not in [c for c in as_seq(capabilities.get("drop")) if isinstance(c, str)]:
            yield Violation("capabilities_restricted", f"{path}.capabilities.drop", 'must include "ALL"')
        for i, name in enumerate(as_seq(capabilities.get("add"))):
            if name != "NET_BIND_SERVICE":
                yield Violation(
                    "capabilities_restricted", f"{path}.capabilities.add[{i}]", "only NET_BIND_SERVICE may be added"
                )


def keyless_tolerations(manifest: Mapping[str, Any]) -> Iterator[Violation]:
    """podslots' own rule, not the standard's: a toleration without a key tolerates every taint, the
    control plane's and any node kept apart for other work, so a restricted pool may not have one."""
    for i, toleration in enumerate(as_seq(pod_spec(manifest).get("tolerations"))):
        if as_map(toleration).get("key") in (None, ""):
            yield Violation(
                "tolerations", f"spec.tolerations[{i}].key", "a toleration must name a taint key (no tolerate-all)"
            )


# Each level's controls. Restricted is baseline plus its own, where three of its own replace (the
# reference's `OverrideCheckIDs`) the baseline control they tighten.
BASELINE: tuple[Check, ...] = (
    windows_host_process,
    host_namespaces,
    privileged,
    capabilities_baseline,
    host_path_volumes,
    host_ports,
    app_armor_profile,
    se_linux_options,
    proc_mount,
    seccomp_profile_baseline,
    sysctls,
    host_probes_and_host_lifecycle,
)
_OVERRIDDEN = (capabilities_baseline, host_path_volumes, seccomp_profile_baseline)
RESTRICTED: tuple[Check, ...] = (
    *(c for c in BASELINE if c not in _OVERRIDDEN),
    restricted_volumes,
    allow_privilege_escalation,
    run_as_non_root,
    run_as_user,
    seccomp_profile_restricted,
    capabilities_restricted,
    keyless_tolerations,
)
CONTROLS: dict[Level, tuple[Check, ...]] = {Level.BASELINE: BASELINE, Level.RESTRICTED: RESTRICTED}


def check(manifest: Mapping[str, Any], level: Level) -> list[Violation]:
    """Every way the manifest breaks the level; empty when it meets it. Never raises."""
    if not isinstance(manifest, Mapping):
        return [Violation("manifest", "", "the manifest is not an object")]
    return [violation for control in CONTROLS[level] for violation in control(manifest)]
