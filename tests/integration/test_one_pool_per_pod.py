"""A pod belongs to one pool, provably, through the real handlers on moto and the Kubernetes API
stand-in: adoption claims a pod in the cluster before it writes an item, another pool's pod is never
adopted, an adopted pod is never taken for one that failed to come up, and a pod a controller owns is
never deleted (docs/architecture.md, "Adoption")."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.autoscale import EVERY_STATE, Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.cluster_pods import ClusterPod
from podslots.model import ADOPTED, PodState, new_pod
from podslots.names import CLAIM_ANNOTATION, POOL_LABEL
from podslots.reconcile import Reconciler
from podslots.settings import PoolSettings
from podslots.store import SlotStore
from tests.integration.conftest import Api
from tests.support.least_privilege import as_another_process

NS = "agents"
IMAGE = "registry.example/tf-agent:1.9"
DEPLOYMENT_LABELS = {"app": "tf-agent", "pod-template-hash": "5d8f7"}


def settings(**more: Any) -> dict[str, Any]:
    return {
        "min_pods": 0,
        "max_pods": 4,
        "scale_down_delay_s": 0,
        "headroom_pods": 0,  # each pool holds exactly the pods its work needs
        "startup_timeout_s": 120,
        "pod_template": {"image": IMAGE},
        **more,
    }


class Cluster:
    """Several pools on one cluster: the API handlers, and reconcile and autoscale over the stand-in."""

    def __init__(self, api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> None:
        self.api, self.store, self.kube, self.clock = api, store, kube, clock
        self.gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        self.autoscaler = Autoscaler(store, lambda _: self.gateway, RecordingPublisher(), clock, "https://api.example")
        self.reconciler = Reconciler(store, lambda _: self.gateway, RecordingPublisher(), clock)

    def put(self, pool: str, **more: Any) -> None:
        answer = self.api.put_pool(pool, settings(**more))
        assert answer.status in (200, 201), answer.body

    def minute(self, beats: dict[str, str]) -> None:
        """A minute: each agent in `beats` beats for the pool it names (with what it holds there),
        then every pool is reconciled and scaled, and podslots' own new pods come up."""
        self.clock.advance(60)
        for pod, pool in beats.items():
            item = self.store.get_pod(pool, pod)
            held = [s.task_id for s in item.slots.values() if s.task_id] if item else []
            self.api.beat(pool, pod, held=held)
        self.reconciler.run()
        self.autoscaler.run()
        for made in self.kube.pods(NS):
            labels = made["metadata"].get("labels") or {}
            if POOL_LABEL in labels and made["status"].get("phase") != "Running":
                self.kube.set_phase(NS, made["metadata"]["name"], "Running")
                self.api.beat(labels[POOL_LABEL], made["metadata"]["name"])

    def deployment_pods(self, count: int, owned: bool = True) -> list[str]:
        """Pods a Deployment's ReplicaSet made: its labels, none of podslots', owned by it if `owned`."""
        names = []
        for i in range(count):
            name = f"tf-agent-5d8f7-{i:05d}"
            self.kube.add_pod(
                NS,
                {
                    "metadata": {"name": name, "labels": dict(DEPLOYMENT_LABELS)},
                    "spec": {"containers": [{"name": "agent", "image": "registry.example/tf-agent:1.8"}]},
                    "status": {"phase": "Running", "podIP": f"10.1.0.{i + 1}"},
                },
            )
            if owned:
                self.kube.set_controller(NS, name, "ReplicaSet", "tf-agent-5d8f7")
            names.append(name)
        return names

    def in_cluster(self) -> set[str]:
        return {p["metadata"]["name"] for p in self.kube.pods(NS)}

    def items(self, pool: str) -> dict[str, Any]:
        return {p.name: p for p in self.store.pods(pool)}

    def events(self, pool: str, kind: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.store.events(pool, 200) if e.kind == kind]

    def claim(self, pod: str) -> str | None:
        found = self.kube.pod(NS, pod)
        assert found is not None
        return (found["metadata"].get("annotations") or {}).get(CLAIM_ANNOTATION)


@pytest.fixture
def world(api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> Cluster:
    return Cluster(api, store, kube, clock)


def test_an_adopt_selector_on_podslots_own_labels_is_a_422_naming_the_field(world: Cluster):
    # When a pool asks to adopt by podslots' own pool label (another pool's pods)
    answer = world.api.put_pool("b", settings(adopt_selector={"podslots.io/pool": "a"}))
    # Then it is refused, naming the field and the key
    assert answer.status == 422
    (problem,) = answer.body["problems"]
    assert problem["field"] == "adopt_selector"
    assert "podslots.io/pool" in problem["problem"]
    assert world.api.get_pool("b").status == 404


@pytest.mark.parametrize("selector", ["a label of a's template", "podslots' pool label, stored before the rule"])
def test_a_pool_never_adopts_another_pools_pod_and_never_deletes_its_reserved_plan(world: Cluster, selector: str):
    # Given pool a's pod, holding a plan whose apply waits for approval
    world.put("a", min_pods=1, pod_template={"image": IMAGE, "labels": {"team": "infra"}})
    world.minute({})
    (pod,) = world.in_cluster()
    planned = world.api.allocate("a", "plan-1", "plan_and_apply").body
    assert world.api.status("plan-1", "apply_pending").status == 200
    # And pool b, whose adopt selector matches a's pod
    if selector.startswith("a label"):
        world.put("b", adopt_selector={"team": "infra"})
    else:  # a document written before the rule: it stays readable, and is refused at run time
        document = settings(adopt_selector={POOL_LABEL: "a"})
        world.store.put_pool("b", PoolSettings.from_stored(document), int(world.clock.now()))
    # When both pools run for ten minutes (b's startup timeout is 2), the agent beating for a
    for _ in range(10):
        world.minute({pod: "a"})
    # Then b holds no item for a's pod, and the pod is still there
    assert pod in world.in_cluster()
    assert world.items("b") == {}
    # And b's attempt is recorded once, naming the owner; a's plan still resumes on its slot
    refused = world.events("b", "AdoptionRefused")
    assert [(e["pod"], e["owner"]) for e in refused] == [(pod, "a")]
    resumed = world.api.allocate("a", "plan-1", "plan_and_apply")
    assert (resumed.status, resumed.body["pod"], resumed.body["slot"]) == (200, pod, planned["slot"])
    assert world.events("a", "TaskLost") == []


def test_two_pools_adopting_one_deployment_delete_none_of_its_pods(world: Cluster):
    # Given a Deployment's two pods, still owned by its ReplicaSet, and two pools observing them
    # with the same selector; x's reconcile runs first, then y's
    pods = world.deployment_pods(2)
    world.put("x", mode="observe", adopt_selector={"app": "tf-agent"})
    world.put("y", mode="observe", adopt_selector={"app": "tf-agent"})
    world.clock.advance(60)
    world.reconciler.run("x")
    world.reconciler.run("y")
    # When the agents beat for x, x places a task on one pod, and both pools go active for 15 minutes
    beats = dict.fromkeys(pods, "x")
    world.minute(beats)
    placed = world.api.allocate("x", "run-1")
    assert placed.status == 201
    world.put("x", adopt_selector={"app": "tf-agent"})
    world.put("y", adopt_selector={"app": "tf-agent"})
    for _ in range(15):
        world.minute(beats)
    # Then neither pool deleted a pod the ReplicaSet owns, busy or idle, and the task still runs
    assert set(pods) <= world.in_cluster()
    assert world.api.task("run-1").body["status"] == "running"
    # And each pod is x's alone: claimed by x, in x's items, never in y's
    assert {name: world.claim(name) for name in pods} == dict.fromkeys(pods, "x")
    assert world.items("y") == {}
    assert set(pods) <= set(world.items("x"))
    # And y's attempts are recorded once per pod, naming x
    refused = world.events("y", "AdoptionRefused")
    assert sorted((e["pod"], e["owner"]) for e in refused) == [(name, "x") for name in sorted(pods)]
    # And x's roll-out, which would drain the idle one, records once that a controller owns it
    idle = next(name for name in pods if name != placed.body["pod"])
    owned = world.events("x", "PodOwnedByController")
    assert [(e["pod"], e["controller"]) for e in owned] == [(idle, "ReplicaSet/tf-agent-5d8f7")]


def test_an_adopted_pod_whose_agent_never_beats_is_counted_busy_and_never_deleted(world: Cluster):
    # Given an active pool adopting a pod nobody owns, whose agent never beats for the pool
    (pod,) = world.deployment_pods(1, owned=False)
    world.put("x", adopt_selector={"app": "tf-agent"}, max_pods=1)
    # When twenty minutes pass (the startup timeout is two)
    for _ in range(20):
        world.minute({})
    # Then the pod is still there, and still the pool's, as adopted and starting
    assert pod in world.in_cluster()
    item = world.items("x")[pod]
    assert (item.state, item.revision, item.counted_busy) == (PodState.STARTING, ADOPTED, item.slot_count)
    # And the drain's own conditional write refuses it, whatever a caller believes
    assert world.store.start_draining("x", pod, EVERY_STATE) is False
    # When its agent beats for the pool, it is a pod like the others: ready, and idle
    assert world.api.beat("x", pod).status == 200
    item = world.items("x")[pod]
    assert (item.state, item.counted_busy) == (PodState.READY, 0)


def test_a_pod_owned_by_a_controller_is_deleted_only_once_orphaned(world: Cluster):
    # Given an active pool that adopted a ReplicaSet's pod whose agent beats for it (the migration
    # without step 3: the Deployment was not orphaned)
    (pod,) = world.deployment_pods(1)
    world.put("x", adopt_selector={"app": "tf-agent"}, min_pods=1)
    world.minute({})
    # When the pool runs for ten minutes: the roll-out retires the adopted pod, idle, and would drain it
    for _ in range(10):
        world.minute({pod: "x"})
    # Then it is never deleted, and the refusal is recorded once
    assert pod in world.in_cluster()
    (owned,) = world.events("x", "PodOwnedByController")
    assert (owned["pod"], owned["controller"]) == (pod, "ReplicaSet/tf-agent-5d8f7")
    # When the ReplicaSet is deleted with --cascade=orphan
    world.kube.orphan(NS, pod)
    for _ in range(3):
        world.minute({pod: "x"} if pod in world.in_cluster() else {})
    # Then the roll-out replaces it like any outdated pod
    assert pod not in world.in_cluster()
    assert pod not in world.items("x")


class ListThenInterlope:
    """The gateway, with another pool's whole run stepped in between this pool's LIST and its claim."""

    def __init__(self, gateway: KubeGateway, interloper: Any) -> None:
        self.gateway, self.interloper = gateway, interloper

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    def list_pool_pods(self, namespace: str, pool: str, adopt_selector: Any = None) -> list[ClusterPod]:
        listed = self.gateway.list_pool_pods(namespace, pool, adopt_selector)
        interloper, self.interloper = self.interloper, None
        if interloper is not None:
            as_another_process(interloper)
        return listed


def test_of_two_pools_claiming_one_pod_from_the_same_list_exactly_one_adopts_it(world: Cluster):
    # Given one unowned pod both pools select
    (pod,) = world.deployment_pods(1, owned=False)
    world.put("x", mode="observe", adopt_selector={"app": "tf-agent"})
    world.put("y", mode="observe", adopt_selector={"app": "tf-agent"})
    world.clock.advance(60)
    # When y's reconcile runs whole between x's LIST and x's claim
    pools = {p.name: p for p in world.store.pool_records()}
    slow = ListThenInterlope(world.gateway, lambda: world.reconciler.reconcile_pool(pools["y"]))
    racing = Reconciler(world.store, lambda _: slow, RecordingPublisher(), world.clock)
    x_report = racing.reconcile_pool(pools["x"])
    # Then y adopted it, and x's claim, carrying the version it listed, was refused: no item in x
    assert world.claim(pod) == "y"
    assert list(world.items("y")) == [pod]
    assert world.items("x") == {}
    assert "adopted" not in x_report.summary()
    # And x's next run sees y's claim and refuses the pod
    world.clock.advance(60)
    assert world.reconciler.reconcile_pool(pools["x"]).refused == [pod]
    assert world.items("x") == {}


def test_two_pools_holding_one_pod_from_before_claims_keep_it_in_one_pools_items(world: Cluster):
    # Given one pod that two pools adopted before adoption claimed pods: an item in each, no claim
    (pod,) = world.deployment_pods(1, owned=False)
    world.put("x", mode="observe", adopt_selector={"app": "tf-agent"})
    world.put("y", mode="observe", adopt_selector={"app": "tf-agent"})
    uid = (world.kube.pod(NS, pod) or {})["metadata"]["uid"]
    for pool in ("x", "y"):
        assert world.store.put_pod(new_pod(pool, pod, 3, int(world.clock.now()), uid=uid, revision=ADOPTED))
    # When x's reconcile runs, then y's
    world.clock.advance(60)
    world.reconciler.run("x")
    world.reconciler.run("y")
    # Then x claimed it and keeps it; y let go of its item (it held nothing) and records why
    assert world.claim(pod) == "x"
    assert pod in world.items("x")
    assert world.items("y") == {}
    assert [(e["pod"], e["owner"]) for e in world.events("y", "AdoptionRefused")] == [(pod, "x")]


def test_a_claim_whose_item_was_never_written_is_finished_by_the_next_run(world: Cluster):
    # Given a pod x claimed in the cluster, whose item x never wrote (the run crashed in between)
    (pod,) = world.deployment_pods(1, owned=False)
    world.put("x", adopt_selector={"app": "tf-agent"})
    world.put("y", adopt_selector={"app": "tf-agent"})
    world.gateway.patch_annotations(NS, pod, {CLAIM_ANNOTATION: "x"})
    # When both pools reconcile
    world.clock.advance(60)
    world.reconciler.run("y")
    world.reconciler.run("x")
    # Then x recognises its own claim and adopts the pod; y refuses it
    assert world.items("x")[pod].revision == ADOPTED
    assert world.items("y") == {}
    assert world.claim(pod) == "x"


def test_deleting_a_pool_forgets_a_controllers_pod_and_leaves_it_running(world: Cluster):
    # Given an active pool holding a ReplicaSet's pod (its agent beats) and a silent adopted pod
    owned, silent = world.deployment_pods(2)
    world.kube.orphan(NS, silent)
    world.put("x", adopt_selector={"app": "tf-agent"})
    world.minute({})
    world.minute({owned: "x"})
    assert {owned, silent} <= set(world.items("x"))
    # When the pool is deleted and autoscale visits it
    assert world.api.call("DELETE", "/pools/{pool}", pool="x").status == 202
    world.minute({owned: "x"})
    # Then both pods still run, the pool holds neither, and it is gone
    assert {owned, silent} <= world.in_cluster()
    assert world.items("x") == {}
    assert world.api.get_pool("x").status == 404


@pytest.mark.parametrize("fault", [Fault.TRANSACTION_CONFLICT, Fault.ANSWER_LOST])
def test_a_refusal_is_in_the_history_once_whatever_the_table_does(server: MotoServer, fault: Fault):
    # Given a refusal whose first recording meets a table fault
    store = SlotStore()
    detail = {"pod": "dep-1", "owner": "a"}
    server.dispatcher.faults.next("TransactWriteItems", fault)
    first = store.notice_once("b", "AdoptionRefused", pod="dep-1", uid="u-1", detail=detail, now=100)
    # When the refusal repeats on the next runs
    later = [
        store.notice_once("b", "AdoptionRefused", pod="dep-1", uid="u-1", detail=detail, now=100 + 60 * i)
        for i in (1, 2)
    ]
    # Then it is recorded exactly once: now if the write applied (its answer lost), else next run
    assert server.dispatcher.faults.injected[fault] == 1
    assert [first, *later].count(True) <= 1  # a retry that met its own write may not know it wrote
    if fault is Fault.TRANSACTION_CONFLICT:  # nothing applied: recorded by the next run
        assert (first, later) == (False, [True, False])
    recorded = [e for e in store.events("b", 10) if e.kind == "AdoptionRefused"]
    assert [(e.detail["pod"], e.detail["owner"]) for e in recorded] == [("dep-1", "a")]
    # And a new pod of the same name is a new refusal
    assert store.notice_once("b", "AdoptionRefused", pod="dep-1", uid="u-2", detail=detail, now=400)
