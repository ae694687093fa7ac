"""Every alarm and every dashboard line of template.yaml watches a metric the code really emits, with
exactly those dimensions: a renamed metric or a changed dimension set cannot silently blind an alarm.

What the code emits is not written down here. A world of the real handlers on the local stack (moto,
the Kubernetes API stand-in, the template's routes, schedules and rules) runs a pool's life cycle
with Powertools metrics on, each function with the environment the template gives it (its
POWERTOOLS_SERVICE_NAME, which Powertools turns into the `service` dimension, and
PODSLOTS_ENVIRONMENT), and the EMF records the functions print are what was emitted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from local.routes import api_routes
from local.stack import NAMESPACE, Stack, function_module, queue_mappings
from local.template import template
from podslots import observability
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.environment import ENVIRONMENT_VAR
from podslots.model import Pod, TaskType, new_pod
from podslots.names import CLAIM_ANNOTATION
from podslots.settings import PoolSettings
from podslots.store import SlotStore
from podslots.store.keys import CONFIG_SK, REGISTRY_PK, pod_sk, pool_pk
from tests.support.cfn import Resolver
from tests.support.least_privilege import as_another_process

POOL, BROKEN, UNREADABLE, ADOPTER = "terraform", "broken", "unreadable", "adopter"
BELOW, OUTSIDE = "below", "outside"  # stored before the pod security rules
SETTINGS = {
    "namespace": NAMESPACE,
    "slots_per_pod": 2,
    "min_pods": 0,
    "max_pods": 2,
    "scale_down_delay_s": 0,
    "headroom_pods": 0,  # the scripted life counts its pods: exactly what the work needs
    "pod_template": {"image": "registry.example/tf-agent:1.9"},
}
# The variables a function's metrics depend on: Powertools' service and namespace, and the
# environment observability.py adds as the environment's total.
METRIC_VARIABLES = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", ENVIRONMENT_VAR)
# What AWS publishes for a resource of the template (not podslots' code, so named here): the
# namespace's dimension, the resource type it names, and the metric names AWS documents.
AWS_METRICS = {
    "AWS/Lambda": ("FunctionName", "AWS::Serverless::Function", {"Errors", "Invocations", "Throttles", "Duration"}),
    "AWS/SQS": ("QueueName", "AWS::SQS::Queue", {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesSent"}),
}


# ---- what the code emits ----------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    dimensions: frozenset[str]


@dataclass
class Emitted:
    """Each (namespace, metric, dimension names) seen in an EMF record, with the values seen."""

    values: dict[Series, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    peaks: dict[Series, float] = field(default_factory=lambda: defaultdict(float))

    def read(self, printed: str) -> None:
        for line in printed.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or "_aws" not in record:
                continue
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for dimension_set in directive["Dimensions"]:
                    for metric in directive["Metrics"]:
                        series = Series(directive["Namespace"], metric["Name"], frozenset(dimension_set))
                        for name in dimension_set:
                            self.values[series][name].add(str(record[name]))
                        value = record[metric["Name"]]
                        self.peaks[series] = max(self.peaks[series], *(value if isinstance(value, list) else [value]))

    def series(self, namespace: str, name: str) -> set[frozenset[str]]:
        return {s.dimensions for s in self.values if (s.namespace, s.name) == (namespace, name)}


def deployed_environment(logical_id: str) -> dict[str, str]:
    """The metric variables of a function as deployed: the Globals, then its own, resolved."""
    variables = {
        **template()["Globals"]["Function"]["Environment"]["Variables"],
        **template()["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    resolved = Resolver().resolve({k: v for k, v in variables.items() if k in METRIC_VARIABLES})
    return {k: str(v) for k, v in resolved.items()}


@contextlib.contextmanager
def deployed_as(logical_id: str) -> Iterator[None]:
    """Run as that function runs in Lambda: its environment, and the shared Metrics object as its
    own process would have made it at import (one process per function there, one here)."""
    provider = observability.metrics.provider
    saved_env = {k: os.environ.get(k) for k in METRIC_VARIABLES}
    saved = (provider.service, provider.namespace)
    variables = deployed_environment(logical_id)
    assert "POWERTOOLS_SERVICE_NAME" in variables, f"{logical_id} names no service"
    os.environ.update(variables)
    provider.service = variables["POWERTOOLS_SERVICE_NAME"]
    provider.namespace = variables.get("POWERTOOLS_METRICS_NAMESPACE", observability.NAMESPACE)
    try:
        yield
    finally:
        provider.service, provider.namespace = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DeployedStack(Stack):
    """The local stack, each handler run in its function's deployed environment."""

    def __enter__(self) -> DeployedStack:
        super().__enter__()
        return self

    def call(self, method: str, resource: str, body: Any = None, **path: str) -> Any:
        (function,) = {r.function for r in api_routes() if (r.method, r.path) == (method, resource)}
        with deployed_as(function):
            return super().call(method, resource, body, **path)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        with deployed_as(logical_id):
            return super().invoke(logical_id, event)


class StoreWithAnInterloper(SlotStore):
    """The allocate function's store; after its next read of open slots, another invocation acts."""

    def __init__(self) -> None:
        super().__init__()
        self.after_next_read: Callable[[], object] | None = None

    def open_slots(self, pool: str, pods: int, second_choice: bool = False) -> list[Pod]:
        read = super().open_slots(pool, pods, second_choice)
        interloper, self.after_next_read = self.after_next_read, None
        if interloper is not None:
            as_another_process(interloper)
        return read


class World:
    def __init__(self, stack: DeployedStack) -> None:
        self.stack = stack

    def allocate(self, task_id: str, task_type: str = "plan") -> Any:
        body = {"task_id": task_id, "task_type": task_type}
        return self.stack.call("POST", "/pools/{pool}/allocations", body, pool=POOL)

    def status(self, task_id: str, status: str) -> int:
        return int(self.stack.call("PUT", "/tasks/{task_id}/status", {"status": status}, task_id=task_id).status)

    def put_pool(self, pool: str, **changes: Any) -> int:
        return int(self.stack.call("PUT", "/pools/{pool}", {**SETTINGS, **changes}, pool=pool).status)

    def run(self, function: str) -> Any:
        """One run of a scheduled function, with the event its schedule sends."""
        return self.stack.invoke(function, {})  # a direct run of every pool

    def pod_comes_up(self, name: str, ip: str, beat_from: str | None = None) -> None:
        """The pod runs, reconcile records its IP, and its agent sends its first beat."""
        self.stack.kube.set_phase(NAMESPACE, name, "Running")
        self.stack.kube.set_pod_ip(NAMESPACE, name, ip)
        self.run("ReconcileFunction")
        body = {"held_tasks": [], "pod_ip": beat_from or ip}
        answer = self.stack.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", body, pool=POOL, pod=name)
        assert answer.status == 200, answer.body

    def pods_in_cluster(self) -> set[str]:
        return {p["metadata"]["name"] for p in self.stack.kube.pods(NAMESPACE)}

    def corrupt(self, key: dict[str, str], path: str, value: Any) -> None:
        """A write straight into the table, past the code: what a step meets after a bad migration."""
        names = {f"#n{i}": part for i, part in enumerate(path.split("."))}
        table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
        table.update_item(
            Key=key,
            UpdateExpression=f"SET {'.'.join(names)} = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": value},
        )


def live_a_pools_life(world: World) -> None:
    clock = world.stack.clock
    assert world.put_pool(POOL) == 201
    # Two more pools the scheduled steps meet on every run: one with a pod item no version of the
    # code can read (its steps fail), one whose settings no longer validate (its steps skip it).
    assert world.put_pool(BROKEN) == 201
    SlotStore().put_pod(new_pod(BROKEN, f"{BROKEN}-x", 2, int(clock.now())))
    world.corrupt({"pk": pool_pk(BROKEN), "sk": pod_sk(f"{BROKEN}-x")}, "state", "exploded")
    assert world.put_pool(UNREADABLE) == 201
    for key in ({"pk": pool_pk(UNREADABLE), "sk": CONFIG_SK}, {"pk": REGISTRY_PK, "sk": pool_pk(UNREADABLE)}):
        world.corrupt(key, "settings.slots_per_pod", 0)
    # Two pools stored before the pod security rules, which reconcile reports every run: one whose
    # agent keeps SYS_PTRACE (below its level), one in a namespace no longer allowed (left alone).
    below = {**SETTINGS, "pod_template": {"image": "x", "security_context": {"capabilities_add": ["SYS_PTRACE"]}}}
    for name, document in ((BELOW, below), (OUTSIDE, {**SETTINGS, "namespace": "kube-system"})):
        SlotStore().put_pool(name, PoolSettings.from_stored(document), int(clock.now()))

    # A cold pool: no capacity, and the shortage wakes autoscale, which creates a pod.
    assert world.allocate("t1", "plan_and_apply").status == 503
    (pod_a,) = world.pods_in_cluster()
    clock.advance(20)
    world.pod_comes_up(pod_a, "10.0.0.1", beat_from="10.9.9.9")  # an agent reporting another IP
    assert world.allocate("t1", "plan_and_apply").status == 201  # after its wait

    # Another allocation takes the last idle slot between t2's read and its write: t2 retries,
    # finds none, and waits for the second pod the new shortage brings.
    allocator = function_module("AllocateFunction").allocator
    store, allocator.store = allocator.store, StoreWithAnInterloper()
    other = Allocator(SlotStore(), RecordingPublisher(), clock)
    allocator.store.after_next_read = lambda: other.allocate(AllocationRequest(POOL, "t3", TaskType.PLAN))
    try:
        assert world.allocate("t2").status == 503
    finally:
        allocator.store = store
    (pod_b,) = world.pods_in_cluster() - {pod_a}
    clock.advance(20)
    world.pod_comes_up(pod_b, "10.0.0.2")
    assert world.allocate("t2").status == 201

    # A plan waits for approval (its slot reserved); another task ends (its slot released).
    assert world.status("t1", "apply_pending") == 200
    assert world.status("t3", "success") == 200
    # max_pods lowered below the pods, every one busy: the step down is blocked, nothing forced.
    assert world.put_pool(POOL, max_pods=1) == 200
    world.run("AutoscaleFunction")
    assert world.pods_in_cluster() == {pod_a, pod_b}
    # A pod vanishes under its running task: reconcile marks the task lost.
    world.stack.kube.remove(NAMESPACE, pod_b)
    world.run("ReconcileFunction")
    assert world.stack.call("GET", "/tasks/{task_id}", task_id="t2").body["status"] == "lost"
    # The approval never comes: the reservation expires; the idle pool scales down.
    clock.advance(86400 + 60)
    world.run("ExpireFunction")
    assert world.stack.call("GET", "/tasks/{task_id}", task_id="t1").body["status"] == "expired"
    world.run("AutoscaleFunction")
    assert SlotStore().get_pod(POOL, pod_a) is None

    # A new agent image while a task runs on the only pod: autoscale rolls the pool over.
    assert world.put_pool(POOL) == 200  # max_pods back to 2: room for the surge
    assert world.allocate("t5").status == 503
    (pod_c,) = world.pods_in_cluster() - {pod_a}
    clock.advance(20)
    world.pod_comes_up(pod_c, "10.0.0.3")
    assert world.allocate("t5").status == 201
    assert world.put_pool(POOL, pod_template={"image": "registry.example/tf-agent:1.10"}) == 200
    world.run("AutoscaleFunction")  # the roll-out starts: a current pod surges in
    (pod_d,) = world.pods_in_cluster() - {pod_a, pod_c}
    clock.advance(20)
    world.pod_comes_up(pod_d, "10.0.0.4")
    assert world.status("t5", "success") == 200
    for _ in range(3):  # the outdated pod, idle now, is retired; then none is left
        world.run("AutoscaleFunction")
    assert SlotStore().get_pod(POOL, pod_c) is None

    # A pool adopting a Deployment's pods: one is already claimed by another pool (refused), one a
    # ReplicaSet still owns, which fails: its item goes, and the pod is left to its controller.
    assert world.put_pool(ADOPTER, adopt_selector={"app": "legacy"}) == 201
    kube = world.stack.kube
    for name, notes in (("legacy-claimed", {CLAIM_ANNOTATION: POOL}), ("legacy-owned", {})):
        labels = {"app": "legacy"}
        kube.add_pod(NAMESPACE, {"metadata": {"name": name, "labels": labels, "annotations": notes}})
        kube.set_phase(NAMESPACE, name, "Running")
    kube.set_controller(NAMESPACE, "legacy-owned", "ReplicaSet", "legacy-5d8f7")
    world.run("ReconcileFunction")
    assert SlotStore().get_pod(ADOPTER, "legacy-owned") is not None
    kube.set_phase(NAMESPACE, "legacy-owned", "Failed")
    world.run("ReconcileFunction")
    assert {"legacy-claimed", "legacy-owned"} <= world.pods_in_cluster()


@pytest.fixture(scope="module")
def emitted() -> Emitted:
    printed = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as env,
        DeployedStack(ManualClock()) as stack,
        contextlib.redirect_stdout(printed),  # Powertools prints each EMF record to stdout
    ):
        env.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        live_a_pools_life(World(stack))
    found = Emitted()
    found.read(printed.getvalue())
    return found


# ---- what the template watches --------------------------------------------------------------


@dataclass(frozen=True)
class Watched:
    """One metric an alarm or a dashboard line names; `raw` keeps each dimension's intrinsic."""

    where: str
    namespace: str
    name: str
    dimensions: dict[str, Any]
    raw: dict[str, Any]


def alarms() -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template()["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def alarm_metrics(name: str) -> list[Watched]:
    props = alarms()[name]["Properties"]
    if "MetricName" in props:
        stats = [props]
    else:  # metric math: the metrics its expression reads
        stats = [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]
    resolver = Resolver()
    return [
        Watched(
            name,
            m["Namespace"],
            m["MetricName"],
            {d["Name"]: resolver.resolve(d["Value"]) for d in m.get("Dimensions", [])},
            {d["Name"]: d["Value"] for d in m.get("Dimensions", [])},
        )
        for m in stats
    ]


def dashboard() -> dict[str, Any]:
    body = template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    return dict(json.loads(Resolver().resolve(body)))


_SEARCH = re.compile(r"""SEARCH\('\{(?P<schema>[^}]*)\}\s+MetricName="(?P<name>[^"]+)"',\s*'[^']+',\s*\d+\)""")


def dashboard_metrics() -> list[Watched]:
    """Every metric a dashboard widget names: SEARCH expressions and explicit metric arrays."""
    found = []
    for widget in dashboard()["widgets"]:
        title = widget["properties"].get("title", widget["type"])
        for line in widget["properties"].get("metrics", []):
            head = line[0]
            if isinstance(head, dict):  # an expression
                expression = head["expression"]
                match = _SEARCH.fullmatch(expression)
                assert match or "SEARCH" not in expression, f"{title}: a SEARCH this test cannot read: {expression}"
                if match:
                    namespace, *dimensions = (part.strip() for part in match["schema"].split(","))
                    found.append(Watched(title, namespace, match["name"], dict.fromkeys(dimensions), {}))
                continue
            namespace, name, *rest = [item for item in line if not isinstance(item, dict)]
            pairs = dict(zip(rest[::2], rest[1::2], strict=True))
            found.append(Watched(title, namespace, name, pairs, pairs))
    return found


def resource_named(watched: Watched, dimension: str) -> str:
    """The logical id of the template resource a resolved AWS dimension value names."""
    value = watched.dimensions[dimension]
    resources = template()["Resources"]
    for logical_id in resources:
        if value in (f"{logical_id}-id", f"{logical_id}.QueueName"):  # tests/support/cfn.py's Ref, GetAtt
            return logical_id
    raise AssertionError(f"{watched.where}: {dimension}={value!r} names no resource of the template")


def check(watched: Watched, emitted: Emitted) -> None:
    if watched.namespace == observability.NAMESPACE:
        series = Series(watched.namespace, watched.name, frozenset(watched.dimensions))
        assert series in emitted.values, (
            f"{watched.where}: {watched.name} with dimensions {sorted(watched.dimensions)} is never emitted; "
            f"the code emits it with {sorted(sorted(d) for d in emitted.series(watched.namespace, watched.name))}"
        )
        for dimension, value in watched.dimensions.items():
            if value is not None:  # a fixed value (an alarm's), not a SEARCH over every value
                assert value in emitted.values[series][dimension], (watched.where, dimension, value)
        return
    assert watched.namespace in AWS_METRICS, f"{watched.where}: {watched.namespace} is neither podslots' nor known"
    dimension, resource_type, names = AWS_METRICS[watched.namespace]
    assert set(watched.dimensions) == {dimension}, watched
    assert watched.name in names, watched
    assert template()["Resources"][resource_named(watched, dimension)]["Type"] == resource_type, watched


# ---- the checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("alarm", sorted(alarms()))
def test_each_alarm_watches_a_metric_the_code_emits_with_exactly_those_dimensions(alarm: str, emitted: Emitted):
    watched = alarm_metrics(alarm)
    assert watched, alarm
    for metric in watched:
        check(metric, emitted)


def test_each_podslots_metric_on_the_dashboard_is_emitted_per_pool(emitted: Emitted):
    watched = dashboard_metrics()
    assert {w.namespace for w in watched} == {observability.NAMESPACE, "AWS/Lambda", "AWS/SQS"}
    for metric in watched:
        if metric.namespace == observability.NAMESPACE:
            assert set(metric.dimensions) == {"pool", "service"}, metric  # one line per pool
        check(metric, emitted)


def test_every_podslots_metric_goes_out_per_pool_and_as_the_environments_total(emitted: Emitted):
    names = {s.name for s in emitted.values if s.namespace == observability.NAMESPACE}
    # The world reaches what the alarms watch, each past zero: not a world that emits nothing.
    total = frozenset({observability.ENVIRONMENT_DIMENSION})
    for alarmed in {w.name for n in alarms() for w in alarm_metrics(n) if w.namespace == observability.NAMESPACE}:
        assert emitted.peaks[Series(observability.NAMESPACE, alarmed, total)] > 0, alarmed
    for name in names:
        assert emitted.series(observability.NAMESPACE, name) == {
            frozenset({"pool", "service"}),
            frozenset({observability.ENVIRONMENT_DIMENSION}),
        }, name


def test_each_alarm_says_what_to_do_and_notifies_the_topic_only_when_one_is_given():
    topic = "arn:aws:sns:us-east-1:111122223333:pager"
    for name, alarm in alarms().items():
        given = Resolver({"AlarmTopicArn": topic}).resolve(alarm["Properties"])
        assert "Runbook:" in given["AlarmDescription"], name
        assert len(given["AlarmDescription"]) <= 1024, name  # CloudWatch's limit
        assert given["TreatMissingData"] in ("notBreaching", "breaching"), name  # chosen, not defaulted
        assert given["AlarmActions"] == given["OKActions"] == [topic], name
        none = Resolver().resolve(alarm["Properties"])
        assert "AlarmActions" not in none, name
        assert "OKActions" not in none, name


def test_a_stopped_schedule_breaches_on_missing_data_and_nothing_else_does():
    breaching = {n for n, a in alarms().items() if a["Properties"]["TreatMissingData"] == "breaching"}
    assert breaching == {"ReconcileNotRunningAlarm", "AutoscaleNotRunningAlarm", "ExpireNotRunningAlarm"}
    # the schedules run the steps through the fan-out: the functions their queues invoke
    scheduled = {m.function for m in queue_mappings()}
    assert {s["function"] for s in _scheduled_functions()} == {"DispatchFunction"}
    watched = {resource_named(m, "FunctionName") for n in breaching for m in alarm_metrics(n)}
    assert watched == scheduled


def test_each_function_has_an_errors_alarm():
    functions = {n for n, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    errors = {
        resource_named(m, "FunctionName")
        for n in alarms()
        for m in alarm_metrics(n)
        if (m.namespace, m.name) == ("AWS/Lambda", "Errors")
    }
    assert errors == functions


def test_the_dashboard_shows_every_alarm_and_substitutes_nothing_itself():
    (widget,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    assert widget["properties"]["alarms"] == [f"arn:aws:service:us-east-1:111122223333:{n}" for n in alarms()]
    # Fn::ToJsonString may become an Fn::Sub once deployed: a literal ${...} in the body would then
    # be read as a reference (the labels are plain text for that reason).
    assert "${" not in json.dumps(dashboard())


def _scheduled_functions() -> list[dict[str, str]]:
    return [
        {"function": name, "event": event_name}
        for name, resource in template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event_name, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] == "Schedule"
    ]
