"""What an allocation says happened (`outcome`, `placed_anew`, `previous`), an approval's
`expect="resume"`, and its refusal `ReservationGone`, over real HTTP from a scripted server; and an
answer from a server older than those fields."""

from __future__ import annotations

import json

import pytest
from conftest import Scripted

from podslots_client import (
    CallerNotAllowed,
    Conflict,
    Forbidden,
    QueueClient,
    ReservationGone,
    ResumeContended,
    TaskIdTaken,
)

SLOT = {"task_id": "run-42", "pool": "tf", "pod": "tf-b", "slot": "s1", "pod_ip": "10.0.0.8", "status": "running"}
PREVIOUS = {"pod": "tf-a", "slot": "s0", "status": "expired", "reason": "reservation expired"}


def queue(scripted: Scripted) -> QueueClient:
    return QueueClient(scripted.url, auth=None, retries=0)


def test_given_a_task_whose_reservation_expired_when_it_is_placed_anew_then_the_answer_says_so(
    scripted: Scripted,
) -> None:
    scripted.script((201, {**SLOT, "outcome": "placed_anew", "placed_anew": True, "previous": PREVIOUS}, {}))
    allocation = queue(scripted).allocate("tf", "run-42", "plan_and_apply")
    assert (allocation.created, allocation.outcome, allocation.placed_anew) == (True, "placed_anew", True)
    assert allocation.previous is not None
    assert (allocation.previous.pod, allocation.previous.slot) == ("tf-a", "s0")
    assert (allocation.previous.status, allocation.previous.reason) == ("expired", "reservation expired")
    assert json.loads(scripted.received[0].body) == {"task_id": "run-42", "task_type": "plan_and_apply"}


def test_given_an_approval_when_it_expects_a_resume_then_the_request_says_so_and_a_resume_is_typed(
    scripted: Scripted,
) -> None:
    scripted.script((200, {**SLOT, "outcome": "resumed", "placed_anew": False, "previous": None}, {}))
    allocation = queue(scripted).allocate("tf", "run-42", "plan_and_apply", expect="resume")
    assert json.loads(scripted.received[0].body)["expect"] == "resume"
    assert (allocation.created, allocation.outcome, allocation.placed_anew, allocation.previous) == (
        False,
        "resumed",
        False,
        None,
    )


def test_given_a_reservation_that_is_gone_when_the_approval_expects_a_resume_then_reservation_gone_is_raised(
    scripted: Scripted,
) -> None:
    body = {
        "error": "reservation_gone",
        "message": "task run-42: its reservation on tf-a/s0 is gone, the task is expired (reservation expired)",
        "task_id": "run-42",
        "task_status": "expired",
        "previous": PREVIOUS,
    }
    scripted.script((409, body, {}))
    with pytest.raises(ReservationGone) as raised:
        queue(scripted).allocate("tf", "run-42", "plan_and_apply", expect="resume")
    assert isinstance(raised.value, Conflict)  # code that catches Conflict still catches it
    assert (raised.value.task_status, raised.value.previous) == ("expired", PREVIOUS)


CONTENDED: tuple[int, dict[str, str], dict[str, str]] = (
    409,
    {"error": "resume_contended", "message": "try again", "task_id": "run-42"},
    {},
)


def test_given_a_resume_that_kept_meeting_conflicts_when_no_time_is_left_then_resume_contended_is_raised(
    scripted: Scripted,
) -> None:
    scripted.script(CONTENDED)
    with pytest.raises(ResumeContended):
        queue(scripted).allocate("tf", "run-42", "plan_and_apply", deadline_s=0)
    assert len(scripted.received) == 1


def test_given_a_contended_resume_when_time_is_left_then_the_same_resume_is_tried_again(scripted: Scripted) -> None:
    # Given a server whose first answer to the approval is resume_contended (nothing moved), then the resume
    scripted.script(CONTENDED, (200, {**SLOT, "outcome": "resumed", "placed_anew": False, "previous": None}, {}))
    waits: list[float] = []
    client = QueueClient(scripted.url, auth=None, retries=0, sleep=waits.append)
    # When the queue approves with time to spare
    allocation = client.allocate("tf", "run-42", "plan_and_apply", expect="resume", deadline_s=30)
    # Then the same request was sent again after a floored wait, and the answer is the resume
    assert allocation.outcome == "resumed"
    assert [json.loads(r.body) for r in scripted.received] == [
        {"task_id": "run-42", "task_type": "plan_and_apply", "expect": "resume"}
    ] * 2
    assert len(waits) == 1
    assert waits[0] >= 0.25


def test_given_a_server_from_before_outcomes_when_a_slot_is_allocated_then_the_new_fields_are_empty(
    scripted: Scripted,
) -> None:
    scripted.script((200, SLOT, {}))
    allocation = queue(scripted).allocate("tf", "run-42", "plan")
    assert (allocation.created, allocation.outcome, allocation.placed_anew, allocation.previous) == (
        False,
        None,
        False,
        None,
    )


def test_given_another_callers_task_id_when_it_is_dispatched_then_task_id_taken_is_raised_once(
    scripted: Scripted,
) -> None:
    taken = {
        "error": "task_id_taken",
        "message": "task id run-42 is taken by another caller's task",
        "task_id": "run-42",
    }
    scripted.script((409, taken, {}))
    with pytest.raises(TaskIdTaken) as raised:
        QueueClient(scripted.url, auth=None).allocate("tf", "run-42", "plan", deadline_s=30)
    assert isinstance(raised.value, Conflict)  # code that catches Conflict still catches it
    assert len(scripted.received) == 1  # no retry can free the id


def test_given_a_pool_that_does_not_allow_the_caller_when_it_allocates_then_caller_not_allowed_is_raised_once(
    scripted: Scripted,
) -> None:
    refused = {"error": "caller_not_allowed", "message": "pool tf does not allow this caller", "pool": "tf"}
    scripted.script((403, refused, {}))
    with pytest.raises(CallerNotAllowed) as raised:
        QueueClient(scripted.url, auth=None).allocate("tf", "run-42", "plan", deadline_s=30)
    assert isinstance(raised.value, Forbidden)
    assert len(scripted.received) == 1
