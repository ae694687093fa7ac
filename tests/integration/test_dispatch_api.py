"""The dispatch scenarios of the life cycle through the real handlers, with the `events/` files, on moto."""

from __future__ import annotations

import pytest

from podslots.clock import ManualClock
from podslots.store import SlotStore
from tests.conftest import BusTap
from tests.integration.conftest import Api
from tests.support.pods import given_pool, given_ready_pods

POOL = "terraform"  # the pool the events/ files name


@pytest.fixture
def pool(store: SlotStore) -> str:
    given_pool(store, POOL)
    return POOL


def test_three_plan_tasks_on_an_empty_three_slot_pool_land_on_one_pod(api: Api, store: SlotStore, pool: str):
    # Given two ready pods of three slots, both empty
    given_ready_pods(store, pool, count=2)
    # When three plan tasks are dispatched
    answers = [api.allocate(pool, f"plan-{i}", "plan") for i in range(3)]
    # Then all three land on one pod's three slots, and the other pod stays idle for scale-down
    assert [a.status for a in answers] == [201, 201, 201]
    assert len({a.body["pod"] for a in answers}) == 1
    assert sorted(a.body["slot"] for a in answers) == ["s0", "s1", "s2"]
    busy = {p.name: p.busy for p in store.pods(pool)}
    assert sorted(busy.values()) == [0, 3]


def test_allocation_answers_the_contracts_body(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    answer = api.invoke(api.event("allocate.json"))
    assert answer.status == 201
    assert answer.body == {
        "task_id": "run-42",
        "pool": pool,
        "pod": "terraform-0000",
        "slot": "s0",
        "pod_ip": "10.0.0.1",
        "status": "running",
        "outcome": "placed",
        "placed_anew": False,
        "previous": None,
    }


def test_apply_pending_reserves_the_slot_with_a_deadline(api: Api, store: SlotStore, pool: str, clock: ManualClock):
    # Given a plan_and_apply task running
    given_ready_pods(store, pool)
    assert api.invoke(api.event("allocate.json")).status == 201
    # When its plan is done and waits for approval
    answer = api.invoke(api.event("status_apply_pending.json"))
    # Then its slot is reserved until now + the pool's reservation_ttl_s (24 h by default)
    assert answer.status == 200
    assert answer.body["status"] == "apply_pending"
    assert answer.body["reserved_until"] == int(clock.now()) + 86400
    (pod,) = store.pods(pool)
    assert pod.slots["s0"].status.value == "reserved"
    assert pod.slots["s0"].reserved_until == int(clock.now()) + 86400
    assert pod.busy == 1


def test_the_apply_resumes_on_the_pod_and_slot_that_ran_the_plan(api: Api, store: SlotStore, pool: str):
    # Given a plan_and_apply waiting for approval on one of two pods
    given_ready_pods(store, pool, count=2)
    first = api.invoke(api.event("allocate.json"))
    api.invoke(api.event("status_apply_pending.json"))
    # When the approval comes and the queue dispatches the same task again
    again = api.invoke(api.event("allocate.json"))
    # Then it gets the same pod and slot (200, not a new allocation) and the slot runs again
    assert again.status == 200
    assert (again.body["pod"], again.body["slot"]) == (first.body["pod"], first.body["slot"])
    assert api.invoke(api.event("task_get.json")).body["status"] == "running"
    pod = next(p for p in store.pods(pool) if p.name == first.body["pod"])
    assert pod.slots[first.body["slot"]].status.value == "running"


def test_approval_through_the_status_call_resumes_the_reserved_slot(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.invoke(api.event("allocate.json"))
    api.invoke(api.event("status_apply_pending.json"))
    answer = api.invoke(api.event("status_running.json"))
    assert (answer.status, answer.body["status"], answer.body["changed"]) == (200, "running", True)
    assert store.pods(pool)[0].slots["s0"].status.value == "running"


@pytest.mark.parametrize("end", ["success", "applied", "failed", "cancelled"])
def test_every_end_status_releases_the_slot(api: Api, store: SlotStore, pool: str, end: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1", "plan_and_apply")
    api.status("t-1", "apply_pending")
    answer = api.status("t-1", end)
    assert (answer.status, answer.body["status"]) == (200, end)
    (pod,) = store.pods(pool)
    assert pod.busy == 0
    assert all(s.is_idle for s in pod.slots.values())


def test_repeating_any_call_changes_nothing(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool, count=2)
    calls = [
        lambda: api.invoke(api.event("allocate.json")),
        lambda: api.invoke(api.event("status_apply_pending.json")),
        lambda: api.invoke(api.event("status_running.json")),
        lambda: api.invoke(api.event("status_success.json")),
        lambda: api.invoke(api.event("heartbeat.json", pod="terraform-0000")),
    ]
    for call in calls:
        first = call()
        pods_after_first = store.pods(pool)
        task_after_first = store.get_task("run-42")
        second = call()
        # The same answer (bar `changed`, and the allocation's 201 `placed` that becomes 200 `repeated`) ...
        assert second.status in (first.status, 200)
        strip = {"changed", "outcome"}
        assert {k: v for k, v in second.body.items() if k not in strip} == {
            k: v for k, v in first.body.items() if k not in strip
        }
        # ... and nothing more changed.
        assert store.pods(pool) == pods_after_first
        assert store.get_task("run-42") == task_after_first


def test_a_repeated_end_status_is_200_and_unchanged(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1")
    assert api.status("t-1", "success").body["changed"] is True
    again = api.status("t-1", "success")
    assert (again.status, again.body["changed"]) == (200, False)


def test_leaving_an_end_status_is_a_conflict(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1")
    api.status("t-1", "failed")
    answer = api.status("t-1", "running")
    assert answer.status == 409
    assert "already ended" in answer.body["message"]


def test_an_ended_task_cannot_be_allocated_again(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1")
    api.status("t-1", "success")
    answer = api.allocate(pool, "t-1")
    assert answer.status == 409
    assert answer.body["status"] == "success"


def test_a_task_holding_a_slot_in_another_pool_is_a_conflict(api: Api, store: SlotStore, pool: str):
    given_pool(store, "other")
    given_ready_pods(store, pool)
    given_ready_pods(store, "other")
    api.allocate(pool, "t-1")
    answer = api.allocate("other", "t-1")
    assert answer.status == 409
    assert "pool terraform" in answer.body["message"]


def test_a_task_asking_with_another_type_is_a_conflict(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1", "plan")
    answer = api.allocate(pool, "t-1", "apply")
    assert answer.status == 409
    assert "dispatched as plan" in answer.body["message"]


def test_apply_pending_is_only_for_plan_and_apply(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    api.allocate(pool, "t-1", "plan")
    answer = api.status("t-1", "apply_pending")
    assert answer.status == 409
    assert store.pods(pool)[0].slots["s0"].status.value == "running"


def test_a_lost_task_may_be_dispatched_again_as_a_new_allocation(api: Api, store: SlotStore, pool: str):
    # Given a task whose pod vanished (what reconcile records: the task lost, its pod item gone)
    given_ready_pods(store, pool, count=2)
    first = api.allocate(pool, "t-1")
    task = store.get_task("t-1")
    assert task is not None
    store.close_without_slot(task, __import__("podslots.model").model.TaskStatus.LOST, task.updated_at)
    # When the queue dispatches it again
    again = api.allocate(pool, "t-1")
    # Then it is a new allocation
    assert again.status == 201
    assert store.get_task("t-1").status.value == "running"  # type: ignore[union-attr]
    assert first.body["task_id"] == again.body["task_id"]


def test_no_capacity_is_503_with_retry_after_and_one_shortage_event_a_minute(
    api: Api, store: SlotStore, pool: str, bus: BusTap, clock: ManualClock
):
    # Given a pool with no pods at all
    # When a task is dispatched three times within a minute, and once more after it
    answers = [api.allocate(pool, "t-1")]
    clock.advance(20)
    answers.append(api.allocate(pool, "t-1"))
    clock.advance(20)
    answers.append(api.allocate(pool, "t-1"))
    clock.advance(30)
    answers.append(api.allocate(pool, "t-1"))
    # Then each is a 503 with Retry-After, and the bus heard of the shortage twice, not four times
    for a in answers:
        assert a.status == 503
        assert a.body["error"] == "no_capacity"
        assert int(a.headers["Retry-After"]) == a.body["retry_after_s"] > 0
    shortages = bus.events("CapacityShortage")
    assert [e["detail"]["task_id"] for e in shortages] == ["t-1", "t-1"]
    assert shortages[0]["detail"]["pool"] == pool
    # And the task is recorded as waiting, for autoscale
    task = api.task("t-1")
    assert (task.status, task.body["status"], task.body["pod"]) == (200, "pending", None)


def test_a_waiting_task_gets_a_slot_once_a_pod_is_ready(api: Api, store: SlotStore, pool: str, clock: ManualClock):
    assert api.allocate(pool, "t-1").status == 503
    clock.advance(45)
    given_ready_pods(store, pool)
    answer = api.allocate(pool, "t-1")
    assert answer.status == 201
    assert api.task("t-1").body["status"] == "running"


def test_a_waiting_task_can_be_cancelled(api: Api, pool: str):
    assert api.allocate(pool, "t-1").status == 503
    answer = api.status("t-1", "cancelled")
    assert (answer.status, answer.body["status"]) == (200, "cancelled")


def test_a_deleting_pool_takes_no_new_tasks(api: Api, store: SlotStore, pool: str):
    given_ready_pods(store, pool)
    assert api.call("DELETE", "/pools/{pool}", pool=pool).status == 202
    answer = api.allocate(pool, "t-1")
    assert answer.status == 409
    assert "being deleted" in answer.body["message"]


def test_an_unknown_pool_is_404_and_nothing_is_written(api: Api, store: SlotStore):
    answer = api.allocate("nowhere", "t-1")
    assert answer.status == 404
    assert answer.body["error"] == "not_found"
    assert store.get_task("t-1") is None


def test_an_unknown_task_is_404(api: Api):
    assert api.task("never-seen").status == 404
    assert api.status("never-seen", "success").status == 404


def test_a_base64_body_is_decoded_like_api_gateway_sends_it(api: Api, store: SlotStore, pool: str):
    import base64

    from local.apigw import proxy_event

    # Given a ready pod
    given_ready_pods(store, pool)
    # When an allocation arrives base64-encoded, as API Gateway sends a binary body
    event = proxy_event("POST", "/pools/{pool}/allocations", {"pool": pool}, {"task_id": "b64", "task_type": "plan"})
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    # Then it is decoded and served like any other
    assert api.invoke(event).status == 201
