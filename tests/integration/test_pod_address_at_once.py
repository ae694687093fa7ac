"""The pod's address at once: a pod's first beat puts `PodRegistered` on the bus, the template's rule
sends it to the dispatcher, and reconcile runs for that pool (its own message on reconcile's queue),
recording the cluster's IP for the pod within the beat's chain of events, not at the next minute.

Through the local stack: the real handlers, the template's rules and queues (moto), and the
Kubernetes API stand-in as the cluster. The clock never moves here, so no schedule runs meanwhile.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest

from local.apigw import load_event
from local.stack import NAMESPACE, Answer, Context, Stack, function_module
from podslots.clock import ManualClock

POOL = "fresh"
IP = "10.42.0.7"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack(ManualClock(1_800_000_000)) as running:
        yield running


def beat(stack: Stack, pod: str, held: list[str] | None = None) -> Answer:
    body: dict[str, Any] = {"held_tasks": held or []}
    return stack.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", body, pool=POOL, pod=pod)


def started_pod(stack: Stack) -> str:
    """A cold pool's first pod, as autoscale creates it (a refused allocation wakes it), whose
    containers the kubelet has started: Running, with the IP it gave the pod."""
    settings = {"pod_template": {"image": "tf-agent:1.9"}, "headroom_pods": 0}
    assert stack.call("PUT", "/pools/{pool}", settings, pool=POOL).status == 201
    waker = {"task_id": "waker", "task_type": "plan"}
    assert stack.call("POST", "/pools/{pool}/allocations", waker, pool=POOL).status == 503
    assert stack.call("PUT", "/tasks/{task_id}/status", {"status": "cancelled"}, task_id="waker").status == 200
    (pod,) = [p["pod"] for p in stack.call("GET", "/pools/{pool}", pool=POOL).body["pods"]]
    stack.kube.set_phase(NAMESPACE, pod, "Running")
    return pod


def reconcile_runs(stack: Stack) -> int:
    return [f for _, f in stack.invocations].count("ReconcileFunction")


def test_a_pods_first_beat_has_reconcile_record_its_ip_at_once(stack: Stack) -> None:
    # Given a new pod that the cluster runs at an IP podslots has not recorded yet
    pod = started_pod(stack)
    stack.kube.set_pod_ip(NAMESPACE, pod, IP)
    assert stack.call("GET", "/pools/{pool}", pool=POOL).body["pods"][0]["pod_ip"] is None
    runs_before = reconcile_runs(stack)

    # When its agent's first beat registers it (and no minute passes)
    assert beat(stack, pod).status == 200

    # Then PodRegistered went on the bus, reconcile ran for the pool, and the IP is recorded:
    # the first allocation hands it to the queue, and GET /tasks/{id} answers it too
    assert [e["detail"] for e in stack.tap.events("PodRegistered")] == [{"pool": POOL, "pod": pod}]
    assert reconcile_runs(stack) == runs_before + 1
    assert stack.call("GET", "/pools/{pool}", pool=POOL).body["pods"][0]["pod_ip"] == IP
    placed = stack.call("POST", "/pools/{pool}/allocations", {"task_id": "run-1", "task_type": "plan"}, pool=POOL)
    assert (placed.status, placed.body["pod"], placed.body["pod_ip"]) == (201, pod, IP)
    assert stack.call("GET", "/tasks/{task_id}", task_id="run-1").body["pod_ip"] == IP


def test_only_the_registering_beat_announces_the_pod(stack: Stack) -> None:
    # Given a pod registered by its first beat
    pod = started_pod(stack)
    stack.kube.set_pod_ip(NAMESPACE, pod, IP)
    beat(stack, pod)
    runs = reconcile_runs(stack)

    # When it beats again, a second later and a minute later (its IP known now)
    stack.clock.advance(1)
    beat(stack, pod)

    # Then no further PodRegistered went out, and reconcile did not run for it again
    assert len(stack.tap.events("PodRegistered")) == 1
    assert reconcile_runs(stack) == runs


def test_a_task_placed_before_the_ip_was_recorded_reads_it_once_podslots_has_it(stack: Stack) -> None:
    # Given a pod that registered before the kubelet reported its IP (reconcile found none), and a
    # task placed on it then: the allocation's answer had no address to give
    pod = started_pod(stack)
    beat(stack, pod)
    placed = stack.call("POST", "/pools/{pool}/allocations", {"task_id": "run-2", "task_type": "plan"}, pool=POOL)
    assert (placed.status, placed.body["pod_ip"]) == (201, None)
    assert stack.call("GET", "/tasks/{task_id}", task_id="run-2").body["pod_ip"] is None

    # When the cluster reports the IP and reconcile records it
    stack.kube.set_pod_ip(NAMESPACE, pod, IP)
    stack.invoke("ReconcileFunction", {"pool": POOL})

    # Then GET /tasks/{id} answers the pod's IP (the task item, written before, had none)
    task = stack.call("GET", "/tasks/{task_id}", task_id="run-2").body
    assert (task["pod"], task["pod_ip"]) == (pod, IP)


def test_a_bus_that_refuses_the_event_does_not_fail_the_beat(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    # Given a new pod, and the stack's bus gone (EventBridge refuses every event put on it)
    pod = started_pod(stack)
    events = boto3.client("events")
    bus = os.environ["EVENT_BUS_NAME"]
    events.remove_targets(Rule="tap", EventBusName=bus, Ids=["q"])
    events.delete_rule(Name="tap", EventBusName=bus)
    events.delete_event_bus(Name=bus)
    runs = reconcile_runs(stack)

    # When the pod registers
    answer = beat(stack, pod)

    # Then the beat stands (the minute's reconcile records the IP), the failure is logged by its
    # type, and no reconcile ran for it
    assert (answer.status, answer.body["state"]) == (200, "ready")
    assert reconcile_runs(stack) == runs
    (record,) = [r for r in caplog.records if r.getMessage() == "PodRegistered not published"]
    assert record.__dict__["error_type"]


def test_the_dispatcher_sends_a_registration_to_reconcile_deduplicated_by_its_window(stack: Stack) -> None:
    # Given a pool, and reconcile's queue empty
    settings = {"pod_template": {"image": "tf-agent:1.9"}}
    assert stack.call("PUT", "/pools/{pool}", settings, pool="terraform").status == 201
    url = stack.queue_urls["ReconcileQueue"]
    stack.sqs.purge_queue(QueueUrl=url)
    dispatch = function_module("DispatchFunction").lambda_handler

    # When EventBridge delivers the same PodRegistered twice (its retry)
    event = load_event("pod_registered.json")
    answers = [dispatch(event, Context()), dispatch(event, Context())]

    # Then one message for the pool's reconcile, deduplicated by the 10 s window of the event's time
    window = f"registered-{int(datetime.fromisoformat(event['time']).timestamp()) // 10}"
    assert answers[0] == {"step": "reconcile", "trigger": window, "sent": 1}
    (message,) = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert message["Body"] == '{"pool": "terraform"}'
    assert message["Attributes"]["MessageDeduplicationId"] == f"reconcile:terraform:{window}"


def registered(pool: str, pod: str, at: str) -> dict[str, Any]:
    """A PodRegistered envelope of its own (a new id) for `pod`, put on the bus at `at`."""
    event: dict[str, Any] = load_event("pod_registered.json")
    return event | {"id": str(uuid.uuid4()), "time": at, "detail": {"pool": pool, "pod": pod}}


def test_a_burst_of_registrations_makes_one_reconcile_run_per_pool_and_window(stack: Stack) -> None:
    # Given two pools, and reconcile's queue empty
    settings = {"pod_template": {"image": "tf-agent:1.9"}}
    for pool in ("terraform", "other"):
        assert stack.call("PUT", "/pools/{pool}", settings, pool=pool).status == 201
    url = stack.queue_urls["ReconcileQueue"]
    stack.sqs.purge_queue(QueueUrl=url)
    dispatch = function_module("DispatchFunction").lambda_handler

    # When a step's five new pods register within one 10 s window, one more pod in the next window,
    # another pool's pod in the first, and the minute's schedule is dispatched too
    for i, second in enumerate(["00", "01", "03", "07", "09"]):
        dispatch(registered("terraform", f"terraform-{i}", f"2026-11-27T22:00:{second}Z"), Context())
    dispatch(registered("terraform", "terraform-5", "2026-11-27T22:00:10Z"), Context())
    dispatch(registered("other", "other-0", "2026-11-27T22:00:02Z"), Context())
    dispatch({"step": "reconcile"}, Context())

    # Then the pool's burst is one run, the next window another, the other pool has its own, and
    # neither is dropped as the schedule's duplicate (nor the schedule as theirs)
    dedup_ids = []
    while messages := stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
        "Messages", []
    ):
        for message in messages:
            dedup_ids.append(message["Attributes"]["MessageDeduplicationId"])
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    first = int(datetime.fromisoformat("2026-11-27T22:00:00+00:00").timestamp()) // 10
    minute = int(stack.clock.now() // 60)
    assert sorted(dedup_ids) == sorted(
        [
            f"reconcile:terraform:registered-{first}",
            f"reconcile:terraform:registered-{first + 1}",
            f"reconcile:other:registered-{first}",
            f"reconcile:terraform:minute-{minute}",
            f"reconcile:other:minute-{minute}",
        ]
    )
