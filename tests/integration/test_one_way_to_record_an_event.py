"""One way to record an event (issue 21): the history first, then the bus, best effort. A bus that
fails (here, EventBridge on moto asked for a bus that does not exist) costs the step nothing: the
history holds the event, the step's work is done and reported, and the failure is logged once, by
its type only (never the server's words)."""

from __future__ import annotations

import json

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from podslots.autoscale import Autoscaler
from podslots.bus import EventBridgePublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.model import new_pod
from podslots.reconcile import Reconciler
from podslots.store import SlotStore
from tests.support.pods import given_pool

NS, POOL = "agents", "terraform"


def failures(caplog: pytest.LogCaptureFixture, message: str) -> list[dict]:
    """The log records of `message`, each as the fields it carries."""
    return [dict(r.__dict__) for r in caplog.records if r.getMessage() == message]


def test_a_step_up_whose_publish_fails_is_still_recorded_and_logged_once_by_type(
    store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, caplog: pytest.LogCaptureFixture
):
    # Given a pool that wants two pods, and a bus that refuses every event
    given_pool(store, POOL, now=int(clock.now()), min_pods=2, max_pods=4, headroom_pods=0)
    gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
    bus = EventBridgePublisher("no-such-bus")
    # When autoscale runs
    (report,) = Autoscaler(store, lambda _: gateway, bus, clock, "https://api.example/v1").run(POOL)
    # Then the pods are created and the step's event is in the history, naming them
    assert len(report.created) == 2
    (scaled,) = [e for e in store.events(POOL, 10) if e.kind == "PoolScaled"]
    assert sorted(scaled.detail["pods_created"]) == sorted(report.created)
    # And the failed publish is logged once, by type, without the bus's own words
    (failed,) = failures(caplog, "PoolScaled not published")
    assert failed["error_type"].endswith("ResourceNotFoundException")
    assert "no-such-bus" not in json.dumps(failed, default=str)


def test_a_lost_task_whose_publish_fails_is_still_lost_in_the_history(
    store: SlotStore, kube: KubeApiStandIn, clock: ManualClock, caplog: pytest.LogCaptureFixture
):
    # Given a pod holding a task that has vanished from the cluster, and a bus that refuses
    given_pool(store, POOL, now=int(clock.now()))
    now = int(clock.now())
    store.put_pod(new_pod(POOL, "gone-1", 2, now, uid="u-1"))
    store.heartbeat(POOL, "gone-1", [], "10.0.0.1", now)
    from podslots.allocation import AllocationRequest, Allocator
    from podslots.bus import RecordingPublisher
    from podslots.model import TaskType

    Allocator(store, RecordingPublisher(), clock).allocate(AllocationRequest(POOL, "t1", TaskType.PLAN))
    gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
    # When reconcile runs
    (report,) = Reconciler(store, lambda _: gateway, EventBridgePublisher("no-such-bus"), clock).run(POOL)
    # Then the task is lost and the pod gone, as the history says, whatever the bus did
    assert (report.lost_tasks, report.removed_pods) == (["t1"], ["gone-1"])
    assert [e.kind for e in store.events(POOL, 10) if e.kind == "TaskLost"]
    (failed,) = failures(caplog, "TaskLost not published")
    assert failed["error_type"].endswith("ResourceNotFoundException")
    assert "no-such-bus" not in json.dumps(failed, default=str)


def test_a_step_records_its_events_on_the_bus_it_holds_now_not_the_one_it_was_made_with(
    store: SlotStore, kube: KubeApiStandIn, clock: ManualClock
):
    # Given an autoscaler made with one bus, whose bus is then swapped (as the local stack, the
    # tests and the simulation do with the handlers' steps)
    from podslots.bus import RecordingPublisher

    given_pool(store, POOL, now=int(clock.now()), min_pods=1, max_pods=2, headroom_pods=0)
    gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
    first, swapped = RecordingPublisher(), RecordingPublisher()
    autoscaler = Autoscaler(store, lambda _: gateway, first, clock, "https://api.example/v1")
    autoscaler.bus = swapped
    # When it scales the pool up
    (report,) = autoscaler.run(POOL)
    # Then its PoolScaled went to the bus it holds now, and none to the one it was made with
    assert len(report.created) == 1
    assert [kind for kind, _ in swapped.events] == ["PoolScaled"]
    assert first.events == []
