"""Allocate on dispatch: give a task a slot, give it back its own slot, or say there is none.

The slot life cycle (docs/architecture.md, "Life cycle"): dispatch finds an idle slot
(`idle -> running`); a `plan_and_apply` whose plan waits for approval comes back for its apply and
gets the slot it had (`reserved -> running`), on the pod that holds the plan's working directory.

Every answer says what happened (`Outcome`): a 200 only ever names the slot the task already held
(resumed or repeated); a task podslots took a slot from (lost, expired) is placed anew with a 201
that names the slot it had and why it ended. A task seen reserved is only ever answered with its own
slot, or with a refusal: never with another slot.

This module is the placement loop (read the open pods, take a slot, back off after a lost race) and
the no-capacity answer; a task the table already knows is answered by `held_slots.py`, and the
request and answer types are in `allocation_answers.py`.

A task belongs to the caller that allocated it (`podslots.tenancy`): another caller's task id is
refused (`task_id_taken`) without a word about that task, and an approval for it is answered as
for an unknown task. The check reads nothing more: it looks at the task item the allocation reads
anyway (the cancelled transaction's ALL_OLD, or the read of the slow paths). A pool's
`allowed_callers` is checked first, from the pool's state as this container read it at most
`CALLERS_MAX_AGE_S` ago.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from podslots.allocation_answers import Allocation, AllocationRequest, Outcome, log_keys
from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.errors import (
    CallerNotAllowed,
    Conflict,
    NoCapacity,
    NotFound,
    TaskIdTaken,
)
from podslots.events import publish
from podslots.held_slots import HeldSlots, same_type
from podslots.ids import new_token
from podslots.model import (
    Placement,
    Task,
    TaskStatus,
    pins_a_pod,
    placement_candidates,
    placement_rank,
)
from podslots.observability import count, logger, seconds
from podslots.ports import AllocationStore
from podslots.retry import ATTEMPTS, Backoff
from podslots.store import PoolState, StoreConflict
from podslots.tenancy import matches_any

__all__ = ["Allocation", "AllocationRequest", "Allocator", "Outcome"]  # the handler's names, in one import

CANDIDATE_PODS = 4  # open pods read per attempt: the fullest few, whatever the pool's size
SHORTAGE_SIGNAL_EVERY_S = 60  # at most one CapacityShortage per task per minute
RETRY_AFTER_STARTING_S = 10  # a pod is already starting: capacity is near
RETRY_AFTER_COLD_S = 30
# A pool's allowed_callers, as read by this container, is trusted this long: a narrowing reaches every
# allocation within it, and a warm container reads the pool at most once per pool and period.
CALLERS_MAX_AGE_S = 10


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
        store: AllocationStore,
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
        pool_read = self._admit(request)
        if request.expect_resume:
            return self._held_slots().approval(request)
        owner = request.caller.principal
        task = Task(request.task_id, request.pool, request.task_type, TaskStatus.RUNNING, owner=owner)
        known: Task | None = None  # the task item as last seen; None: assumed not to exist
        races = 0
        for _ in range(ATTEMPTS):  # each attempt reads the open pods again; then a 503
            pins = pins_a_pod(request.task_type)
            candidates = placement_candidates(self.store.open_slots(request.pool, CANDIDATE_PODS), pins)
            if not candidates:  # a roll-out's outdated pods, only when no current pod has room
                candidates = placement_candidates(
                    self.store.open_slots(request.pool, CANDIDATE_PODS, second_choice=True), pins
                )
            if not candidates:
                return self._no_capacity(request, known, pool_read)
            choice = self._choose(candidates, races, pins)
            token = new_token()
            now = int(self.clock.now())
            try:
                self.store.allocate(task, choice.pod, choice.slot, known, now, token=token)
            except StoreConflict as conflict:
                if conflict.failed("task"):
                    current = conflict.found.get("task") or self.store.get_task(request.task_id)
                    if current is not None and current.request_token == token:
                        return self._placed(task, choice, known, now)  # a retry met its own write
                    answer = self._task_exists(request, current, known)
                    if answer is not None:
                        return answer
                    known = current
                    continue  # a re-dispatch (or a task that moved): try again knowing it
                races += 1
                count("AllocationConflictRetry")
                Backoff(self.rng, self.sleep).wait(races)
                continue
            return self._placed(task, choice, known, now)
        raise NoCapacity(
            "every idle slot was taken by a concurrent allocation; try again", retry_after_s=1, contended=True
        )

    def _admit(self, request: AllocationRequest) -> PoolState | None:
        """403 unless the pool's `allowed_callers` (if it has any) names the caller.

        Returns the pool's state when this request read it (the no-capacity path needs it too),
        None when the container's recent read answered, or the pool is not there (the usual paths
        answer that 404).
        """
        state, read_now = self.store.recent_pool_state(request.pool, int(self.clock.now()), CALLERS_MAX_AGE_S)
        callers = state.allowed_callers if state is not None else None
        if callers is not None and not matches_any(callers, request.caller.principal):
            count("CallerNotAllowed")
            logger.info("caller not allowed in pool", extra={"pool": request.pool})
            raise CallerNotAllowed(
                f"pool {request.pool} does not allow this caller to allocate (its allowed_callers)",
                pool=request.pool,
            )
        return state if read_now else None

    def _held_slots(self) -> HeldSlots:
        """The held-slot answers, over this allocator's parts as they are now (a test may swap one)."""
        return HeldSlots(self.store, self.clock, Backoff(self.rng, self.sleep))

    def _placed(self, task: Task, choice: Placement, known: Task | None, now: int) -> Allocation:
        count("AllocationSucceeded")
        if known is not None and known.waiting_since is not None:
            seconds("DispatchWait", max(0, now - known.waiting_since))
        previous = known.previous_slot if known is not None else None
        if previous is not None:
            count("AllocationPlacedAnew")
            logger.info(
                "task placed anew", extra={**log_keys(task, choice.pod.name, choice.slot), "was": previous.slot}
            )
        else:
            logger.info("slot allocated", extra=log_keys(task, choice.pod.name, choice.slot))
        return Allocation(
            task_id=task.task_id,
            pool=task.pool,
            pod=choice.pod.name,
            slot=choice.slot,
            pod_ip=choice.pod.pod_ip,
            outcome=Outcome.PLACED if previous is None else Outcome.PLACED_ANEW,
            previous=previous,
        )

    def _task_exists(self, request: AllocationRequest, current: Task | None, known: Task | None) -> Allocation | None:
        """The task item is there: answer its own slot, refuse, or return None to place it anew.

        Another caller's task is refused before anything else is looked at, so no answer (its pool,
        type, status, slot) says anything about it.
        """
        if current is not None and not request.caller.may_use(current.owner):
            count("TaskIdTaken")
            raise TaskIdTaken(
                f"task id {request.task_id} is taken by another caller's task; dispatch under another id",
                task_id=request.task_id,
            )
        if current is None or current.status.redispatchable:
            if current is not None and current.status is TaskStatus.PENDING:
                same_type(request, current)
            return None
        previous = known.previous_slot if known is not None else None
        if previous is not None and current.status is TaskStatus.RUNNING and current.pool == request.pool:
            # Both this request and another found the slot taken (lost, expired) and the other placed
            # the task first: the answer is that placement's, so neither mistakes it for a resume.
            same_type(request, current)
            return self._held_slots().held(current, Outcome.PLACED_ANEW, previous)
        return self._held_slots().existing(request, current)

    def _choose(self, candidates: list[Placement], races: int, pins: bool) -> Placement:
        """One of the best pods (`placement_rank`), at its first idle slot; after lost races, one of the best few.

        On DynamoDB two transactions on one pod item conflict whatever slot they take, so the
        spread is over pods. The first try picks at random among the pods tied for best (a
        burst into an empty pool spreads at once, and sequential tasks still pack one pod: after
        the first, that pod is the only best); each lost race doubles how many pods it may use.
        """
        firsts: dict[str, Placement] = {}
        for placement in candidates:
            firsts.setdefault(placement.pod.name, placement)
        best = list(firsts.values())
        if races == 0:
            top = placement_rank(best[0].pod, pins)
            best = [p for p in best if placement_rank(p.pod, pins) == top]
            return self.rng.choice(best)
        return self.rng.choice(best[: min(len(best), 2**races)])

    # ---- no open slot ----------------------------------------------------------------------------

    def _no_capacity(self, request: AllocationRequest, known: Task | None, pool_read: PoolState | None) -> Allocation:
        """No open pod: the task's own slot if it holds one, else 404/409, else wait (503).

        The task is looked at first, so a repeat or a resume still finds its slot in a full pool
        or in one being deleted (its pods cordoned). This path costs a few more requests, none
        of which grows with the pool: `Retry-After` comes from the starting pods autoscale keeps
        on the pool's lease item, not from the pod items (a full pool is when tasks retry most).
        """
        current = known if known is not None else self.store.get_task(request.task_id)
        if current is not None:
            answer = self._task_exists(request, current, None)
            if answer is not None:
                return answer
        record = pool_read if pool_read is not None else self.store.pool_state(request.pool)
        if record is None:
            raise NotFound(f"pool {request.pool} does not exist", pool=request.pool)
        if record.deleting:
            raise Conflict(f"pool {request.pool} is being deleted and takes no new tasks", pool=request.pool)
        now = int(self.clock.now())
        waiting = Task(
            request.task_id, request.pool, request.task_type, TaskStatus.PENDING, owner=request.caller.principal
        )
        try:
            signal, since = self.store.record_waiting(waiting, now, SHORTAGE_SIGNAL_EVERY_S)
        except StoreConflict:
            # The task holds a slot (a repeat in a full pool) or ended: answer what it is.
            current = self.store.get_task(request.task_id)
            answer = self._task_exists(request, current, known)
            if answer is not None:
                return answer
            signal, since = False, now
        count("AllocationNoCapacity")
        if signal:
            detail = {"pool": request.pool, "task_id": request.task_id, "waiting": now - since}
            # The wait is recorded: autoscale's schedule sees the demand even if the bus fails.
            publish(self.bus, "CapacityShortage", detail)
        logger.info("no idle slot", extra={"pool": request.pool, "task_id": request.task_id})
        starting = self.store.starting_pods(request.pool) > 0  # one small item, whatever the pool's size
        raise NoCapacity(
            f"no ready pod in pool {request.pool} has an idle slot",
            retry_after_s=RETRY_AFTER_STARTING_S if starting else RETRY_AFTER_COLD_S,
            pool=request.pool,
        )
