"""Pod security levels, checked by podslots (issue 17, finding 4), through the real handlers on the
local stack (moto, the Kubernetes API stand-in, the template's routes and schedules).

A pool's pods meet its `pod_security` level (`restricted` by default, or `baseline`): a PUT whose pod
would break it is a 422 naming each field and control; a pool stored before the levels keeps running
and is reported; a pool's namespace is one of the deployment's agent namespaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.stack import Stack
from local.table_faults import Fault, TableFaults, faults_in_process
from podslots.clock import ManualClock
from podslots.settings import PoolSettings
from podslots.store import SlotStore

IMAGE = "registry.example/tf-agent:1.9"
ATTEMPTS = 4  # what one call makes of a throttle: the first attempt and botocore's retries
POOL = "tf"


def settings(security_context: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    template: dict[str, Any] = {"image": IMAGE, **more.pop("template", {})}
    if security_context is not None:
        template["security_context"] = security_context
    return {"max_pods": 2, "scale_down_delay_s": 0, "pod_template": template, **more}


class World:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.store = SlotStore()

    def put(self, document: dict[str, Any], pool: str = POOL) -> Any:
        return self.stack.call("PUT", "/pools/{pool}", document, pool=pool)

    def store_before_the_rules(self, document: dict[str, Any], pool: str = POOL) -> None:
        """A document as an older podslots stored it: read back in the stored context, as the steps do."""
        self.store.put_pool(pool, PoolSettings.from_stored(document), int(self.stack.clock.now()))

    def minute(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reconcile, then autoscale, as their schedules run them; each one's report of the pool."""
        self.stack.clock.advance(60)
        reports: list[dict[str, Any]] = []
        for function in ("ReconcileFunction", "AutoscaleFunction"):
            result = self.stack.invoke(function, {})  # a direct run of every pool
            reports.append(next((p for p in result["pools"] if p["pool"] == POOL), {}))
        return reports[0], reports[1]

    def pods(self, namespace: str = "agents") -> list[dict[str, Any]]:
        return self.stack.kube.pods(namespace)

    def events(self, kind: str) -> list[dict[str, Any]]:
        answer = self.stack.call("GET", "/pools/{pool}/events", pool=POOL)
        return [e for e in answer.body["events"] if e["kind"] == kind]


@pytest.fixture
def world() -> Iterator[World]:
    with Stack(ManualClock()) as stack:
        yield World(stack)


def violations(answer: Any) -> set[tuple[str, str]]:
    assert (answer.status, answer.body["error"]) == (422, "below_pod_security"), answer.body
    return {(v["control"], v["field"]) for v in answer.body["violations"]}


AGENT = "spec.containers[0].securityContext"


@pytest.mark.parametrize(
    ("security_context", "expected"),
    [
        (
            {"run_as_non_root": False, "run_as_user": 0},
            {("runAsNonRoot", f"{AGENT}.runAsNonRoot"), ("runAsUser", f"{AGENT}.runAsUser")},
        ),
        ({"allow_privilege_escalation": True}, {("allowPrivilegeEscalation", f"{AGENT}.allowPrivilegeEscalation")}),
        ({"seccomp_profile": "Unconfined"}, {("seccompProfile_restricted", f"{AGENT}.seccompProfile.type")}),
        *(
            ({"capabilities_add": [name]}, {("capabilities_restricted", f"{AGENT}.capabilities.add[0]")})
            for name in ("SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "BPF", "SYS_RAWIO", "SYS_ADMIN", "ALL")
        ),
    ],
)
def test_a_security_context_below_restricted_is_a_422_naming_each_field_and_control(
    world: World, security_context: dict[str, Any], expected: set[tuple[str, str]]
):
    # When a pool (restricted: the default) asks for what the finding showed accepted
    answer = world.put(settings(security_context))
    # Then it is refused, naming each violation's field in the pod and the standard's control
    assert violations(answer) == expected
    assert answer.body["pod_security"] == "restricted"
    assert all(field in answer.body["message"] for _, field in expected)
    # And no pool was made
    assert world.stack.call("GET", "/pools/{pool}", pool=POOL).status == 404


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (settings({"capabilities_add": ["CAP_SYS_ADMIN"]}), "pod_template.security_context.capabilities_add"),
        (
            settings(template={"annotations": {"container.apparmor.security.beta.kubernetes.io/agent": "unconfined"}}),
            "pod_template.annotations",
        ),
        (
            settings(template={"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}),
            "pod_template.annotations",
        ),
        ({**settings(), "namespace": "kube-system"}, "namespace"),
    ],
)
def test_what_the_settings_never_take_is_a_422_naming_the_field(world: World, document: dict[str, Any], field: str):
    # When a pool names a capability by the kernel's name, sets a profile by annotation, or asks for
    # a namespace outside the agent namespaces
    answer = world.put(document)
    # Then it is refused, naming the field
    assert (answer.status, answer.body["error"]) == (422, "invalid_request"), answer.body
    assert [p["field"] for p in answer.body["problems"]] == [field]
    assert world.stack.call("GET", "/pools/{pool}", pool=POOL).status == 404


def test_a_toleration_of_every_taint_is_refused_at_restricted_and_allowed_at_baseline(world: World):
    tolerate_all = {"tolerations": [{"operator": "Exists"}]}
    # When a restricted pool tolerates every taint (control-plane nodes included)
    refused = world.put(settings(template=tolerate_all))
    # Then it is refused, naming the toleration
    assert violations(refused) == {("tolerations", "spec.tolerations[0].key")}
    # And a toleration that names its taint is fine, as is a baseline pool's keyless one
    assert world.put(settings(template={"tolerations": [{"key": "gpu", "operator": "Exists"}]})).status == 201
    assert world.put({**settings(template=tolerate_all), "pod_security": "baseline"}).status == 200


def test_a_baseline_pool_may_run_its_agent_as_root_but_keeps_every_default_it_leaves_unset(world: World):
    # Given a baseline pool whose agent image runs as root
    root = {"run_as_non_root": False, "run_as_user": 0}
    answer = world.put({**settings(root, min_pods=1), "pod_security": "baseline"})
    assert answer.status == 201, answer.body
    # When autoscale makes its pod
    world.minute()
    (pod,) = world.pods()
    # Then the pod runs as root, and what the pool left unset keeps the restricted default
    context = pod["spec"]["containers"][0]["securityContext"]
    assert (context["runAsNonRoot"], context["runAsUser"]) == (False, 0)
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (context["allowPrivilegeEscalation"], context["privileged"]) == (False, False)
    assert context["capabilities"] == {"drop": ["ALL"]}
    # And baseline still refuses what it never allows: a capability outside the default set, Unconfined
    with_ptrace = {**settings({**root, "capabilities_add": ["SYS_PTRACE"]}), "pod_security": "baseline"}
    assert violations(world.put(with_ptrace)) == {("capabilities_baseline", f"{AGENT}.capabilities.add[0]")}
    unconfined = {**settings({"seccomp_profile": "Unconfined"}), "pod_security": "baseline"}
    assert violations(world.put(unconfined)) == {("seccompProfile_baseline", f"{AGENT}.seccompProfile.type")}


def test_a_pool_stored_below_its_level_keeps_running_is_reported_once_and_its_next_put_must_meet_it(
    world: World, capsys: pytest.CaptureFixture[str]
):
    # Given a pool stored before the levels existed, whose agent keeps SYS_PTRACE (restricted by default)
    old = settings({"capabilities_add": ["SYS_PTRACE"]}, min_pods=1)
    world.store_before_the_rules(old)
    capsys.readouterr()
    # When reconcile and autoscale run for five minutes
    reports = [world.minute() for _ in range(5)]
    # Then the pool stays readable and keeps running: its pod is made as stored
    assert world.stack.call("GET", "/pools/{pool}", pool=POOL).status == 200
    (pod,) = world.pods()
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] == ["SYS_PTRACE"]
    # And it is reported: every run (the metric, reconcile's report), in its history once
    printed = capsys.readouterr().out
    assert printed.count('"PoolBelowPodSecurity"') >= 5
    assert all(r["below_pod_security"] == [f"capabilities_restricted: {AGENT}.capabilities.add[0]"] for r, _ in reports)
    (event,) = world.events("PoolBelowPodSecurity")
    assert event["pod_security"] == "restricted"
    assert [(v["control"], v["field"]) for v in event["violations"]] == [
        ("capabilities_restricted", f"{AGENT}.capabilities.add[0]")
    ]
    # And its next PUT must meet the level: the same document is refused, a restricted one taken
    assert violations(world.put(old)) == {("capabilities_restricted", f"{AGENT}.capabilities.add[0]")}
    assert world.put(settings(min_pods=1)).status == 200
    reconciled, _ = world.minute()
    assert "below_pod_security" not in reconciled
    assert len(world.events("PoolBelowPodSecurity")) == 1


def test_a_pool_whose_namespace_is_not_allowed_is_left_alone_and_reported(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # Given a pool stored in kube-system, which is not among the agent namespaces
    world.store_before_the_rules({**settings(min_pods=1), "namespace": "kube-system"})
    capsys.readouterr()
    # When reconcile and autoscale run for three minutes
    reports = [world.minute() for _ in range(3)]
    # Then they leave it alone: no pod is made there, and each says why
    assert world.pods("kube-system") == []
    assert all(r["skipped"] == a["skipped"] == "namespace not allowed" for r, a in reports)
    # And it is counted every run, and recorded in its history once, naming the namespace
    assert capsys.readouterr().out.count('"PoolNamespaceNotAllowed"') >= 6
    (event,) = world.events("PoolNamespaceNotAllowed")
    assert event["namespace"] == "kube-system"
    # When the deployment allows the namespace (its AgentNamespaces parameter)
    monkeypatch.setenv("PODSLOTS_AGENT_NAMESPACES", "agents,kube-system")
    world.minute()
    # Then the pool is acted on again
    assert len(world.pods("kube-system")) == 1


def test_a_busy_table_costs_the_report_one_run_never_the_pools_repair(world: World):
    # Given a pool stored below its level, and a table that throttles the next transaction past
    # the client's retries (the report's history entry)
    world.store_before_the_rules(settings({"capabilities_add": ["SYS_PTRACE"]}, min_pods=1))
    faults = TableFaults()
    faults.next("TransactWriteItems", Fault.THROTTLE, times=ATTEMPTS)
    # When reconcile and autoscale run
    with faults_in_process(faults, transient=False):
        reconciled, _ = world.minute()
    # Then the throttle met the report, and the run went on: no failure, and the pod is made
    assert faults.injected == {Fault.THROTTLE: ATTEMPTS}
    assert "errors" not in reconciled
    assert reconciled["below_pod_security"]
    assert len(world.pods()) == 1
    assert world.events("PoolBelowPodSecurity") == []
    # And the next run records it, once
    world.minute()
    world.minute()
    assert len(world.events("PoolBelowPodSecurity")) == 1
