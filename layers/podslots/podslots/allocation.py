"""Allocate on dispatch: give a task a slot, give it back its own slot, or say there is none.

The slot life cycle (docs/architecture.md, "Life cycle"): dispatch finds an idle slot
(`idle -> running`); a `plan_and_apply` whose plan waits for approval comes back for its apply and
gets the slot it had (`reserved -> running`), on the pod that holds the plan's working directory.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.errors import Conflict, NoCapacity, NotFound
from podslots.model import Placement, PodState, Task, TaskStatus, TaskType, placement_candidates
from podslots.observability import count, logger, seconds
from podslots.store import SlotStore, StoreConflict, new_token

MAX_ATTEMPTS = 10  # slot races lost before answering 503 (each attempt reads the open pods again)
CANDIDATE_PODS = 4  # open pods read per attempt: the fullest few, whatever the pool's size
BACKOFF_BASE_S = 0.01  # after a lost race: a jittered wait, doubling, before reading again
BACKOFF_CAP_S = 0.2
SHORTAGE_SIGNAL_EVERY_S = 60  # at most one CapacityShortage per task per minute
RETRY_AFTER_STARTING_S = 10  # a pod is already starting: capacity is near
RETRY_AFTER_COLD_S = 30


@dataclass(frozen=True)
class AllocationRequest:
    pool: str
    task_id: str
    task_type: TaskType


@dataclass(frozen=True)
class Allocation:
    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    created: bool  # a new allocation (201) rather than the task's existing slot (200)


class Allocator:
    """One allocation step; holds its dependencies so the handler stays a thin adapter.

    A new allocation is two requests: one read of the few fullest open pods (the `open_slots`
    index, flat in the pool's size) and one transaction. The task item is read only when that
    transaction says it exists (a retry, a resume, a re-dispatch), and then from the
    transaction's own answer. No item is touched by every allocation of a pool, so concurrent
    allocations conflict only when they pick the same pod; after a lost race, the retry backs off
    and spreads over the best few pods.
    """

    def __init__(
        self,
        store: SlotStore,
        bus: EventPublisher,
        clock: Clock,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (spreads retries; not a secret)
        self.sleep = sleep

    def allocate(self, request: AllocationRequest) -> Allocation:
        task = Task(request.task_id, request.pool, request.task_type, TaskStatus.RUNNING)
        known: Task | None = None  # the task item as last seen; None: assumed not to exist
        races = 0
        for _ in range(MAX_ATTEMPTS):
            candidates = placement_candidates(self.store.open_slots(request.pool, CANDIDATE_PODS))
            if not candidates:  # a roll-out's outdated pods, only when no current pod has room
                candidates = placement_candidates(
                    self.store.open_slots(request.pool, CANDIDATE_PODS, second_choice=True)
                )
            if not candidates:
                return self._no_capacity(request, known)
            choice = self._choose(candidates, races)
            token = new_token()
            now = int(self.clock.now())
            try:
                self.store.allocate(task, choice.pod, choice.slot, known, now, token=token)
            except StoreConflict as conflict:
                if conflict.failed("task"):
                    current = conflict.found.get("task") or self.store.get_task(request.task_id)
                    if current is not None and current.request_token == token:
                        return self._placed(task, choice, known, now)  # a retry met its own write
                    answer = self._task_exists(request, current)
                    if answer is not None:
                        return answer
                    known = current
                    continue  # a re-dispatch (or a task that moved): try again knowing it
                races += 1
                count("AllocationConflictRetry")
                self.sleep(self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**races)))
                continue
            return self._placed(task, choice, known, now)
        raise NoCapacity(
            "every idle slot was taken by a concurrent allocation; try again", retry_after_s=1, contended=True
        )

    def _placed(self, task: Task, choice: Placement, known: Task | None, now: int) -> Allocation:
        count("AllocationSucceeded")
        if known is not None and known.waiting_since is not None:
            seconds("DispatchWait", max(0, now - known.waiting_since))
        logger.info("slot allocated", extra=_keys(task, choice.pod.name, choice.slot))
        return Allocation(
            task_id=task.task_id,
            pool=task.pool,
            pod=choice.pod.name,
            slot=choice.slot,
            pod_ip=choice.pod.pod_ip,
            created=True,
        )

    def _task_exists(self, request: AllocationRequest, current: Task | None) -> Allocation | None:
        """The task item is there: answer its own slot, refuse, or return None to place it anew."""
        if current is None or current.status.redispatchable:
            if current is not None and current.status is TaskStatus.PENDING:
                self._same_type(request, current)
            return None
        return self._existing(request, current)

    # ---- the task already holds a slot (or ended) --------------------------------------------

    def _existing(self, request: AllocationRequest, task: Task) -> Allocation | None:
        if task.status.is_end:
            raise Conflict(
                f"task {task.task_id} already ended with status {task.status.value}",
                task_id=task.task_id,
                status=task.status.value,
            )
        if task.pool != request.pool:
            raise Conflict(
                f"task {task.task_id} holds a slot in pool {task.pool}, not {request.pool}",
                task_id=task.task_id,
                pool=task.pool,
            )
        self._same_type(request, task)
        assert task.pod and task.slot
        if task.status is TaskStatus.APPLY_PENDING:
            # The approval came: the apply resumes in the slot the plan kept reserved.
            token = new_token()
            try:
                self.store.resume(task, int(self.clock.now()), token=token)
            except StoreConflict:
                current = self.store.get_task(task.task_id)
                if current is None or current.request_token != token:
                    return None  # the task moved while we resumed it: decide again
            logger.info("apply resumed on its reserved slot", extra=_keys(task, task.pod, task.slot))
        pod_ip = task.pod_ip
        if pod_ip is None:  # the pod had not reported its IP when the slot was given: look again
            pod = self.store.get_pod(task.pool, task.pod)
            pod_ip = pod.pod_ip if pod else None
        return Allocation(
            task_id=task.task_id, pool=task.pool, pod=task.pod, slot=task.slot, pod_ip=pod_ip, created=False
        )

    @staticmethod
    def _same_type(request: AllocationRequest, task: Task) -> None:
        if task.task_type is not request.task_type:
            raise Conflict(
                f"task {task.task_id} was dispatched as {task.task_type.value}, not {request.task_type.value}",
                task_id=task.task_id,
                task_type=task.task_type.value,
            )

    def _choose(self, candidates: list[Placement], races: int) -> Placement:
        """One of the fullest pods, at its first idle slot; after lost races, one of the best few.

        On DynamoDB two transactions on one pod item conflict whatever slot they take, so the
        spread is over pods. The first try picks at random among the pods tied for fullest (a
        burst into an empty pool spreads at once, and sequential tasks still pack one pod: after
        the first, that pod is the only fullest); each lost race doubles how many pods it may use.
        """
        firsts: dict[str, Placement] = {}
        for placement in candidates:
            firsts.setdefault(placement.pod.name, placement)
        best = list(firsts.values())
        if races == 0:
            fullest = len(best[0].pod.idle_slot_keys())
            best = [p for p in best if len(p.pod.idle_slot_keys()) == fullest]
            return self.rng.choice(best)
        return self.rng.choice(best[: min(len(best), 2**races)])

    # ---- no open slot ----------------------------------------------------------------------------

    def _no_capacity(self, request: AllocationRequest, known: Task | None) -> Allocation:
        """No open pod: the task's own slot if it holds one, else 404/409, else wait (503).

        The task is looked at first, so a repeat or a resume still finds its slot in a full pool
        or in one being deleted (its pods cordoned). This path may cost more requests: it is the
        one that answers 503.
        """
        current = known if known is not None else self.store.get_task(request.task_id)
        if current is not None:
            answer = self._task_exists(request, current)
            if answer is not None:
                return answer
        record = self.store.pool_state(request.pool)
        if record is None:
            raise NotFound(f"pool {request.pool} does not exist", pool=request.pool)
        if record.deleting:
            raise Conflict(f"pool {request.pool} is being deleted and takes no new tasks", pool=request.pool)
        now = int(self.clock.now())
        waiting = Task(request.task_id, request.pool, request.task_type, TaskStatus.PENDING)
        try:
            signal, since = self.store.record_waiting(waiting, now, SHORTAGE_SIGNAL_EVERY_S)
        except StoreConflict:
            # The task holds a slot (a repeat in a full pool) or ended: answer what it is.
            current = self.store.get_task(request.task_id)
            answer = self._task_exists(request, current)
            if answer is not None:
                return answer
            signal, since = False, now
        count("AllocationNoCapacity")
        if signal:
            detail = {"pool": request.pool, "task_id": request.task_id, "waiting": now - since}
            try:
                self.bus.publish("CapacityShortage", detail)
            except Exception:  # the wait is recorded: autoscale's schedule sees the demand anyway
                logger.exception("CapacityShortage not published", extra=detail)
        logger.info("no idle slot", extra={"pool": request.pool, "task_id": request.task_id})
        starting = any(p.state is PodState.STARTING for p in self.store.pods(request.pool))
        raise NoCapacity(
            f"no ready pod in pool {request.pool} has an idle slot",
            retry_after_s=RETRY_AFTER_STARTING_S if starting else RETRY_AFTER_COLD_S,
            pool=request.pool,
        )


def _keys(task: Task, pod: str, slot: str) -> dict[str, str]:
    return {"pool": task.pool, "pod": pod, "slot": slot, "task_id": task.task_id}
