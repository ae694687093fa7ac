"""A queue call keeps its deadline: each try is bounded by the time left, a wait has a floor and
never runs past the deadline, and running out of time raises a deadline error that says how many
tries were made and what the last one met.

Most tests wait on an injected clock. Two are honest about time, against the real clock and a real
server on loopback: one that never answers, and one that answers 503 with `Retry-After: 0`.
"""

from __future__ import annotations

import logging
import time

import pytest
from conftest import ALLOCATION, DROP, Hanging, Scripted, VirtualTime, no_capacity

from podslots_client import (
    Backoff,
    DeadlineExceeded,
    NoAnswerInTime,
    NoCapacity,
    NoCapacityInTime,
    QueueClient,
    Unreachable,
)
from podslots_client.retry import MIN_TRY_S, RETRY_FLOOR_S, Deadline, capacity_wait

SERVER_TEXT = "token=abc123 said the server"  # what must never reach an error's words or a log
TASK = {"task_id": "run-1", "pool": "tf", "pod": "tf-a", "slot": "s0", "task_type": "plan", "status": "running"}


# ---- the math ---------------------------------------------------------------------------------------


def test_a_try_is_bounded_by_the_time_left_and_none_starts_with_less_than_the_minimum() -> None:
    # Given a 10 s deadline
    time = VirtualTime()
    deadline = Deadline(10, time.clock)

    # Then a try's timeout is the configured one while there is time, then the time left
    assert deadline.timeout(3) == 3
    time.now = 8
    assert deadline.timeout(30) == 2
    # and a wait is cut so that the next try starts with the minimum left, or there is no next try
    assert deadline.pause(5) == pytest.approx(2 - MIN_TRY_S)
    assert deadline.pause(1) == 1
    time.now = 10 - MIN_TRY_S
    assert deadline.pause(0.3) is None


def test_a_first_try_with_less_than_the_minimum_left_is_bounded_by_the_minimum() -> None:
    deadline = Deadline(0.1, VirtualTime().clock)
    assert deadline.timeout(10) == MIN_TRY_S
    assert deadline.pause(0.3) is None


def test_a_deadline_of_zero_is_one_try_with_the_configured_timeout_and_no_wait() -> None:
    deadline = Deadline(0, VirtualTime().clock)
    assert deadline.timeout(10) == 10
    assert deadline.pause(0.3) is None


def test_a_retry_after_of_zero_still_waits_a_floor_with_jitter() -> None:
    backoff = Backoff()
    waits = [capacity_wait(0, 0, rand, max_wait_s=30, backoff=backoff) for rand in (0.0, 0.5, 0.99)]
    assert waits[0] == RETRY_FLOOR_S
    assert all(RETRY_FLOOR_S <= wait < 2 * RETRY_FLOOR_S for wait in waits)
    assert len(set(waits)) == 3  # a crowd told "0" does not come back in step
    assert capacity_wait(5, 0, 0.0, max_wait_s=0, backoff=backoff) == RETRY_FLOOR_S  # nor with max_wait_s=0


# ---- on an injected clock -------------------------------------------------------------------------


def test_allocate_waits_the_floor_after_each_retry_after_of_zero(scripted: Scripted) -> None:
    # Given a pool that answers "no capacity, try again now" three times, then has a slot
    scripted.script(no_capacity(0), no_capacity(0), no_capacity(0), (201, ALLOCATION, {}))
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, sleep=time.sleep, clock=time.clock, rand=lambda: 0.5)

    # When the queue dispatches a task
    allocation = client.allocate("tf", "run-1", "plan", deadline_s=10)

    # Then it waited the floor, jittered, before each try again
    assert allocation.slot == "s0"
    assert time.sleeps == [RETRY_FLOOR_S * 1.5] * 3


def test_a_429_asking_for_no_wait_still_waits_the_floor_even_with_no_backoff(scripted: Scripted) -> None:
    # Given an API that throttles twice with `Retry-After: 0`, and a client configured not to back off
    throttled = (429, {"message": "Too Many Requests"}, {"Retry-After": "0"})
    scripted.script(throttled, throttled, (200, TASK, {}))
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, backoff=Backoff(base_s=0), sleep=time.sleep, rand=lambda: 0.0)

    # When the queue asks where a task is
    client.get_task("run-1")

    # Then each retry waited the floor
    assert time.sleeps == [RETRY_FLOOR_S, RETRY_FLOOR_S]


def test_retried_failures_stop_at_the_deadline_without_sleeping_past_it(
    scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an API that fails every try with a 502 in words and headers of its own
    body = {"error": "odd_code_abc123", "message": SERVER_TEXT}
    scripted.otherwise = (502, body, {"Retry-After": "1", "X-Detail": SERVER_TEXT})
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, retries=10, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)

    # When the queue asks where a task is, with 3 s to spare
    with caplog.at_level(logging.INFO, logger="podslots_client"), pytest.raises(DeadlineExceeded) as raised:
        client.get_task("run-1", deadline_s=3)

    # Then it waited what each 502 asked until the last wait had to be cut short, tried once more
    # with the minimum left, and stopped there: well within its 10 retries
    assert time.sleeps == [1.0, 1.0, 3 - 2 - MIN_TRY_S]
    assert len(scripted.received) == 4
    # and the error says so in the client's words, and is still what callers caught before
    error = raised.value
    assert isinstance(error, NoAnswerInTime)
    assert isinstance(error, Unreachable)
    assert (error.tries, error.last, error.code, error.status) == (4, "502 server_error", "deadline_exceeded", None)
    assert "4 tries" in str(error)
    assert "502 server_error" in str(error)
    for words in (str(error), error.last or "", caplog.text):
        assert SERVER_TEXT not in words
        assert "abc123" not in words


def test_allocate_runs_out_of_time_as_no_capacity_in_time_with_its_tries(scripted: Scripted) -> None:
    # Given a pool that never has a free slot, and asks for 30 s each time
    scripted.otherwise = no_capacity(30)
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)

    # When the queue allocates with a 100 s deadline
    with pytest.raises(NoCapacity) as raised:
        client.allocate("tf", "run-1", "plan", deadline_s=100)

    # Then its last try started with the minimum left, and the error is a deadline's and a NoCapacity
    assert time.sleeps == [30, 30, 30, 10 - MIN_TRY_S]
    error = raised.value
    assert isinstance(error, NoCapacityInTime)
    assert isinstance(error, DeadlineExceeded)
    assert (error.tries, error.last) == (5, "503 no_capacity")
    assert (error.status, error.code, error.retry_after_s) == (503, "no_capacity", 30)
    assert error.body["pool"] == "tf"
    assert "gave up after 5 tries in 100 s, the last 503 no_capacity" in error.message


def test_a_deadline_of_zero_makes_one_try_and_no_wait(scripted: Scripted) -> None:
    scripted.otherwise = no_capacity(30)
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, sleep=time.sleep, clock=time.clock)
    with pytest.raises(NoCapacityInTime) as raised:
        client.allocate("tf", "run-1", "plan", deadline_s=0)
    assert (raised.value.tries, len(scripted.received), time.sleeps) == (1, 1, [])


def test_a_status_change_with_a_deadline_keeps_it_too(scripted: Scripted) -> None:
    scripted.otherwise = (503, {"message": "Service Unavailable"}, {})
    time = VirtualTime()
    client = QueueClient(scripted.url, auth=None, retries=50, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    with pytest.raises(NoAnswerInTime) as raised:
        client.set_status("run-1", "running", deadline_s=2)
    assert sum(time.sleeps) <= 2 - MIN_TRY_S
    assert raised.value.last == "503 server_error"


def test_a_try_without_an_answer_is_named_by_how_it_failed(scripted: Scripted) -> None:
    # Given an API that closes the connection without answering, then one that is not listening
    scripted.otherwise = DROP
    time = VirtualTime()
    dropped = QueueClient(scripted.url, auth=None, retries=0, sleep=time.sleep, clock=time.clock)
    refused = QueueClient("http://127.0.0.1:9/v1", auth=None, retries=0, sleep=time.sleep, clock=time.clock)

    # Then each failure says how, in the client's words
    with pytest.raises(Unreachable) as closed:
        dropped.get_task("run-1")
    with pytest.raises(Unreachable) as unreachable:
        refused.get_task("run-1", deadline_s=0)
    assert closed.value.kind == "closed without an answer"
    assert isinstance(unreachable.value, NoAnswerInTime)
    assert unreachable.value.last == "connection refused"


# ---- against the real clock -----------------------------------------------------------------------


@pytest.mark.parametrize("timeout_s", [3.0, None], ids=["timeout_s=3", "defaults"])
def test_a_hanging_api_ends_a_3_s_allocation_in_about_3_s(hanging: Hanging, timeout_s: float | None) -> None:
    # Given an API that accepts each connection and never answers
    client = (
        QueueClient(hanging.url, auth=None)
        if timeout_s is None
        else QueueClient(hanging.url, auth=None, timeout_s=timeout_s)
    )

    # When the queue allocates with a 3 s deadline
    started = time.monotonic()
    with pytest.raises(Unreachable) as raised:
        client.allocate("tf", "run-1", "plan", deadline_s=3)
    took = time.monotonic() - started

    # Then it gave up in about 3 s (before the fix: 14 s with timeout_s=3, 43 s with the defaults),
    # with a deadline error that says its one try timed out
    assert took < 6
    assert isinstance(raised.value, NoAnswerInTime)
    assert (raised.value.tries, raised.value.last) == (1, "timed out")


def test_an_api_answering_503_retry_after_0_gets_a_bounded_number_of_requests(scripted: Scripted) -> None:
    # Given an API that answers every allocation with 503 no_capacity and `Retry-After: 0`
    scripted.otherwise = no_capacity(0)
    client = QueueClient(scripted.url, auth=None)

    # When the queue allocates with a 3 s deadline
    started = time.monotonic()
    with pytest.raises(NoCapacity) as raised:
        client.allocate("tf", "run-1", "plan", deadline_s=3)
    took = time.monotonic() - started

    # Then the waits' floor kept it to a handful of requests (before the fix: thousands): a try
    # at 0, one after each wait of at least the floor, none with less than the minimum left
    assert took < 6
    assert 2 <= len(scripted.received) <= 1 + (3 - MIN_TRY_S) / RETRY_FLOOR_S + 1
    assert isinstance(raised.value, NoCapacityInTime)
    assert raised.value.tries == len(scripted.received)
