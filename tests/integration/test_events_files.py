"""Every file in events/ invokes its function and gets the answer the README documents.

API events go through the template's routes; the schedule and rule events to the function whose
template event they are. The world is a pool `terraform` with one pod starting, whose agent's
first beat is the heartbeat file.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from local.apigw import EVENTS, load_event
from local.stack import queue_mappings, queue_name, rules, schedules
from podslots.clock import ManualClock
from podslots.model import new_pod
from podslots.store import SlotStore
from tests.conftest import BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.pods import given_pool

# file -> (status, what the body must hold), in the order a deploy would see them
API_FILES: list[tuple[str, int, dict[str, Any]]] = [
    ("pool_put.json", 200, {"pool": "terraform"}),
    ("pool_get.json", 200, {"pool": "terraform", "deleting": False}),
    ("pools_list.json", 200, {"pools": ["terraform"]}),
    ("heartbeat.json", 200, {"pod": "terraform-7f3k2", "state": "ready", "pod_ip": "10.0.12.34"}),
    ("allocate.json", 201, {"task_id": "run-42", "pod": "terraform-7f3k2", "slot": "s0", "status": "running"}),
    ("status_apply_pending.json", 200, {"status": "apply_pending"}),
    ("allocate_resume.json", 200, {"task_id": "run-42", "slot": "s0", "outcome": "resumed"}),
    ("status_running.json", 200, {"status": "running"}),  # already resumed by the approval
    ("status_success.json", 200, {"status": "success"}),
    ("task_get.json", 200, {"task_id": "run-42", "status": "success"}),
    ("pod_cordon.json", 200, {"pod": "terraform-7f3k2", "cordoned": "operator", "changed": True}),
    ("pod_uncordon.json", 200, {"pod": "terraform-7f3k2", "cordoned": None, "changed": True}),
    ("pool_events.json", 200, {"pool": "terraform"}),
    ("pool_delete.json", 202, {"pool": "terraform", "status": "deleting"}),
]


def test_every_events_file_is_covered_here():
    covered = {name for name, *_ in API_FILES} | {
        "reconcile_schedule.json",
        "autoscale_schedule.json",
        "expire_schedule.json",
        "capacity_shortage.json",
        "pod_registered.json",
        "dispatch_schedule.json",
        "reconcile_sqs.json",
        "autoscale_sqs.json",
        "expire_sqs.json",
    }
    assert {p.name for p in EVENTS.glob("*.json")} == covered


def test_every_api_event_file_gets_its_documented_answer(api: Api, store: SlotStore):
    given_pool(store, "terraform")
    pod = new_pod("terraform", "terraform-7f3k2", 3, 1, uid="uid-7f3k2")
    store.put_pod(pod)  # started, not yet beating
    store.observe_pod(pod, pod.uid, "10.0.12.34")  # the cluster reported its IP (a beat cannot)
    for name, status, holds in API_FILES:
        answer = api.invoke(load_event(name))
        assert answer.status == status, (name, answer.body)
        assert {k: answer.body[k] for k in holds} == holds, name


def test_the_schedule_files_are_direct_runs_of_every_pool_and_the_schedules_name_their_step():
    # the step functions' direct form (an operator's run, make invoke); the schedules fan out instead
    assert load_event("reconcile_schedule.json") == load_event("autoscale_schedule.json") == {}
    assert load_event("expire_schedule.json") == {}
    assert sorted(s.event["step"] for s in schedules() if s.function == "DispatchFunction") == [
        "autoscale",
        "expire",
        "reconcile",
    ]
    # each rule's file matches its pattern, and goes to the dispatcher
    files = {"CapacityShortage": "capacity_shortage.json", "PodRegistered": "pod_registered.json"}
    for function, pattern in rules():
        (kind,) = pattern["detail-type"]
        event = load_event(files[kind])
        assert function == "DispatchFunction"
        assert all(event[field] in allowed for field, allowed in pattern.items())


@pytest.mark.parametrize("module", ["functions.expire.app"])
def test_a_schedule_file_invokes_its_function(module: str, store: SlotStore, bus: BusTap, clock: ManualClock):
    given_pool(store, "terraform")
    handler = importlib.import_module(module)
    assert handler.lambda_handler(load_event("expire_schedule.json"), LambdaContext()) == {
        "pools": [{"pool": "terraform", "expired": []}]
    }


def test_the_sqs_files_are_batches_of_their_steps_queue_and_one_runs_its_pool(
    store: SlotStore, bus: BusTap, clock: ManualClock
):
    # Given each step's file: a batch of that step's queue, as its event source mapping delivers it
    for mapping in queue_mappings():
        step = mapping.function.removesuffix("Function").lower()
        (record,) = load_event(f"{step}_sqs.json")["Records"]
        assert record["eventSourceARN"].endswith(":" + queue_name(mapping.queue))
        assert json.loads(record["body"]) == {"pool": "terraform"}
    # When expire's is delivered to its handler, the pool existing
    given_pool(store, "terraform")
    handler = importlib.import_module("functions.expire.app")
    # Then the message's pool ran and nothing failed (SQS deletes the message)
    assert handler.lambda_handler(load_event("expire_sqs.json"), LambdaContext()) == {"batchItemFailures": []}
