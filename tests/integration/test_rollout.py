"""Roll-outs and the pod cordon, through the real handlers on moto and the Kubernetes API stand-in:
a new agent image replaces every pod without killing a task, and the apply still runs where its
plan ran."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.model import Cordon, PodState
from podslots.names import REVISION_LABEL
from podslots.reconcile import Reconciler
from podslots.rollout import live
from podslots.settings import PoolSettings, template_revision
from podslots.store import SlotStore
from tests.integration.conftest import Api

NS, POOL = "agents", "terraform"
OLD, NEW, NEWER = "registry.example/tf-agent:1.9", "registry.example/tf-agent:1.10", "registry.example/tf-agent:1.11"


def settings(image: str = OLD, **more: Any) -> dict[str, Any]:
    return {
        "min_pods": 2,
        "max_pods": 6,
        "max_surge": 1,
        "scale_down_delay_s": 0,
        "pod_template": {"image": image},
        **more,
    }


class World:
    """One pool: the API handlers, the two scheduled steps on the stand-in, agents that come up."""

    def __init__(self, api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> None:
        self.api, self.store, self.kube, self.clock = api, store, kube, clock
        self.bus = RecordingPublisher()
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        self.autoscaler = Autoscaler(store, lambda _: gateway, self.bus, clock, "https://api.example/v1")
        self.reconciler = Reconciler(store, lambda _: gateway, self.bus, clock)
        self.deleted_busy: list[str] = []  # pods that left the cluster while their item held a task
        self.sizes: list[int] = []

    def put(self, **more: Any) -> None:
        answer = self.api.put_pool(POOL, settings(**more))
        assert answer.status in (200, 201), answer.body

    def revision(self) -> str:
        return template_revision(PoolSettings.model_validate(self.api.get_pool(POOL).body["settings"]))

    def minute(self) -> dict[str, Any]:
        """A minute passes: every agent beats with the tasks it holds, reconcile and autoscale run,
        then the new pods' agents start and send their first beat."""
        self.clock.advance(60)
        for pod in self.store.pods(POOL):
            if self.kube.pod(NS, pod.name) is not None and pod.state is not PodState.STARTING:
                held = [s.task_id for s in pod.slots.values() if s.task_id]
                assert self.api.beat(POOL, pod.name, held=held).status in (200, 410)
        before = {p.name: p for p in self.store.pods(POOL)}
        self.reconciler.run(POOL)
        (report,) = self.autoscaler.run(POOL)
        in_cluster = {p["metadata"]["name"] for p in self.kube.pods(NS)}
        self.deleted_busy += [n for n, p in before.items() if n not in in_cluster and p.busy]
        for name in sorted(in_cluster):
            item = self.store.get_pod(POOL, name)
            if item is not None and item.state is PodState.STARTING:
                self.kube.set_phase(NS, name, "Running")
                assert self.api.beat(POOL, name).status == 200
        self.sizes.append(len(live(self.store.pods(POOL))))
        return report.summary()

    def pods(self) -> dict[str, str | None]:
        """Each pod's revision, as its item records it."""
        return {p.name: p.revision for p in self.store.pods(POOL)}

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.store.events(POOL, 200) if e.kind == kind]


@pytest.fixture
def world(api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> World:
    w = World(api, store, kube, clock)
    w.put()
    w.minute()  # autoscale creates min_pods pods
    w.minute()  # ... and they come up
    assert len(w.pods()) == 2
    return w


def test_a_rollout_with_running_and_reserved_slots_kills_nothing_and_ends_with_only_current_pods(world: World):
    # Given a running plan and a plan whose apply waits for approval, on the old image
    running = world.api.allocate(POOL, "run-1", "plan").body
    planned = world.api.allocate(POOL, "plan-1", "plan_and_apply").body
    assert world.api.status("plan-1", "apply_pending").status == 200
    old_pods = set(world.pods())
    # When the image changes, and the pool rolls for 10 minutes
    world.put(image=NEW)
    new = world.revision()
    for _ in range(10):
        world.minute()
    # Then the pods that hold the tasks are still there, retired (no new task goes to them)
    holders = {running["pod"], planned["pod"]}
    pods = {p.name: p for p in world.store.pods(POOL)}
    assert holders <= pods.keys()
    assert all(pods[h].cordoned == Cordon.OUTDATED for h in holders)
    # And a new task goes to a current pod
    fresh = world.api.allocate(POOL, "run-2", "plan").body
    assert world.pods()[fresh["pod"]] == new
    # When the running task ends and the apply is approved: it runs on its plan's pod and slot
    assert world.api.status("run-1", "success").status == 200
    resumed = world.api.allocate(POOL, "plan-1", "plan_and_apply")
    assert (resumed.status, resumed.body["pod"], resumed.body["slot"]) == (200, planned["pod"], planned["slot"])
    assert world.api.status("plan-1", "applied").status == 200
    for _ in range(4):
        world.minute()
    # Then every old pod is gone, the pool is current, and nothing was lost or killed while busy
    assert not old_pods & set(world.pods())
    assert set(world.pods().values()) == {new}
    assert all(p["metadata"]["labels"][REVISION_LABEL] == new for p in world.kube.pods(NS))
    assert world.deleted_busy == []
    assert world.events("TaskLost") == []
    # And the roll-out was announced, in the history and on the bus, and it finished
    (started,) = world.events("RolloutStarted")
    assert started["revision"] == new
    assert started["outdated"] == 2
    (finished,) = world.events("RolloutFinished")
    assert finished["revision"] == new
    assert [e["revision"] for e in world.bus.of("RolloutFinished")] == [new]


def test_the_surge_limit_holds_through_a_rollout(world: World):
    # Given a pool of 2 pods with max_surge 1, each holding a task
    world.api.allocate(POOL, "a", "plan")
    world.api.allocate(POOL, "b", "plan")
    world.sizes.clear()
    # When the image changes and the pool rolls while those tasks run, then end
    world.put(image=NEW)
    for minute in range(12):
        world.minute()
        if minute == 4:
            world.api.status("a", "success")
            world.api.status("b", "success")
    # Then the pool never had more than 2 + 1 live pods, and it ended current
    assert max(world.sizes) <= 3
    assert set(world.pods().values()) == {world.revision()}


def test_allocation_prefers_a_current_pod_to_a_fuller_outdated_one(world: World):
    # Given an outdated pod holding a task (the fullest), and one current pod ready after the change
    busy = world.api.allocate(POOL, "a", "plan").body["pod"]
    world.put(image=NEW, min_pods=3, max_pods=6, max_surge=1)
    world.minute()
    world.minute()
    current = [n for n, r in world.pods().items() if r == world.revision()]
    assert current
    # When a task is dispatched
    placed = world.api.allocate(POOL, "b", "plan").body["pod"]
    # Then it goes to the current pod, not to the fuller outdated one
    assert placed in current
    assert placed != busy


def test_a_change_of_only_scaling_settings_starts_no_rollout(world: World):
    before = world.revision()
    world.put(min_pods=3, max_pods=8, max_surge=2, scale_up_utilization=0.9)
    for _ in range(3):
        world.minute()
    assert world.revision() == before
    assert world.events("RolloutStarted") == []
    assert set(world.pods().values()) == {before}


def test_a_template_change_during_a_rollout_starts_a_new_one_from_there(world: World):
    # Given a roll-out under way, held back by a running task on an old pod
    world.api.allocate(POOL, "a", "plan")
    world.put(image=NEW)
    world.minute()
    first = world.revision()
    # When the image changes again before it finished
    world.put(image=NEWER)
    world.minute()
    # Then a new roll-out starts, superseding the first, and the pool ends on the newest revision
    started = world.events("RolloutStarted")
    assert [e["revision"] for e in reversed(started)] == [first, world.revision()]
    assert started[0]["supersedes"] == first
    world.api.status("a", "success")
    for _ in range(10):
        world.minute()
    assert set(world.pods().values()) == {world.revision()}
    assert world.deleted_busy == []


def test_a_rollout_under_steady_load_finishes(world: World):
    # Given a steady load: a task starts every minute and runs for three
    world.put(min_pods=2, max_pods=6, max_surge=2)
    running: list[tuple[str, int]] = []
    world.put(image=NEW, min_pods=2, max_pods=6, max_surge=2)
    for minute in range(30):
        answer = world.api.allocate(POOL, f"t{minute}", "plan")
        if answer.status == 201:
            running.append((f"t{minute}", minute))
        for task, since in list(running):
            if minute - since >= 3:
                assert world.api.status(task, "success").status == 200
                running.remove((task, since))
        world.minute()
        if world.events("RolloutFinished"):
            break
    # Then the roll-out finished under load, within half an hour, and killed nothing
    assert world.events("RolloutFinished"), world.pods()
    assert world.deleted_busy == []
    assert world.events("TaskLost") == []


def test_a_cordoned_pod_takes_no_task_finishes_its_own_and_is_replaced(world: World):
    # Given a pod with a task on it
    task = world.api.allocate(POOL, "a", "plan").body
    pod = task["pod"]
    # When an operator cordons it
    cordoned = world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)
    # Then it says so, and says it again to a repeat, changing nothing more
    assert (cordoned.status, cordoned.body["cordoned"], cordoned.body["changed"]) == (200, "operator", True)
    again = world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)
    assert (again.status, again.body["changed"]) == (200, False)
    # And its agent hears it in the heartbeat's answer
    assert world.api.beat(POOL, pod, held=["a"]).body["cordoned"] == "operator"
    # And new tasks go elsewhere
    assert world.api.allocate(POOL, "b", "plan").body["pod"] != pod
    # And autoscale keeps it while its task runs, and keeps the pool at min_pods in service
    world.minute()
    assert pod in world.pods()
    in_service = [p for p in world.store.pods(POOL) if p.in_service]
    assert len(in_service) == 2
    # When its task ends, it is drained and deleted
    world.api.status("a", "success")
    world.minute()
    assert pod not in world.pods()
    assert world.kube.pod(NS, pod) is None
    kinds = [e.kind for e in world.store.events(POOL, 50)]
    assert "PodCordoned" in kinds


def test_an_operator_takes_a_cordon_back_while_the_pod_exists(world: World):
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)
    back = world.api.call("DELETE", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)
    assert (back.status, back.body["cordoned"], back.body["changed"]) == (200, None, True)
    assert world.api.call("DELETE", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod).body["changed"] is False
    # The pod takes tasks again (it is the fullest)
    assert world.api.allocate(POOL, "b", "plan").body["pod"] == pod


def test_the_cordon_answers_404_for_an_unknown_pod_and_409_for_a_cordon_it_did_not_set(world: World):
    unknown = world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=f"{POOL}-nope")
    assert (unknown.status, unknown.body["error"]) == (404, "not_found")
    no_pool = world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool="nope", pod=f"{POOL}-nope")
    assert no_pool.status == 404
    # A pool being deleted cordons its pods; only the deletion ends that cordon
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    assert world.api.call("DELETE", "/pools/{pool}", pool=POOL).status == 202
    refused = world.api.call("DELETE", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)
    assert (refused.status, refused.body["error"], refused.body["cordoned"]) == (409, "conflict", "pool deleted")
    bad = world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod="Not_A_Pod")
    assert bad.status == 400


def test_get_pool_shows_the_rollout_and_what_holds_the_old_pods(world: World):
    planned = world.api.allocate(POOL, "plan-1", "plan_and_apply").body
    world.api.status("plan-1", "apply_pending")
    world.put(image=NEW)
    for _ in range(4):
        world.minute()
    view = world.api.get_pool(POOL).body
    rollout = view["rollout"]
    assert (view["revision"], rollout["revision"], rollout["rolling"]) == (world.revision(), world.revision(), True)
    (holder,) = rollout["outdated"]
    assert (holder["pod"], holder["reserved"], holder["running"]) == (planned["pod"], 1, 0)
    assert sum(rollout["pods_by_revision"].values()) == len(live(world.store.pods(POOL)))
    assert view["figures"]["pods_outdated"] == 1


def test_a_new_namespace_is_refused_while_the_pool_has_pods(world: World, monkeypatch: pytest.MonkeyPatch):
    # (reconcile would look for the pods in the new namespace only: the old ones would look vanished)
    monkeypatch.setenv("PODSLOTS_AGENT_NAMESPACES", f"{NS},elsewhere")  # an allowed namespace, still refused
    moved = world.api.put_pool(POOL, settings(namespace="elsewhere"))
    assert (moved.status, moved.body["error"]) == (409, "conflict")
    assert "namespace" in moved.body["message"]
    assert world.api.get_pool(POOL).body["settings"]["namespace"] == NS


def test_a_beat_keeps_an_outdated_pod_a_second_choice(world: World):
    # Given an outdated pod that autoscale ranked second
    world.put(image=NEW)
    world.minute()
    outdated = [p for p in world.store.pods(POOL) if p.outdated(world.revision())]
    assert outdated
    assert all(p.second_choice for p in outdated)
    # When its agent beats
    for pod in outdated:
        assert world.api.beat(POOL, pod.name).status == 200
    # Then it is still a second choice: only the current partition's pods come first
    assert all(world.store.get_pod(POOL, p.name).second_choice for p in outdated)  # type: ignore[union-attr]
    assert {p.name for p in world.store.open_slots(POOL, 10)}.isdisjoint(p.name for p in outdated)


def cordon(world: World, method: str, pod: str) -> Any:
    return world.api.call(method, "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod)


def test_an_uncordon_in_a_pool_being_deleted_is_refused_and_no_task_lands_there(world: World):
    # Given a pod an operator cordoned, busy with a task, and the pool then deleted
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    assert cordon(world, "POST", pod).status == 200
    assert world.api.call("DELETE", "/pools/{pool}", pool=POOL).status == 202
    # When the operator takes the cordon back
    refused = cordon(world, "DELETE", pod)
    # Then it is refused, naming the deletion, and the pod stays closed
    assert refused.status == 409
    assert refused.body["error"] == "conflict"
    assert "being deleted" in refused.body["message"]
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert item.cordoned is not None
    assert not item.takes_tasks
    # And the next allocation does not land in the deleting pool
    assert world.api.allocate(POOL, "b", "plan").status != 201
    assert world.api.task("b").body.get("pod") is None
    assert {s.task_id for p in world.store.pods(POOL) for s in p.slots.values() if s.task_id} == {"a"}
    # And the answer listed the reasons that hold it
    assert "operator" in refused.body["cordon_reasons"]


def test_an_outdated_pod_an_operator_cordoned_is_retired_and_its_uncordon_sends_no_task_to_it(world: World):
    # Given a busy pod an operator cordoned before a template change
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    assert cordon(world, "POST", pod).status == 200
    world.put(image=NEW)
    # When the pool rolls until current pods are ready and the other old pod is gone
    for _ in range(4):
        world.minute()
    current = [n for n, r in world.pods().items() if r == world.revision()]
    assert current
    assert pod in world.pods()
    # And the operator takes the cordon back
    back = cordon(world, "DELETE", pod)
    # Then it is refused (the roll-out retired it too), and a new task goes to a current pod
    assert back.status == 409
    placed = world.api.allocate(POOL, "b", "plan")
    assert placed.status == 201
    assert placed.body["pod"] in current
    # And the pod holds both reasons, the roll-out's shown first
    assert back.body["cordon_reasons"] == ["outdated revision", "operator"]
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert item.cordon_reasons == {Cordon.OPERATOR, Cordon.OUTDATED}
    view = {p["pod"]: p for p in world.api.get_pool(POOL).body["pods"]}
    assert (view[pod]["cordoned"], view[pod]["cordon_reasons"]) == (
        "outdated revision",
        ["outdated revision", "operator"],
    )
    # And the old pod still goes once its task ends, killing nothing
    assert world.api.status("a", "success").status == 200
    world.minute()
    assert pod not in world.pods()
    assert world.deleted_busy == []


def test_an_uncordon_before_the_rollout_reached_the_pod_reopens_it_only_as_a_second_choice(world: World):
    # Given a busy pod an operator cordoned, and a template change autoscale has not acted on yet
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    cordon(world, "POST", pod)
    world.put(image=NEW)
    # When the operator takes the cordon back
    back = cordon(world, "DELETE", pod)
    # Then it is back in service, but behind any current pod: a second choice
    assert back.status == 200
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert item.takes_tasks
    assert item.second_choice
    assert pod not in {p.name for p in world.store.open_slots(POOL, 10)}
    assert (back.body["cordoned"], back.body["cordon_reasons"]) == (None, [])
