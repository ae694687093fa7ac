"""Policy (d): podslots itself, its real handlers on the embedded stack (moto, the Kubernetes API
stand-in), driven through the API on a virtual clock.

- The queue dispatches each task through `POST /pools/{pool}/allocations`, and on a 503 asks
  again after the answer's `Retry-After`; it reports `apply_pending` when a plan_and_apply's plan
  ends, dispatches again on approval (the resume), and reports the end status.
- The agents: a created pod turns Running after its start-up draw and beats at once (which
  registers it), then every `beat_s` with the tasks it holds; a 410 makes it stop.
- Reconcile, autoscale and expire run on the template's schedules; bus events reach the
  functions whose rules match (a CapacityShortage wakes autoscale), as the stack does.
- The clock jumps from one event to the next (an arrival, a task's end, an approval, a retry, a
  pod start, a beat, a schedule), never by a fixed tick.
- Pod-hours are the stand-in's pods (starting, running, deleting); slots are the agents' truth.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.day.common import Run, horizon, pool_settings
from bench.day.ledger import Ledger
from bench.day.sim_expressions import parsed_once
from bench.day.sim_stack import SimStack
from bench.day.sim_table import keyed_queries, scoped_transactions
from bench.day.sim_wire import direct_answers
from bench.day.traffic import HOUR, StartupDraws, Trace
from local.stack import NAMESPACE, Stack

MONDAY = 1_799_625_600.0  # 2027-01-11 00:00 UTC: the trace's day 0 is a Monday, and so is the clock's
BEAT_S = 60.0  # agents beat every minute: well inside heartbeat_timeout_s (120 s), half the calls of 30 s
POOL_LABEL = "podslots.io/pool"


@dataclass(eq=False)
class _Agent:
    pod: str
    pool: str
    ready_at: float
    running: bool = False
    next_beat: float = math.inf
    ip: str = ""


class PodslotsModel:
    def __init__(
        self,
        trace: Trace,
        seed: int,
        beat_s: float = BEAT_S,
        progress_every_h: float = 6.0,
        settings: dict[str, object] | None = None,
        keyed_queries: bool = True,
        direct_answers: bool = True,
        parsed_once: bool = True,
        queues_in_process: bool = True,
        placement: str | None = None,
        history: Trace | None = None,
    ) -> None:
        self.trace = trace
        self.seed = seed
        self.history = history  # prewarm: a week the pools are taken to have learned before the run
        self.keyed_queries = keyed_queries  # False: moto's Query and transactions as they are (sim_table)
        self.direct_answers = direct_answers  # False: moto's own serializer for DynamoDB's answers
        self.parsed_once = parsed_once  # False: moto parses every request's expressions (sim_expressions)
        self.queues_in_process = queues_in_process  # False: the fan-out through moto's SQS (sim_stack)
        self.placement = placement  # one of PLACEMENTS: placement other than podslots' own (None: its own)
        self.progress_every_s = progress_every_h * 3600
        self.progress: list[tuple[float, float, float, int]] = []  # simulated h, CPU s, wall s, API calls
        self.beat_s = beat_s
        self.settings = pool_settings(**(settings or {}))  # podslots' defaults, or a variant's changes
        self.ledger = Ledger(trace.pools, self.settings.slots_per_pod, self.settings.min_pods)
        self.startup = StartupDraws(seed)
        self.runs = {t.task_id: Run(t) for t in trace.tasks}
        self.active: set[Run] = set()  # the runs that hold a slot (a few dozen, not the whole trace)
        self.agents: dict[str, _Agent] = {}
        self.gone: set[str] = set()
        self.heap: list[tuple[float, int, Callable[[Run], None], Run]] = []
        self.order = itertools.count()
        self.now = 0.0
        self.violations: list[str] = []
        self.calls = 0
        self.sim_wall: dict[str, float] = {}

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> Ledger:
        warnings.filterwarnings("ignore", "No application metrics to publish")
        from podslots.clock import ManualClock  # after the stack's environment is set

        self.t0 = T0 = MONDAY + self.trace.start_hour * HOUR  # the clock at the start of the run
        clock = ManualClock(start=T0)
        end = horizon(self.trace)
        for run in self.runs.values():
            self.at(run.task.arrival, self.dispatch, run)
        with (
            keyed_queries() if self.keyed_queries else nullcontext(),
            scoped_transactions() if self.keyed_queries else nullcontext(),
            direct_answers() if self.direct_answers else nullcontext(),
            parsed_once() if self.parsed_once else nullcontext(),
            SimStack(clock, self.queues_in_process, seed=self.seed) as stack,
            placement_swapped(self.placement) if self.placement else nullcontext(),  # after the stack's environment
        ):
            self.stack = stack
            stack.on_event.append(self.watch)
            body = self.settings.model_dump(mode="json", exclude_none=True)
            for pool in self.trace.pools:
                self.call("PUT", "/pools/{pool}", body, pool=pool)
                if self.history is not None:
                    self.learned(pool, self.history, int(T0))
            self.began = (time.process_time(), time.perf_counter())
            while (t := self.next_time(stack)) <= end:
                self.note_progress(t)
                self.ledger.advance(t)
                self.now = t
                clock.set(self.t0 + t)
                self.step(stack)
            self.ledger.advance(end)
            queues = stack.step_queues
            if queues.dead_letters or queues.expired:
                self.violations.append(
                    f"step runs lost: {len(queues.dead_letters)} dead-lettered, {queues.expired} past retention"
                )
        return self.ledger

    @staticmethod
    def learned(pool: str, week: Trace, now: int) -> None:
        """The pool's arrivals item as a week of `week`'s traffic leaves it (each hour of the week seen
        once): the history a pre-warming pool has after a week in service. Written through the store,
        as autoscale's fold writes it; the counting itself is tested through the handlers."""
        from podslots.prewarm import HOURS_A_WEEK, Arrivals, epoch_hour, hour_of_week
        from podslots.store import SlotStore

        counts = [0.0] * HOURS_A_WEEK
        start = epoch_hour(int(MONDAY)) + week.start_hour
        for task in week.tasks:
            if task.pool == pool:
                counts[hour_of_week(start + int(task.arrival // HOUR))] += 1
        SlotStore().save_arrivals(pool, Arrivals(epoch_hour(now), tuple(counts), {}), None)

    def note_progress(self, t: float) -> None:
        """The cost so far, every `progress_every_h` of simulated time: how it grows with the run."""
        if not self.progress_every_s or t < (len(self.progress) + 1) * self.progress_every_s:
            return
        cpu, wall = time.process_time() - self.began[0], time.perf_counter() - self.began[1]
        self.progress.append((t / 3600, cpu, wall, self.calls))
        print(
            f"    podslots at {t / 3600:6.1f} h simulated: {cpu:7.1f} s CPU, {wall:7.1f} s wall, {self.calls} calls",
            flush=True,
        )

    def next_time(self, stack: Stack) -> float:
        candidates = [s.next_at - self.t0 for s in stack.schedules]
        if self.heap:
            candidates.append(self.heap[0][0])
        for agent in self.agents.values():
            candidates.append(agent.next_beat if agent.running else agent.ready_at)
        return max(self.now, min(candidates))

    def step(self, stack: Stack) -> None:
        for agent in list(self.agents.values()):
            if not agent.running and agent.ready_at <= self.now:
                self.start_pod(agent)
            elif agent.running and agent.next_beat <= self.now:
                self.beat(agent)
        while self.heap and self.heap[0][0] <= self.now:
            _, _, handler, run = heapq.heappop(self.heap)
            handler(run)
        stack.run_due_schedules()
        self.sync()

    def at(self, t: float, handler: Callable[[Run], None], run: Run) -> None:
        heapq.heappush(self.heap, (max(t, self.now), next(self.order), handler, run))

    def call(self, method: str, resource: str, body: Any = None, **path: str) -> Any:
        self.calls += 1
        began = time.perf_counter()
        answer = self.stack.call(method, resource, body, **path)
        self.sim_wall[method + " " + resource] = self.sim_wall.get(method + " " + resource, 0.0) + (
            time.perf_counter() - began
        )
        return answer

    # ---- the queue ---------------------------------------------------------------------------

    def dispatch(self, run: Run) -> None:
        task = run.task
        answer = self.call(
            "POST", "/pools/{pool}/allocations", {"task_id": task.task_id, "task_type": task.kind}, pool=task.pool
        )
        if answer.status == 503:
            self.at(self.now + float(answer.headers.get("Retry-After", "10")), self.dispatch, run)
            return
        if answer.status not in (200, 201):
            self.violations.append(f"dispatch of {task.task_id}: {answer.status} {answer.body}")
            return
        run.pod, run.slot, run.phase = answer.body["pod"], answer.body["slot"], "running"
        self.active.add(run)
        self.ledger.fate(task.task_id).wait_s = self.now - task.arrival
        self.at(self.now + task.run_s, self.finish, run)

    def finish(self, run: Run) -> None:
        if run.phase not in ("running", "apply"):
            return  # lost meanwhile
        task = run.task
        if task.kind == "plan_and_apply" and run.phase == "running":
            if self.report(run, "apply_pending"):
                run.phase = "reserved"
                if task.approval_s is not None:
                    self.at(self.now + task.approval_s, self.approve, run)
            return
        if self.report(run, "applied" if task.kind == "plan_and_apply" else "success"):
            run.phase = "done"
            self.ledger.fate(task.task_id).done = True

    def approve(self, run: Run) -> None:
        task = run.task
        if run.phase != "reserved":
            self.ledger.fate(task.task_id).apply_lost = True  # its plan's pod or slot is gone
            return
        answer = self.call(
            "POST", "/pools/{pool}/allocations", {"task_id": task.task_id, "task_type": task.kind}, pool=task.pool
        )
        if answer.status == 200 and (answer.body["pod"], answer.body["slot"]) == (run.pod, run.slot):
            run.phase = "apply"
            self.at(self.now + task.apply_s, self.finish, run)
            return
        self.ledger.fate(task.task_id).apply_lost = True
        self.violations.append(f"apply of {task.task_id} not resumed on its plan's slot: {answer.status}")
        if answer.status in (200, 201):
            run.phase = "killed"
            self.call("PUT", "/tasks/{task_id}/status", {"status": "failed"}, task_id=task.task_id)

    def report(self, run: Run, status: str) -> bool:
        answer = self.call("PUT", "/tasks/{task_id}/status", {"status": status}, task_id=run.task.task_id)
        if answer.status != 200:
            self.violations.append(f"status {status} of {run.task.task_id}: {answer.status} {answer.body}")
        return bool(answer.status == 200)

    # ---- the agents ----------------------------------------------------------------------------

    def start_pod(self, agent: _Agent) -> None:
        self.stack.kube.set_phase(NAMESPACE, agent.pod, "Running")
        agent.ip = f"10.42.{len(self.agents) // 250 % 250}.{len(self.agents) % 250 + 2}"
        self.stack.kube.set_pod_ip(NAMESPACE, agent.pod, agent.ip)
        agent.running = True
        self.beat(agent)

    def beat(self, agent: _Agent) -> None:
        held = [r.task.task_id for r in self.active if r.pod == agent.pod and r.holds_slot]
        answer = self.call(
            "POST",
            "/pools/{pool}/pods/{pod}/heartbeat",
            {"held_tasks": held, "pod_ip": agent.ip},
            pool=agent.pool,
            pod=agent.pod,
        )
        agent.next_beat = math.inf if answer.status == 410 else self.now + self.beat_s

    # ---- what happened -------------------------------------------------------------------------

    def sync(self) -> None:
        """New pods get their start-up draw; a pod gone takes what it held; counts go to the ledger."""
        pods: dict[str, int] = dict.fromkeys(self.trace.pools, 0)
        live = set()
        for meta in self.stack.kube.pod_metadata(NAMESPACE):
            name, pool = meta["name"], meta["labels"][POOL_LABEL]
            live.add(name)
            pods[pool] += 1
            if name not in self.agents:
                created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")).timestamp() - self.t0
                self.agents[name] = _Agent(name, pool, created + self.startup.next())
        for name in set(self.agents) - live:
            del self.agents[name]
            self.gone.add(name)
        running: dict[str, int] = dict.fromkeys(self.trace.pools, 0)
        reserved: dict[str, int] = dict.fromkeys(self.trace.pools, 0)
        pinned: dict[str, set[object]] = {pool: set() for pool in self.trace.pools}
        for run in list(self.active):
            if not run.holds_slot:
                self.active.discard(run)
                continue
            if run.pod in self.gone:
                self.interrupt(run)
                continue
            (reserved if run.phase == "reserved" else running)[run.task.pool] += 1
            if run.phase == "reserved":
                pinned[run.task.pool].add(run.pod)
        for pool in self.trace.pools:
            self.ledger.set(pool, pods[pool], running[pool], reserved[pool], len(pinned[pool]))

    def interrupt(self, run: Run) -> None:
        fate = self.ledger.fate(run.task.task_id)
        fate.interrupted = "reserved" if run.phase == "reserved" else "running"
        run.phase = "killed"

    def watch(self, event: dict[str, Any]) -> None:
        kind, detail = event["detail-type"], event["detail"]
        if kind == "PoolScaled":
            if detail["direction"] == "up":
                self.ledger.scale_up += 1
            elif detail["direction"] == "down":
                self.ledger.scale_down += 1
        elif kind == "ReservationExpired":
            run = self.runs[detail["task_id"]]
            if run.phase == "reserved":
                run.phase = "expired"
                self.ledger.fate(run.task.task_id).expired = True
        elif kind == "TaskLost":
            run = self.runs[detail["task_id"]]
            self.violations.append(f"TaskLost {detail}")
            if run.holds_slot:
                self.interrupt(run)


def _by_fullness(pod: Any, pins: bool) -> tuple[Any, ...]:
    """Placement as it was before issue 19: the fullest pod first whatever the task."""
    return (False, False, len(pod.idle_slot_keys()))


def _oldest_pin_first(pod: Any, pins: bool) -> tuple[Any, ...]:
    """An experiment for seed 2's pinning: a pinning task prefers, among the pinned pods, the one
    pinned longest (its reservation likely one that lasts: new pins there cost least), then the
    fullest; every other rule as today's."""
    from podslots import model

    partly_used, mismatch, idle = AWARE_RANK[0](pod, pins)
    pinned_since = [s.since for s in pod.slots.values() if s.since is not None and model.pins(s)]
    return (partly_used, mismatch, min(pinned_since, default=math.inf) if pins else 0, idle)


AWARE_RANK: list[Any] = []
PLACEMENTS = {"fullness": _by_fullness, "oldest-pin": _oldest_pin_first}


@contextmanager
def placement_swapped(name: str) -> Iterator[None]:
    """podslots' placement rank swapped for one of `PLACEMENTS` within the block (the simulation
    only): `fullness` for the before/after of reservation-aware placement, `oldest-pin` an experiment."""
    import podslots.allocation
    import podslots.model

    aware = podslots.model.placement_rank
    AWARE_RANK[:] = [aware]
    modules = (podslots.model, podslots.allocation)  # allocation imported the name: both are swapped
    for module in modules:
        setattr(module, "placement_rank", PLACEMENTS[name])  # noqa: B010
    try:
        yield
    finally:
        for module in modules:
            setattr(module, "placement_rank", aware)  # noqa: B010
