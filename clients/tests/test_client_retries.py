"""Retries, backoff, Retry-After and the allocation deadline, on injected sleeps and clocks; error
answers to named exceptions; answers with fields this client does not know.

The HTTP is real (a scripted server on loopback); the waiting is not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import ALLOCATION, DROP, Scripted, VirtualTime, no_capacity

from podslots_client import (
    Backoff,
    BodyTooLarge,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidJson,
    InvalidRequest,
    NoCapacity,
    NotFound,
    PodSlotsError,
    PoolsClient,
    QueueClient,
    ServerError,
    Throttled,
    UnexpectedAnswer,
    Unreachable,
    UnsupportedMediaType,
)
from podslots_client.errors import error_for
from podslots_client.retry import capacity_wait, retry_after_s

TASK = {"task_id": "run-1", "pool": "tf", "pod": "tf-a", "slot": "s0", "task_type": "plan", "status": "running"}


# ---- the math ---------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_base_to_its_cap_with_half_of_each_wait_random() -> None:
    backoff = Backoff(base_s=0.5, cap_s=20)
    ceilings = [0.5, 1, 2, 4, 8, 16, 20, 20]
    assert [backoff.delay(n, 0.0) for n in range(8)] == [c / 2 for c in ceilings]
    assert [backoff.delay(n, 0.999999) for n in range(8)] == pytest.approx(ceilings, rel=1e-5)
    assert backoff.delay(10_000, 0.5) == 15  # no overflow, however long it has failed


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert retry_after_s("30") == 30
    assert retry_after_s("Wed, 02 Jan 2030 03:04:35 GMT", now=now) == 30
    assert retry_after_s("Wed, 02 Jan 2030 03:00:00 GMT", now=now) == 0  # a date already past
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_a_capacity_wait_is_what_the_server_asks_capped_plus_up_to_a_fifth_more() -> None:
    backoff = Backoff(base_s=1, cap_s=8)
    assert capacity_wait(10, 0, 0.0, max_wait_s=30, backoff=backoff) == 10
    assert capacity_wait(10, 0, 1.0, max_wait_s=30, backoff=backoff) == 12
    assert capacity_wait(30, 0, 0.0, max_wait_s=5, backoff=backoff) == 5
    assert capacity_wait(None, 3, 1.0, max_wait_s=30, backoff=backoff) == 8  # no Retry-After: the backoff's


# ---- retries ----------------------------------------------------------------------------------------


def test_a_dropped_connection_and_502_503_504_answers_are_retried_with_backoff(scripted: Scripted) -> None:
    # Given a server that drops the connection, then fails three ways, then answers
    scripted.script(
        DROP,
        (502, {"message": "Internal server error"}, {}),
        (503, {"message": "Service Unavailable"}, {}),
        (504, {"message": "Endpoint request timed out"}, {}),
        (200, TASK, {}),
    )
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, retries=4, sleep=time.sleep, rand=lambda: 0.0)

    # When the queue asks where a task is
    task = client.get_task("run-1")

    # Then it got its answer on the fifth attempt, after waits that doubled
    assert task.pod == "tf-a"
    assert len(scripted.received) == 5
    assert time.sleeps == [0.25, 0.5, 1.0, 2.0]


def test_retries_end_with_the_last_failure(scripted: Scripted) -> None:
    scripted.script(*[(502, {"message": "Internal server error"}, {})] * 4)
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, retries=3, sleep=time.sleep)
    with pytest.raises(ServerError) as raised:
        client.get_task("run-1")
    assert (raised.value.status, raised.value.code) == (502, "server_error")
    assert len(scripted.received) == 4
    assert len(time.sleeps) == 3


def test_a_refused_connection_is_unreachable_after_the_retries() -> None:
    time = VirtualTime()
    client = QueueClient("http://127.0.0.1:9/v1", auth=None, retries=2, sleep=time.sleep, timeout_s=2)
    with pytest.raises(Unreachable) as raised:
        client.get_task("run-1")
    assert raised.value.status is None
    assert len(time.sleeps) == 2


def test_a_429_waits_at_least_its_retry_after(scripted: Scripted) -> None:
    scripted.script((429, {"message": "Too Many Requests"}, {"Retry-After": "3"}), (200, TASK, {}))
    time = VirtualTime()
    QueueClient(scripted.url, auth=None, sleep=time.sleep, rand=lambda: 0.0).get_task("run-1")
    assert time.sleeps == [3.0]


def test_an_error_answer_of_the_contract_is_raised_at_once_not_retried(scripted: Scripted) -> None:
    scripted.script((409, {"error": "conflict", "message": "task run-1 ended (success)", "task_id": "run-1"}, {}))
    time = VirtualTime()
    with pytest.raises(Conflict) as raised:
        QueueClient(scripted.url, auth=None, sleep=time.sleep).set_status("run-1", "running")
    assert (raised.value.status, raised.value.code, raised.value.message) == (
        409,
        "conflict",
        "task run-1 ended (success)",
    )
    assert raised.value.body["task_id"] == "run-1"
    assert len(scripted.received) == 1
    assert time.sleeps == []


# ---- allocation and no_capacity -------------------------------------------------------------------


def test_allocate_waits_what_each_503_asks_capped_and_jittered_until_a_slot_is_free(scripted: Scripted) -> None:
    # Given a pool that is cold (Retry-After 30), then has a pod starting (10), then a free slot
    scripted.script(no_capacity(30), no_capacity(10), no_capacity(10), (201, ALLOCATION, {}))
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, max_wait_s=20, sleep=time.sleep, clock=time.clock, rand=lambda: 0.5)

    # When the queue dispatches a task
    allocation = client.allocate("tf", "run-1", "plan")

    # Then it waited each Retry-After (30 capped at 20) plus a tenth (the jitter at 0.5), and got its slot
    assert time.sleeps == pytest.approx([22.0, 11.0, 11.0])
    assert (allocation.pod, allocation.slot, allocation.created) == ("tf-a", "s0", True)
    assert len(scripted.received) == 4


def test_a_task_that_already_holds_its_slot_gets_it_back_as_not_created(scripted: Scripted) -> None:
    scripted.script((200, ALLOCATION, {}))
    allocation = QueueClient(scripted.url, auth=None).allocate("tf", "run-1", "plan_and_apply")
    assert allocation.created is False
    assert scripted.received[0].body == b'{"task_id": "run-1", "task_type": "plan_and_apply"}'


# ---- error answers to exceptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, {"error": "not_found", "message": "pool x does not exist"}, NotFound),
        (409, {"error": "conflict", "message": "pool x is being deleted"}, Conflict),
        (410, {"error": "gone", "message": "pod p is draining"}, Gone),
        (503, {"error": "no_capacity", "message": "no ready pod", "retry_after_s": 30}, NoCapacity),
        (422, {"error": "invalid_request", "message": "task_id: is required", "problems": []}, InvalidRequest),
        (400, {"error": "invalid_request", "message": "pool: bad name", "problems": []}, InvalidRequest),
        (422, {"error": "invalid", "message": "min_pods above max_pods", "field": "min_pods"}, InvalidInput),
        (400, {"error": "invalid_json", "message": "the body is not valid JSON"}, InvalidJson),
        (413, {"error": "body_too_large", "message": "the body is 70000 bytes"}, BodyTooLarge),
        (
            415,
            {"error": "unsupported_media_type", "message": "send the body as application/json"},
            UnsupportedMediaType,
        ),
        (403, {"message": "Missing Authentication Token"}, Forbidden),
        (429, {"message": "Too Many Requests"}, Throttled),
        (502, {"message": "Internal server error"}, ServerError),
    ],
)
def test_each_error_answer_is_the_exception_named_for_its_code(
    status: int, body: dict[str, Any], kind: type[PodSlotsError]
) -> None:
    error = error_for(status, body)
    assert type(error) is kind
    assert (error.status, error.message, error.body) == (status, body["message"], body)
    assert error.code == body.get("error", kind.CODE)


def test_an_error_code_this_client_does_not_know_keeps_its_code() -> None:
    error = error_for(409, {"error": "cordoned", "message": "pod p is cordoned"})
    assert type(error) is Conflict
    assert error.code == "cordoned"


def test_the_invalid_field_and_problems_are_at_hand() -> None:
    invalid = error_for(422, {"error": "invalid", "message": "m", "field": "min_pods"})
    assert isinstance(invalid, InvalidInput)
    assert invalid.field == "min_pods"
    problems = [{"field": "task_id", "problem": "is required"}]
    error = error_for(422, {"error": "invalid_request", "message": "m", "problems": problems})
    assert isinstance(error, InvalidRequest)
    assert error.problems == problems


# ---- answers --------------------------------------------------------------------------------------


def test_fields_this_client_does_not_know_are_kept_and_never_fail(scripted: Scripted) -> None:
    # Given a server that has learnt new fields (a pod's `cordoned`, say)
    pod = {"pool": "tf", "pod": "tf-a", "state": "ready", "busy": 0, "pod_ip": None, "heartbeat_at": 1, "slots": []}
    view = {
        "pool": "tf",
        "deleting": False,
        "settings": {"min_pods": 0},
        "figures": {},
        "pods": [{**pod, "cordoned": True, "slots": [{"slot": "s0", "status": "idle", "warm": True}]}],
        "owner": "team-a",
    }
    scripted.script((200, view, {}))

    # When an operator reads the pool
    pool = PoolsClient(scripted.url, auth=None).get("tf")

    # Then the answer is read, and the new fields are there in `raw`
    assert pool.pods[0].raw["cordoned"] is True
    assert pool.pods[0].slots[0].raw["warm"] is True
    assert pool.raw["owner"] == "team-a"


def test_an_answer_without_the_contracts_fields_is_an_unexpected_answer(scripted: Scripted) -> None:
    scripted.script((200, {"hello": "world"}, {}))
    with pytest.raises(UnexpectedAnswer, match="is the URL podslots' API"):
        QueueClient(scripted.url, auth=None).get_task("run-1")


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        QueueClient("file:///etc/passwd", auth=None)
