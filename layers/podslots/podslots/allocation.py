"""Allocate on dispatch: give a task a slot, give it back its own slot, or say there is none.

The slot life cycle (docs/architecture.md, "Life cycle"): dispatch finds an idle slot
(`idle -> running`); a `plan_and_apply` whose plan waits for approval comes back for its apply and
gets the slot it had (`reserved -> running`), on the pod that holds the plan's working directory.

Every answer says what happened (`Outcome`): a 200 only ever names the slot the task already held
(resumed or repeated); a task podslots took a slot from (lost, expired) is placed anew with a 201
that names the slot it had and why it ended. A task seen reserved is only ever answered with its own
slot, or with a refusal: never with another slot.

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
from dataclasses import dataclass
from enum import StrEnum

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.errors import (
    CallerNotAllowed,
    Conflict,
    NoCapacity,
    NotFound,
    ReservationGone,
    ResumeContended,
    TaskIdTaken,
)
from podslots.events import Events
from podslots.model import (
    EndedSlot,
    Placement,
    Task,
    TaskStatus,
    TaskType,
    pins_a_pod,
    placement_candidates,
    placement_rank,
)
from podslots.observability import count, logger, seconds
from podslots.store import PoolState, SlotStore, StoreConflict, new_token
from podslots.tenancy import ANONYMOUS, Caller, matches_any

MAX_ATTEMPTS = 10  # slot races lost before answering 503 (each attempt reads the open pods again)
CANDIDATE_PODS = 4  # open pods read per attempt: the fullest few, whatever the pool's size
BACKOFF_BASE_S = 0.01  # after a lost race: a jittered wait, doubling, before reading again
BACKOFF_CAP_S = 0.2
SHORTAGE_SIGNAL_EVERY_S = 60  # at most one CapacityShortage per task per minute
RETRY_AFTER_STARTING_S = 10  # a pod is already starting: capacity is near
RETRY_AFTER_COLD_S = 30
RESUME_ATTEMPTS = 8  # a resume met by transient faults is tried again, as a resume, this many times
RESUME_GONE = "reserved slot gone"  # why a task seen reserved is lost when its slot is not there
# A pool's allowed_callers, as read by this container, is trusted this long: a narrowing reaches every
# allocation within it, and a warm container reads the pool at most once per pool and period.
CALLERS_MAX_AGE_S = 10


class Outcome(StrEnum):
    """What an allocation did, in the answer's `outcome`."""

    PLACED = "placed"  # 201: the task's first slot (or its first since a wait)
    PLACED_ANEW = "placed_anew"  # 201: podslots had taken its slot (lost, expired); this is another
    RESUMED = "resumed"  # 200: its reserved slot runs again, by this request's write
    REPEATED = "repeated"  # 200: it already held this slot running (a repeat, or a concurrent approval)

    @property
    def created(self) -> bool:
        return self in (Outcome.PLACED, Outcome.PLACED_ANEW)


@dataclass(frozen=True)
class AllocationRequest:
    pool: str
    task_id: str
    task_type: TaskType
    expect_resume: bool = False  # an approval: a reservation that is gone is refused, not replaced
    caller: Caller = ANONYMOUS  # who asks: the task's owner once placed, and who may touch it


@dataclass(frozen=True)
class Allocation:
    task_id: str
    pool: str
    pod: str
    slot: str
    pod_ip: str | None
    outcome: Outcome
    previous: EndedSlot | None = None  # placed anew: the slot it had, and why that ended

    @property
    def created(self) -> bool:
        """A new allocation (201) rather than the task's existing slot (200)."""
        return self.outcome.created


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
        pool_read = self._admit(request)
        if request.expect_resume:
            return self._approval(request)
        owner = request.caller.principal
        task = Task(request.task_id, request.pool, request.task_type, TaskStatus.RUNNING, owner=owner)
        known: Task | None = None  # the task item as last seen; None: assumed not to exist
        races = 0
        for _ in range(MAX_ATTEMPTS):
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
                self._back_off(races)
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

    def _back_off(self, tries: int) -> None:
        self.sleep(self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**tries)))

    def _placed(self, task: Task, choice: Placement, known: Task | None, now: int) -> Allocation:
        count("AllocationSucceeded")
        if known is not None and known.waiting_since is not None:
            seconds("DispatchWait", max(0, now - known.waiting_since))
        previous = known.previous_slot if known is not None else None
        if previous is not None:
            count("AllocationPlacedAnew")
            logger.info("task placed anew", extra={**_keys(task, choice.pod.name, choice.slot), "was": previous.slot})
        else:
            logger.info("slot allocated", extra=_keys(task, choice.pod.name, choice.slot))
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
                self._same_type(request, current)
            return None
        previous = known.previous_slot if known is not None else None
        if previous is not None and current.status is TaskStatus.RUNNING and current.pool == request.pool:
            # Both this request and another found the slot taken (lost, expired) and the other placed
            # the task first: the answer is that placement's, so neither mistakes it for a resume.
            self._same_type(request, current)
            return self._held(current, Outcome.PLACED_ANEW, previous)
        return self._existing(request, current)

    # ---- the task already holds a slot (or ended) --------------------------------------------

    def _approval(self, request: AllocationRequest) -> Allocation:
        """`expect: resume`: the task's reserved (or already resumed) slot, or `reservation_gone`.

        Read first, because a blind placement would be the one answer an approval must never get.
        """
        current = self._own(request, self.store.get_task(request.task_id))
        if current is None:  # unknown, or another caller's: the same answer
            raise _unknown_task(request.task_id)
        if current.status.redispatchable:
            raise _reservation_gone(current)
        return self._existing(request, current)

    def _existing(self, request: AllocationRequest, task: Task) -> Allocation:
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
        if task.status is TaskStatus.APPLY_PENDING:
            return self._resume(request, task)  # the approval came
        return self._held(task, Outcome.REPEATED)

    def _resume(self, request: AllocationRequest, task: Task) -> Allocation:
        """The apply resumes in the slot the plan kept reserved, or the answer says why it cannot.

        A transient failure (a conflict, throttling, an unanswered write) is retried as a resume,
        with jittered backoff; a write of ours whose answer was lost is recognised by its token. A
        task that moved meanwhile is answered as it is now, never by placing it elsewhere.
        """
        for attempt in range(RESUME_ATTEMPTS):
            token = new_token()
            try:
                self.store.resume(task, int(self.clock.now()), token=token)
            except StoreConflict as conflict:
                current = self._own(request, self.store.get_task(task.task_id))
                if current is not None and current.request_token == token:
                    break  # our own write; its answer was lost
                if not _same_reservation(task, current):
                    return self._after_resume(request, task, current)
                if conflict.failed("slot") and self._slot_gone(task):
                    self._lose(task)
                    continue  # the next try finds the task lost (or moved) and answers that
                count("ResumeConflictRetry")
                self._back_off(attempt + 1)
                continue
            break
        else:
            raise ResumeContended(
                f"task {task.task_id}: the resume of its reserved slot {task.pod}/{task.slot} kept meeting "
                "concurrent writes; nothing moved, try again",
                task_id=task.task_id,
                pod=task.pod,
                slot=task.slot,
                retry_after_s=1,
            )
        count("AllocationResumed")
        logger.info("apply resumed on its reserved slot", extra=_keys(task, task.pod or "", task.slot or ""))
        return self._held(task, Outcome.RESUMED)

    def _after_resume(self, request: AllocationRequest, seen: Task, current: Task | None) -> Allocation:
        """The task moved while we resumed it: its own slot if it runs there, else why not."""
        if current is None:
            raise _unknown_task(seen.task_id)
        if current.status is TaskStatus.RUNNING and (current.pod, current.slot) == (seen.pod, seen.slot):
            return self._held(current, Outcome.REPEATED)  # a concurrent approval resumed it
        if current.status.redispatchable:  # lost, expired (or waiting since): the reservation is gone
            raise _reservation_gone(current)
        if current.status.is_end:
            return self._existing(request, current)  # 409: already ended
        raise ReservationGone(
            f"task {seen.task_id}: its reservation on {seen.pod}/{seen.slot} is gone; "
            f"it was placed again on {current.pod}/{current.slot} ({current.status.value})",
            task_id=seen.task_id,
            task_status=current.status.value,
            pod=current.pod,
            slot=current.slot,
            previous={"pod": seen.pod, "slot": seen.slot, "status": None, "reason": None},
        )

    @staticmethod
    def _own(request: AllocationRequest, task: Task | None) -> Task | None:
        """The task as this caller may see it: another caller's task is no task at all."""
        return task if task is not None and request.caller.may_use(task.owner) else None

    def _slot_gone(self, task: Task) -> bool:
        """Is the reserved slot really gone: no pod item, no such slot, or a slot that names another
        task or none? (A slot that still names the task is never given up on: a task is only made
        lost while no slot names it.)"""
        assert task.pod and task.slot
        pod = self.store.get_pod(task.pool, task.pod)
        slot = pod.slots.get(task.slot) if pod is not None else None
        return slot is None or slot.task_id != task.task_id

    def _lose(self, task: Task) -> None:
        """The task's reserved slot is gone while its item still says reserved: it is lost, said so."""
        assert task.pod and task.slot
        ended = EndedSlot(task.pod, task.slot, TaskStatus.LOST, RESUME_GONE)
        try:
            self.store.close_without_slot(task, TaskStatus.LOST, int(self.clock.now()), ended=ended)
        except StoreConflict:
            return  # it moved: the next try reads what it became
        count("TasksLost")
        logger.warning("reserved slot gone; task lost", extra=_keys(task, task.pod, task.slot))

    def _held(self, task: Task, outcome: Outcome, previous: EndedSlot | None = None) -> Allocation:
        """The slot the task holds now, as the answer names it."""
        assert task.pod and task.slot
        pod_ip = task.pod_ip
        if pod_ip is None:  # the pod had not reported its IP when the slot was given: look again
            pod = self.store.get_pod(task.pool, task.pod)
            pod_ip = pod.pod_ip if pod else None
        return Allocation(
            task_id=task.task_id,
            pool=task.pool,
            pod=task.pod,
            slot=task.slot,
            pod_ip=pod_ip,
            outcome=outcome,
            previous=previous,
        )

    @staticmethod
    def _same_type(request: AllocationRequest, task: Task) -> None:
        if task.task_type is not request.task_type:
            raise Conflict(
                f"task {task.task_id} was dispatched as {task.task_type.value}, not {request.task_type.value}",
                task_id=task.task_id,
                task_type=task.task_type.value,
            )

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
            Events(self.store, self.bus).publish("CapacityShortage", detail)
        logger.info("no idle slot", extra={"pool": request.pool, "task_id": request.task_id})
        starting = self.store.starting_pods(request.pool) > 0  # one small item, whatever the pool's size
        raise NoCapacity(
            f"no ready pod in pool {request.pool} has an idle slot",
            retry_after_s=RETRY_AFTER_STARTING_S if starting else RETRY_AFTER_COLD_S,
            pool=request.pool,
        )


def _keys(task: Task, pod: str, slot: str) -> dict[str, str]:
    return {"pool": task.pool, "pod": pod, "slot": slot, "task_id": task.task_id}


def _same_reservation(seen: Task, current: Task | None) -> bool:
    return (
        current is not None
        and current.status is TaskStatus.APPLY_PENDING
        and (current.pod, current.slot) == (seen.pod, seen.slot)
    )


def _reservation_gone(task: Task) -> ReservationGone:
    """The refusal of an approval whose reservation is gone, naming what happened to the task."""
    previous = task.previous_slot
    if previous is not None:
        why = f" ({previous.reason})" if previous.reason else ""
        message = (
            f"task {task.task_id}: its reservation on {previous.pod}/{previous.slot} is gone, "
            f"the task is {previous.status.value}{why}"
        )
        if task.status is not previous.status:
            message += f" and now {task.status.value}"
    else:
        message = f"task {task.task_id} holds no reservation (it is {task.status.value})"
    return ReservationGone(
        message,
        task_id=task.task_id,
        task_status=task.status.value,
        previous=_previous_doc(previous),
    )


def _previous_doc(previous: EndedSlot | None) -> dict[str, str | None] | None:
    if previous is None:
        return None
    return {"pod": previous.pod, "slot": previous.slot, "status": previous.status.value, "reason": previous.reason}


def _unknown_task(task_id: str) -> ReservationGone:
    """An approval for a task podslots does not know: there is nothing to resume."""
    return ReservationGone(
        f"task {task_id} is unknown: there is no reservation to resume",
        task_id=task_id,
        task_status=None,
        previous=None,
    )
