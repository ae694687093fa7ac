"""A pool goes only when the cluster shows nothing of it, and a pod item is only ever written into a
pool that still takes pods: through the real handlers (pools, allocate, heartbeat on moto; reconcile
and autoscale on moto and the Kubernetes API stand-in).

Where a failure needs another invocation between two steps of the one under test, the handler's
own store runs it right after the read it acts on, as a concurrent Lambda would slip in.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from kubernetes.config import new_client_from_config_dict

from local.apigw import load_event
from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.autoscale import Autoscaler
from podslots.bus import EventBridgePublisher, RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.model import POOL_DELETED
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL
from podslots.pools import PoolService
from podslots.store import Rollout, SlotStore
from podslots.store.keys import LEASE_SK, pool_pk
from tests.conftest import TABLE, BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.least_privilege import as_another_process
from tests.support.pods import AGENT_IMAGE, given_pool

NS, OTHER_NS, POOL = "agents", "agents-b", "dm"
SECRET = "podslots/dev/kubeconfig"  # under the environment's prefix, as the template requires


def settings(**more: Any) -> dict[str, Any]:
    return {"pod_template": {"image": AGENT_IMAGE}, "scale_down_delay_s": 0, **more}


class World:
    """The API handlers, the reconcile and autoscale handlers on the stand-in, and the raw table."""

    def __init__(self, api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> None:
        self.api, self.store, self.kube, self.clock = api, store, kube, clock
        self.handlers: dict[str, ModuleType] = {}

    def run(self, step: str) -> dict[str, Any]:
        """Invoke a scheduled handler as its schedule does; this pool's report."""
        result = self.handlers[step].lambda_handler(load_event(f"{step}_schedule.json"), LambdaContext())
        return next((p for p in result["pools"] if p["pool"] == POOL), {})

    def step_store(self, step: str) -> SlotStore:
        store: SlotStore = getattr(self.handlers[step], "reconciler" if step == "reconcile" else "autoscaler").store
        return store

    def right_after(self, store: SlotStore, read: str, interloper: Callable[[], object]) -> None:
        """The next `read` of this store is followed at once by another invocation."""
        original = getattr(store, read)

        def read_then_interlope(*args: Any, **kwargs: Any) -> Any:
            answer = original(*args, **kwargs)
            setattr(store, read, original)
            as_another_process(interloper)
            return answer

        setattr(store, read, read_then_interlope)

    def labelled_pod(self, name: str, namespace: str = NS, *, managed: bool = True, **labels: str) -> str:
        """A running pod labelled as the pool's, with no item (a create whose answer was lost)."""
        own = {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY} if managed else {}
        self.kube.add_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": {**own, **labels}},
                "spec": {"containers": [{"name": "agent", "image": "x"}]},
            },
        )
        self.kube.set_phase(namespace, name, "Running")
        return name

    def cluster(self, namespace: str = NS) -> set[str]:
        return {p["metadata"]["name"] for p in self.kube.pods(namespace)}

    def delete(self) -> dict[str, Any]:
        answer = self.api.call("DELETE", "/pools/{pool}", pool=POOL)
        assert answer.status == 202, answer.body
        body: dict[str, Any] = answer.body
        return body

    def partition(self) -> list[str]:
        """Every item of the pool's partition, by sort key, as the table holds them."""
        items = boto3.client("dynamodb").query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pool_pk(POOL)}},
            ConsistentRead=True,
        )["Items"]
        return sorted(i["sk"]["S"] for i in items)


@pytest.fixture
def world(
    api: Api, store: SlotStore, bus: BusTap, kube: KubeApiStandIn, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> World:
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(kube.kubeconfig(NS)))
    monkeypatch.setenv("KUBECONFIG_SECRET", SECRET)
    monkeypatch.setenv("KUBE_READ_TIMEOUT_S", "1")
    monkeypatch.setenv("PODSLOTS_AGENT_NAMESPACES", f"{NS},{OTHER_NS}")  # the deployment's AgentNamespaces
    parameters.clear_caches()
    from podslots.kubeconfig import ClusterConnections

    w = World(api, store, kube, clock)
    for step, attr in (("reconcile", "reconciler"), ("autoscale", "autoscaler")):
        handler = importlib.import_module(f"functions.{step}.app")
        # A fresh provider: Powertools' cache would otherwise keep the last test's secret
        provider = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
        monkeypatch.setattr(handler, "connections", ClusterConnections(provider=provider))
        monkeypatch.setattr(getattr(handler, attr), "clock", clock)
        monkeypatch.setattr(getattr(handler, attr), "bus", EventBridgePublisher())
        monkeypatch.setattr(getattr(handler, attr), "store", SlotStore())  # its own, to step into
        w.handlers[step] = handler
    assert api.put_pool(POOL, settings()).status == 201
    return w


# ---- failure 6: a DELETE between reconcile's read of the pools and its LIST


def test_a_pool_deleted_while_reconcile_looks_adopts_nothing_and_takes_no_task(world: World):
    # Given a pool with no pod item, and a labelled pod of it in the cluster
    stray = world.labelled_pod(f"{POOL}-stray")
    # and a DELETE of the pool right after reconcile has read the pool list (the pool not deleting)
    world.right_after(world.step_store("reconcile"), "pool_records", world.delete)

    # When reconcile goes on with the LIST and what it read
    report = world.run("reconcile")

    # Then it adopts nothing: the pod item's put is refused, the pool is deleting
    assert "adopted" not in report
    assert world.store.get_pod(POOL, stray) is None
    # and the pod's agent is told to go, and no task lands in the pool
    assert world.api.beat(POOL, stray).status == 410
    refused = world.api.allocate(POOL, "t1")
    assert refused.status == 409, refused.body
    # and the pool shows as deleting, not gone
    shown = world.api.get_pool(POOL)
    assert (shown.status, shown.body["deleting"]) == (200, True)
    # When autoscale runs, Then the stray is deleted and the pool goes; nothing answers for it
    world.run("autoscale")
    assert world.cluster() == set()
    assert world.api.get_pool(POOL).status == 404
    assert world.api.allocate(POOL, "t2").status == 404


def test_reconcile_adopts_nothing_into_a_deleting_pool_and_leaves_its_strays_to_autoscale(world: World):
    # Given a deleted pool with a labelled pod of it that has no item
    world.delete()
    stray = world.labelled_pod(f"{POOL}-late")
    # When reconcile runs, Then it neither adopts it nor reports a failure
    report = world.run("reconcile")
    assert "adopted" not in report
    assert "errors" not in report
    assert world.store.get_pod(POOL, stray) is None


# ---- failure 8: a DELETE with only a stray pod


def test_a_deleted_pool_with_only_a_stray_pod_deletes_the_pod_before_it_goes(world: World):
    # Given a pool with no pod item, and a labelled pod of it the table never knew
    stray = world.labelled_pod(f"{POOL}-lost-answer")
    # When the pool is deleted
    answer = world.delete()
    # Then it answers as ever (202, nothing to drain) but is not gone yet: the cluster has not been seen
    assert (answer["status"], answer["pods_remaining"]) == ("deleting", 0)
    assert world.api.get_pool(POOL).body["deleting"] is True
    # When autoscale runs, Then the stray is deleted, and the pool goes with it
    report = world.run("autoscale")
    assert stray not in world.cluster()
    assert world.api.get_pool(POOL).status == 404
    assert "errors" not in report
    # and no later run finds anything of it
    world.clock.advance(60)
    world.run("reconcile")
    world.run("autoscale")
    assert world.cluster() == set()


def test_a_deleted_pool_never_deletes_a_pod_podslots_did_not_make_and_still_goes(world: World):
    # Given a pool adopting pods labelled app=legacy, and such a pod that has no item
    assert world.api.put_pool(POOL, settings(adopt_selector={"app": "legacy"})).status == 200
    legacy = world.labelled_pod("legacy-0", managed=False, app="legacy")
    # When the pool is deleted and autoscale runs
    world.delete()
    world.run("autoscale")
    # Then the pod is left running, and the pool is gone (it was never the pool's pod)
    assert world.cluster() == {legacy}
    assert world.api.get_pool(POOL).status == 404


def test_a_pool_waits_for_its_busy_pod_then_goes_once_the_cluster_shows_nothing_of_it(world: World):
    # Given a pool whose one pod runs a task
    assert world.api.put_pool(POOL, settings(min_pods=1)).status == 200
    world.run("autoscale")
    (pod,) = world.cluster()
    assert world.api.beat(POOL, pod).status == 200
    assert world.api.allocate(POOL, "busy").status == 201
    # When the pool is deleted and the scheduled steps run
    assert world.delete()["pods_remaining"] == 1
    world.run("reconcile")
    world.run("autoscale")
    # Then the busy pod is kept, cordoned, and the pool is still there
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert item.cordoned == POOL_DELETED
    assert world.cluster() == {pod}
    assert world.api.get_pool(POOL).status == 200
    # When its task ends, Then the next run deletes it and the pool goes
    assert world.api.status("busy", "success").status == 200
    world.run("autoscale")
    assert world.cluster() == set()
    assert world.api.get_pool(POOL).status == 404


# ---- failure 9: a namespace change racing a scale-up


def test_a_namespace_change_after_autoscale_read_the_settings_leaves_no_pod_behind(world: World):
    # Given a pool that needs a pod (min_pods 1) and has none yet
    assert world.api.put_pool(POOL, settings(min_pods=1)).status == 200
    # and a PUT moving it to another namespace right after autoscale has read the settings
    moved = []
    world.right_after(
        world.step_store("autoscale"),
        "pool_records",
        lambda: moved.append(world.api.put_pool(POOL, settings(min_pods=1, namespace=OTHER_NS)).status),
    )

    # When autoscale scales up on the settings it read
    report = world.run("autoscale")

    # Then the change was accepted (no pod item then), and the scale-up was refused: no pod in the
    # old namespace, no item, the step reported
    assert moved == [200]
    assert world.cluster(NS) == set()
    assert world.store.pods(POOL) == []
    assert report["errors"]
    # and the next run creates the pod where the settings now say, and reconcile finds it there
    world.run("autoscale")
    (pod,) = world.cluster(OTHER_NS)
    assert [p.name for p in world.store.pods(POOL)] == [pod]
    world.clock.advance(60)
    assert "removed_pods" not in world.run("reconcile")
    assert world.store.get_pod(POOL, pod) is not None


def test_a_namespace_change_that_meets_a_scale_up_between_its_look_and_its_write_is_refused(world: World):
    # Given a pool that needs a pod and has none yet
    assert world.api.put_pool(POOL, settings(min_pods=1)).status == 200
    # and a scale-up that puts its pod item right after the PUT has looked for pod items
    pools_store = importlib.import_module("functions.pools.app").service.store
    world.right_after(pools_store, "pods", lambda: world.run("autoscale"))

    # When the PUT moving the pool to another namespace goes on
    answer = world.api.put_pool(POOL, settings(min_pods=1, namespace=OTHER_NS))

    # Then it is refused, naming the pod, and the pool and its pod stay where they are
    assert answer.status == 409, answer.body
    assert "namespace cannot change" in answer.body["message"]
    assert world.api.get_pool(POOL).body["settings"]["namespace"] == NS
    (pod,) = world.cluster(NS)
    world.clock.advance(60)
    assert "removed_pods" not in world.run("reconcile")
    assert world.store.get_pod(POOL, pod) is not None


def test_a_namespace_change_with_no_pod_and_no_create_is_accepted(world: World):
    answer = world.api.put_pool(POOL, settings(namespace=OTHER_NS))
    assert answer.status == 200, answer.body
    assert world.api.get_pool(POOL).body["settings"]["namespace"] == OTHER_NS


# ---- failure 12: the lease and every other item of a pool go with it


def test_a_deleted_pool_takes_its_lease_and_history_with_it(world: World):
    # Given a pool whose lease carries a scale-down clock and a roll-out, and that has a history
    lease = world.store.acquire_lease(POOL, "an-earlier-run", int(world.clock.now()), 120)
    assert lease is not None
    world.store.release_lease(lease, 5, Rollout("0123456789", 7, 2), "noted")
    world.store.add_event(POOL, "PoolScaled", {"pool": POOL}, int(world.clock.now()), "e1")
    # When the pool is deleted and autoscale finishes the deletion
    world.delete()
    world.run("autoscale")
    # Then nothing of the pool is left in its partition
    assert world.partition() == []
    # and a new pool of the same name starts clean: no scale-down clock, no roll-out, no history
    assert world.api.put_pool(POOL, settings()).status == 201
    fresh = world.store.acquire_lease(POOL, "a-new-run", int(world.clock.now()), 120)
    assert fresh is not None
    assert (fresh.low_since, fresh.rollout, fresh.noted) == (None, None, None)
    assert world.api.call("GET", "/pools/{pool}/events", pool=POOL).body["events"] == []


def test_a_new_pool_of_a_name_starts_clean_of_what_an_older_removal_left_behind(world: World):
    # Given a pool removed by an older version, which left its lease and history behind
    world.delete()
    world.run("autoscale")
    table = boto3.client("dynamodb")
    lease = {"holder": {"S": "old"}, "deadline": {"N": "0"}, "low_since": {"N": "5"}}
    table.put_item(TableName=TABLE, Item={"pk": {"S": pool_pk(POOL)}, "sk": {"S": LEASE_SK}, **lease})
    world.store.add_event(POOL, "PoolScaled", {"pool": POOL}, int(world.clock.now()), "old")
    # When a pool of the same name is created
    assert world.api.put_pool(POOL, settings()).status == 201
    # Then it has no scale-down clock and no history from before
    fresh = world.store.acquire_lease(POOL, "a-new-run", int(world.clock.now()), 120)
    assert fresh is not None
    assert fresh.low_since is None
    assert world.api.call("GET", "/pools/{pool}/events", pool=POOL).body["events"] == []


def test_an_autoscale_run_that_read_the_pool_before_it_went_writes_no_lease_again(world: World):
    # Given an autoscale run that read the pool list, and the pool removed right after
    world.delete()
    world.right_after(world.step_store("autoscale"), "pool_records", lambda: world.run("autoscale"))
    # When that run goes on, Then it leaves nothing of the pool behind
    world.run("autoscale")
    assert world.partition() == []
    assert world.api.get_pool(POOL).status == 404


# ---- a removal that fails part-way is finished by the next run (moto's server, the fault injector)


@pytest.mark.parametrize("operation", ["BatchWriteItem", "TransactWriteItems"])
def test_a_pool_removal_that_fails_part_way_is_finished_by_the_next_run(
    server: MotoServer, kube: KubeApiStandIn, clock: ManualClock, operation: str
):
    # Given a deleted pool with an idle pod, a lease and a history
    store = SlotStore()
    given_pool(store, POOL, now=int(clock.now()), min_pods=1, scale_down_delay_s=0)
    gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
    autoscaler = Autoscaler(store, lambda _pool: gateway, RecordingPublisher(), clock, "https://api.example/v1")
    autoscaler.run(POOL)
    PoolService(store, clock).delete(POOL)
    # and a table that throttles the removal's sweep (or its last transaction) past every retry,
    # from the moment the run has its lease and has read the pods
    read = store.pods

    def read_then_throttle(pool: str) -> Any:
        store.pods = read  # type: ignore[method-assign]
        server.dispatcher.faults.next(operation, Fault.THROTTLE, times=20)
        return read(pool)

    store.pods = read_then_throttle  # type: ignore[method-assign]
    # When autoscale drains the pool and fails part-way through its removal
    (failed,) = autoscaler.run(POOL)
    # Then the pool is still there, deleting, so the next run finds it
    assert failed.errors
    assert kube.pods(NS) == []
    state = store.pool_state(POOL)
    assert state is not None
    assert state.deleting
    # When the table answers again, Then the next run removes every item of the pool
    server.dispatcher.faults.clear()
    autoscaler.run(POOL)
    assert store.pool_state(POOL) is None
    assert store.list_pools() == []
    assert store.events(POOL, 10) == []
    assert store.acquire_lease(POOL, "later", int(clock.now()), 120) is None
