"""Policy (c): one pod per task, kept until the task ends (a KEDA ScaledJob, ephemeral runners).

- KEDA polls the queue every 30 s (its default pollingInterval) and creates one Job per waiting
  task; the pod starts after a draw from the shared start-up distribution, then runs the task.
- A plan_and_apply keeps its pod while the plan waits for approval, and runs the apply there;
  after the reservation TTL (24 h) without approval the run is dropped and the pod ends.
- Nothing is ever killed; no cap on concurrent Jobs is modelled. "Scale steps" are Jobs created
  and pods ended.
"""

from __future__ import annotations

import math

from bench.day.common import MIN_PODS, Run, horizon, pool_settings
from bench.day.events import EventLoop
from bench.day.ledger import Ledger
from bench.day.traffic import RESERVATION_TTL_S, StartupDraws, Task, Trace

POLL_S = 30.0


class ScaledJobModel:
    def __init__(self, trace: Trace, seed: int) -> None:
        self.trace = trace
        self.ledger = Ledger(trace.pools, pool_settings().slots_per_pod, MIN_PODS)
        self.loop = EventLoop(self.ledger)
        self.startup = StartupDraws(seed)

    def run(self) -> Ledger:
        for task in self.trace.tasks:
            self.loop.at(task.arrival, self.arrive, task)
        self.loop.run(horizon(self.trace))
        return self.ledger

    def arrive(self, task: Task) -> None:
        self.loop.at(math.ceil(task.arrival / POLL_S) * POLL_S, self.create, Run(task))

    def create(self, run: Run) -> None:
        self.ledger.add(run.task.pool, pods=1)
        self.ledger.scale_up += 1
        self.loop.at(self.loop.now + self.startup.next(), self.start, run)

    def start(self, run: Run) -> None:
        task = run.task
        self.ledger.fate(task.task_id).wait_s = self.loop.now - task.arrival
        self.ledger.add(task.pool, running=1)
        run.phase = "running"
        self.loop.at(self.loop.now + task.run_s, self.finish, run)

    def finish(self, run: Run) -> None:
        task = run.task
        if task.kind == "plan_and_apply" and run.phase == "running":
            run.phase = "reserved"
            self.ledger.add(task.pool, running=-1, reserved=1)
            if task.approval_s is None:
                self.loop.at(self.loop.now + RESERVATION_TTL_S, self.expire, run)
            else:
                self.loop.at(self.loop.now + task.approval_s, self.approve, run)
            return
        run.phase = "done"
        self.ledger.fate(task.task_id).done = True
        self.ledger.add(task.pool, pods=-1, running=-1)
        self.ledger.scale_down += 1

    def approve(self, run: Run) -> None:
        run.phase = "apply"
        self.ledger.add(run.task.pool, running=1, reserved=-1)
        self.loop.at(self.loop.now + run.task.apply_s, self.finish, run)

    def expire(self, run: Run) -> None:
        run.phase = "expired"
        self.ledger.fate(run.task.task_id).expired = True
        self.ledger.add(run.task.pool, pods=-1, reserved=-1)
        self.ledger.scale_down += 1
