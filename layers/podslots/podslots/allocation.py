"""Allocate on dispatch: give a task a slot, give it back its own slot, or say there is none.

The slot life cycle (docs/architecture.md, "Life cycle"): dispatch finds an idle slot
(`idle -> running`); a `plan_and_apply` whose plan waits for approval comes back for its apply and
gets the slot it had (`reserved -> running`), on the pod that holds the plan's working directory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.errors import Conflict, NoCapacity, NotFound
from podslots.model import Placement, Pod, PodState, Task, TaskStatus, TaskType, placement_candidates
from podslots.observability import count, logger, seconds
from podslots.store import SlotStore, StoreConflict

MAX_ATTEMPTS = 10  # slot races lost before answering 503 (each attempt re-reads the pool)
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
    """One allocation step; holds its dependencies so the handler stays a thin adapter."""

    def __init__(
        self,
        store: SlotStore,
        bus: EventPublisher,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (spreads retries; not a secret)

    def allocate(self, request: AllocationRequest) -> Allocation:
        for _ in range(MAX_ATTEMPTS):
            existing = self.store.get_task(request.task_id)
            if existing is not None and not existing.status.redispatchable:
                answer = self._existing(request, existing)
                if answer is not None:
                    return answer
                continue  # the task moved while we resumed it: decide again
            if existing is not None and existing.status is TaskStatus.PENDING:
                self._same_type(request, existing)
            answer = self._new(request, existing)
            if answer is not None:
                return answer
        count("AllocationConflictRetry")
        raise NoCapacity(
            "every idle slot was taken by a concurrent allocation; try again",
            retry_after_s=1,
        )

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
            try:
                self.store.resume(task, int(self.clock.now()))
            except StoreConflict:
                return None
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

    # ---- a new allocation ----------------------------------------------------------------------

    def _new(self, request: AllocationRequest, previous: Task | None) -> Allocation | None:
        task = Task(request.task_id, request.pool, request.task_type, TaskStatus.RUNNING)
        pods = self.store.pods(request.pool)
        attempt = 0
        while True:
            candidates = placement_candidates(pods)
            if not candidates:
                self._shortage(request, previous, pods)
            choice = self._choose(candidates, attempt)
            now = int(self.clock.now())
            try:
                self.store.allocate(task, choice.pod, choice.slot, previous, now)
            except StoreConflict as conflict:
                if conflict.failed("task"):
                    return None  # the task moved (a concurrent call placed it): decide again
                if conflict.failed("pool"):
                    self._pool_refuses(request.pool)
                count("AllocationConflictRetry")
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise NoCapacity(
                        "every idle slot was taken by a concurrent allocation; try again",
                        retry_after_s=1,
                    ) from conflict
                pods = self.store.pods(request.pool)
                continue
            count("AllocationSucceeded")
            if previous is not None and previous.waiting_since is not None:
                seconds("DispatchWait", max(0, now - previous.waiting_since))
            logger.info("slot allocated", extra=_keys(task, choice.pod.name, choice.slot))
            return Allocation(
                task_id=task.task_id,
                pool=task.pool,
                pod=choice.pod.name,
                slot=choice.slot,
                pod_ip=choice.pod.pod_ip,
                created=True,
            )

    def _choose(self, candidates: list[Placement], attempt: int) -> Placement:
        """The best slot first; after a lost race, spread over the best few to stop colliding."""
        if attempt == 0:
            return candidates[0]
        return self.rng.choice(candidates[: min(len(candidates), attempt + 1)])

    def _pool_refuses(self, pool: str) -> None:
        record = self.store.get_pool(pool)
        if record is None:
            raise NotFound(f"pool {pool} does not exist", pool=pool)
        if record.deleting:
            raise Conflict(f"pool {pool} is being deleted and takes no new tasks", pool=pool)

    def _shortage(self, request: AllocationRequest, previous: Task | None, pods: list[Pod]) -> None:
        self._pool_refuses(request.pool)
        now = int(self.clock.now())
        task = Task(request.task_id, request.pool, request.task_type, TaskStatus.PENDING)
        try:
            signal = self.store.record_waiting(task, previous, now, SHORTAGE_SIGNAL_EVERY_S)
        except StoreConflict:
            signal = False  # the task got a slot meanwhile; the caller retries and finds it
        count("AllocationNoCapacity")
        waiting_since = previous.waiting_since if previous and previous.waiting_since else now
        if signal:
            self.bus.publish(
                "CapacityShortage",
                {"pool": request.pool, "task_id": request.task_id, "waiting": now - waiting_since},
            )
        logger.info("no idle slot", extra={"pool": request.pool, "task_id": request.task_id})
        starting = any(p.state is PodState.STARTING for p in pods)
        raise NoCapacity(
            f"no ready pod in pool {request.pool} has an idle slot",
            retry_after_s=RETRY_AFTER_STARTING_S if starting else RETRY_AFTER_COLD_S,
            pool=request.pool,
        )


def _keys(task: Task, pod: str, slot: str) -> dict[str, str]:
    return {"pool": task.pool, "pod": pod, "slot": slot, "task_id": task.task_id}
