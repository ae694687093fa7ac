"""The task queue's client (`QueueClient`) and the operators' (`PoolsClient`).

`url` is the API's base, stage included: `https://{api-id}.execute-api.{region}.amazonaws.com/v1`,
or `http://127.0.0.1:3000/v1` for `make local` (with `auth=None`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from podslots_client.auth import SIGV4_DEFAULT, Auth
from podslots_client.errors import NoCapacity, NoCapacityInTime, ResumeContended, UnexpectedAnswer
from podslots_client.models import (
    Allocation,
    CordonChange,
    Pool,
    PoolDeletion,
    PoolEvent,
    PoolPut,
    StatusChange,
    Task,
)
from podslots_client.retry import Backoff, Deadline, capacity_wait, floored
from podslots_client.transport import Answer, Transport, checked_url

log = logging.getLogger("podslots_client")


def _segment(name: str) -> str:
    """A path segment: a name that is not a valid one gets a 400 from the API, not another route."""
    return quote(name, safe="")


@contextmanager
def _reading(answer: Answer) -> Iterator[None]:
    """A success answer missing what the contract promises is an `UnexpectedAnswer`, not a KeyError."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise UnexpectedAnswer(
            f"the answer lacks {exc}: is the URL podslots' API?", status=answer.status, body=answer.body
        ) from exc


class _Api:
    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = SIGV4_DEFAULT,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.url = checked_url(url)
        self._sleep = sleep
        self._rand = rand
        self._transport = Transport(auth, timeout_s=timeout_s, retries=retries, backoff=backoff, sleep=sleep, rand=rand)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, auth={self._transport.auth!r})"


class QueueClient(_Api):
    """What a task queue calls: a slot at dispatch, the task's status as it changes, where it is.

    `allocate` rides out 503 no_capacity (a cold pool's first pod takes a while to start): it waits
    what `Retry-After` asks (at least a floor, at most `max_wait_s`), plus jitter, until
    `allocate_deadline_s` has passed, then raises `NoCapacityInTime`. Other failures (connections,
    timeouts, 429, 5xx) are retried `retries` times. The deadline bounds every try: its socket
    timeouts are `timeout_s` cut to the time left, no wait runs past it, and a call out of time
    raises a `DeadlineExceeded`. `sleep`, `clock` and `rand` are injectable so tests need not wait.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = SIGV4_DEFAULT,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        allocate_deadline_s: float = 600.0,
        max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(url, auth=auth, timeout_s=timeout_s, retries=retries, backoff=backoff, sleep=sleep, rand=rand)
        self.allocate_deadline_s = allocate_deadline_s
        self.max_wait_s = max_wait_s
        self._clock = clock

    def _deadline(self, seconds: float | None) -> Deadline | None:
        return None if seconds is None else Deadline(seconds, self._clock)

    def allocate(
        self,
        pool: str,
        task_id: str,
        task_type: str,
        *,
        deadline_s: float | None = None,
        expect: str | None = None,
    ) -> Allocation:
        """A slot for the task (`plan`, `apply` or `plan_and_apply`); the slot it holds if it has one.

        Once `deadline_s` (default `allocate_deadline_s`) has passed without one, raises
        `NoCapacityInTime` (a `NoCapacity`) if the last answer was 503 no_capacity, else
        `NoAnswerInTime` (an `Unreachable`). A deadline of 0 means one try and no wait.
        `expect="resume"` marks an approval: the task's reserved slot, or `ReservationGone` if the
        reservation is gone (expired, lost, unknown task), never a new slot. A `resume_contended`
        (409, nothing moved) is tried again, backed off, until the deadline; then it is raised.
        """
        deadline = Deadline(self.allocate_deadline_s if deadline_s is None else deadline_s, self._clock)
        url = f"{self.url}/pools/{_segment(pool)}/allocations"
        body = {"task_id": task_id, "task_type": task_type}
        if expect is not None:
            body["expect"] = expect
        attempt = 0
        while True:
            try:
                answer = self._transport.request("POST", url, body, deadline=deadline)
            except NoCapacity as exc:
                wait = capacity_wait(
                    exc.retry_after_s,
                    attempt,
                    self._rand(),
                    max_wait_s=self.max_wait_s,
                    backoff=self._transport.backoff,
                )
                pause = deadline.pause(wait)
                if pause is None:
                    raise NoCapacityInTime.after(deadline, exc) from exc
                log.info("no capacity in pool %s for task %s; trying again in %.1f s", pool, task_id, pause)
                self._sleep(pause)
                attempt += 1
                continue
            except ResumeContended:
                # The approval's resume kept meeting other writes; nothing moved. It is still the
                # same resume, so it is tried again (backed off) while the deadline allows.
                rand = self._rand()
                pause = deadline.pause(floored(self._transport.backoff.delay(attempt, rand), rand))
                if pause is None:
                    raise
                log.info("resume of task %s contended; trying again in %.1f s", task_id, pause)
                self._sleep(pause)
                attempt += 1
                continue
            with _reading(answer):
                return Allocation.from_json(answer.body, created=answer.status == 201)

    def set_status(self, task_id: str, status: str, *, deadline_s: float | None = None) -> StatusChange:
        """`apply_pending` reserves the slot, `running` resumes it, an end status frees it.

        With `deadline_s`, tries stop when it passes (`NoAnswerInTime`); without, after `retries`.
        """
        url = f"{self.url}/tasks/{_segment(task_id)}/status"
        answer = self._transport.request("PUT", url, {"status": status}, deadline=self._deadline(deadline_s))
        with _reading(answer):
            return StatusChange.from_json(answer.body)

    def get_task(self, task_id: str, *, deadline_s: float | None = None) -> Task:
        """Where the task is; `deadline_s` as for `set_status`."""
        url = f"{self.url}/tasks/{_segment(task_id)}"
        answer = self._transport.request("GET", url, deadline=self._deadline(deadline_s))
        with _reading(answer):
            return Task.from_json(answer.body)


class PoolsClient(_Api):
    """What operators call: pool settings, live figures and pods, history, a pod's cordon."""

    def put(self, pool: str, settings: Mapping[str, Any]) -> PoolPut:
        """Create or replace the whole settings document; fields left out take their defaults."""
        answer = self._transport.request("PUT", f"{self.url}/pools/{_segment(pool)}", dict(settings))
        with _reading(answer):
            return PoolPut.from_json(answer.body, created=answer.status == 201)

    def get(self, pool: str) -> Pool:
        answer = self._transport.request("GET", f"{self.url}/pools/{_segment(pool)}")
        with _reading(answer):
            return Pool.from_json(answer.body)

    def names(self) -> list[str]:
        """Every pool's name."""
        answer = self._transport.request("GET", f"{self.url}/pools")
        with _reading(answer):
            return [str(name) for name in answer.body["pools"]]

    def delete(self, pool: str) -> PoolDeletion:
        """New allocations are refused at once; the settings go with the pool's last pod."""
        answer = self._transport.request("DELETE", f"{self.url}/pools/{_segment(pool)}")
        with _reading(answer):
            return PoolDeletion.from_json(answer.body)

    def events(self, pool: str, limit: int = 50) -> list[PoolEvent]:
        """The pool's scaling and repair history, newest first (`limit` 1 to 500)."""
        answer = self._transport.request("GET", f"{self.url}/pools/{_segment(pool)}/events", query={"limit": limit})
        with _reading(answer):
            return [PoolEvent.from_json(e) for e in answer.body["events"]]

    def cordon(self, pool: str, pod: str) -> CordonChange:
        """Take a pod out of service: no new task; its tasks finish, then autoscale drains it (and
        replaces it if the pool needs one). `changed` is False for a pod already cordoned, for any
        reason, or draining. Raises `NotFound` for an unknown pool or pod."""
        answer = self._transport.request("POST", self._cordon_url(pool, pod))
        with _reading(answer):
            return CordonChange.from_json(answer.body)

    def uncordon(self, pool: str, pod: str) -> CordonChange:
        """Put an operator's cordoned pod back in service. Raises `Conflict` when the pod is draining
        or its cordon is podslots' own (`Conflict.cordoned` says which), `NotFound` when it is gone."""
        answer = self._transport.request("DELETE", self._cordon_url(pool, pod))
        with _reading(answer):
            return CordonChange.from_json(answer.body)

    def _cordon_url(self, pool: str, pod: str) -> str:
        return f"{self.url}/pools/{_segment(pool)}/pods/{_segment(pod)}/cordon"
