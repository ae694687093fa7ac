"""Policies (a) and (b): agent pods in a Deployment, its replica count set on podslots' thresholds.

- Scaling: every minute, per pool, podslots' own pure rule (`podslots.scaling.decide`) on the
  same figures (ready + starting pods, running + reserved slots, waiting tasks), so only what a
  scale-down does differs.
- Dispatch: agents pull; a waiting task goes at once to a free slot of a ready pod, the pod
  chosen at random among those with a free slot (independent agents polling), not bin-packed.
- Scale-down victims (the ReplicaSet's ranking): not-ready pods first, newest first; then ready
  pods by how long they have been ready in powers of two (newest bucket first), ties at random
  (Kubernetes breaks them on pod UID). Node co-location and restart counts are not modelled.
- (a) plain agent: a victim dies at once; its running tasks and reserved plans are interrupted.
- (b) graceful agent: a victim terminates, takes no new task, runs what it has (an approval
  that comes in time runs its apply there), exits once idle, and at the end of its grace
  (1 h) whatever still runs or waits for approval is killed. Terminating pods cost pod-hours
  and, as for a ReplicaSet, no longer count as replicas.
- An interrupted task is not retried (its re-run is not in the trace, which favours (a) and (b)).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

from bench.day.common import EVERY_S, Run, horizon, pool_settings
from bench.day.events import EventLoop
from bench.day.ledger import Ledger
from bench.day.traffic import RESERVATION_TTL_S, StartupDraws, Task, Trace
from podslots.scaling import Direction, Load, decide

GRACE_S = 3600.0  # terminationGracePeriodSeconds of the graceful agent


@dataclass(eq=False)
class DPod:
    name: str
    pool: str
    created: float
    slots: list[Run | None]
    ready_since: float | None = None
    terminating: bool = False

    @property
    def busy(self) -> int:
        return sum(r is not None for r in self.slots)


@dataclass
class _Pool:
    name: str
    pods: list[DPod] = field(default_factory=list)
    queue: list[Run] = field(default_factory=list)
    low_since: int | None = None


class DeploymentModel:
    def __init__(self, trace: Trace, graceful: bool, seed: int) -> None:
        self.trace = trace
        self.graceful = graceful
        self.settings = pool_settings(scaling="utilization")  # (a) and (b): the seed's 80/20 rule
        self.ledger = Ledger(trace.pools, self.settings.slots_per_pod, self.settings.min_pods)
        self.loop = EventLoop(self.ledger)
        self.startup = StartupDraws(seed)
        self.rng = random.Random(f"deployment-{seed}")
        self.pools = {name: _Pool(name) for name in trace.pools}
        self.names = itertools.count()

    def run(self) -> Ledger:
        for task in self.trace.tasks:
            self.loop.at(task.arrival, self.arrive, task)
        self.loop.at(0.0, self.autoscale)
        self.loop.run(horizon(self.trace))
        return self.ledger

    # ---- the queue and the agents --------------------------------------------------------------

    def arrive(self, task: Task) -> None:
        pool = self.pools[task.pool]
        pool.queue.append(Run(task))
        self.dispatch(pool)

    def dispatch(self, pool: _Pool) -> None:
        while pool.queue:
            free = [
                (pod, i)
                for pod in pool.pods
                if pod.ready_since is not None and not pod.terminating
                for i, r in enumerate(pod.slots)
                if r is None
            ]
            if not free:
                return
            pod, slot = self.rng.choice(free)
            run = pool.queue.pop(0)
            self.ledger.fate(run.task.task_id).wait_s = self.loop.now - run.task.arrival
            self.start(run, pod, slot, "running", run.task.run_s)

    def start(self, run: Run, pod: DPod, slot: int, phase: str, seconds: float) -> None:
        if run.phase != "reserved":
            self.ledger.add(pod.pool, running=1)
        else:
            self.ledger.add(pod.pool, running=1, reserved=-1)
        pod.slots[slot] = run
        run.pod, run.slot, run.phase = pod, slot, phase
        self.loop.at(self.loop.now + seconds, self.finish, (run, phase))

    def finish(self, arg: tuple[Run, str]) -> None:
        run, phase = arg
        if run.phase != phase:
            return  # killed meanwhile
        task, pod = run.task, run.pod
        assert isinstance(pod, DPod)
        assert run.slot is not None
        if task.kind == "plan_and_apply" and phase == "running":
            run.phase = "reserved"
            self.ledger.add(pod.pool, running=-1, reserved=1)
            if task.approval_s is not None:
                self.loop.at(self.loop.now + task.approval_s, self.approve, run)
            else:
                self.loop.at(self.loop.now + RESERVATION_TTL_S, self.expire, run)
            return
        run.phase = "done"
        self.ledger.fate(task.task_id).done = True
        self.ledger.add(pod.pool, running=-1)
        self.free(pod, run.slot)

    def approve(self, run: Run) -> None:
        if run.phase == "killed":
            self.ledger.fate(run.task.task_id).apply_lost = True  # its plan's pod is gone
            return
        pod = run.pod
        assert run.phase == "reserved"
        assert isinstance(pod, DPod)
        assert run.slot is not None
        self.start(run, pod, run.slot, "apply", run.task.apply_s)

    def expire(self, run: Run) -> None:
        if run.phase != "reserved":
            return
        pod = run.pod
        assert isinstance(pod, DPod)
        assert run.slot is not None
        run.phase = "expired"
        self.ledger.fate(run.task.task_id).expired = True
        self.ledger.add(pod.pool, reserved=-1)
        self.free(pod, run.slot)

    def free(self, pod: DPod, slot: int) -> None:
        pod.slots[slot] = None
        if pod.terminating:
            if pod.busy == 0:
                self.remove(pod)  # the graceful agent exits once idle
            return
        self.dispatch(self.pools[pod.pool])

    # ---- pods ----------------------------------------------------------------------------------

    def create(self, pool: _Pool) -> None:
        pod = DPod(f"{pool.name}-{next(self.names)}", pool.name, self.loop.now, [None] * self.settings.slots_per_pod)
        pool.pods.append(pod)
        self.ledger.add(pool.name, pods=1)
        self.loop.at(self.loop.now + self.startup.next(), self.ready, pod)

    def ready(self, pod: DPod) -> None:
        if pod in self.pools[pod.pool].pods and not pod.terminating:
            pod.ready_since = self.loop.now
            self.dispatch(self.pools[pod.pool])

    def kill(self, pod: DPod) -> None:
        """The pod goes with whatever it holds."""
        for i, run in enumerate(pod.slots):
            if run is None:
                continue
            fate = self.ledger.fate(run.task.task_id)
            if run.phase == "reserved":
                fate.interrupted = "reserved"
                self.ledger.add(pod.pool, reserved=-1)
            else:
                fate.interrupted = "running"
                self.ledger.add(pod.pool, running=-1)
            run.phase = "killed"
            pod.slots[i] = None
        self.remove(pod)

    def remove(self, pod: DPod) -> None:
        pool = self.pools[pod.pool]
        if pod in pool.pods:
            pool.pods.remove(pod)
            self.ledger.add(pod.pool, pods=-1)

    def grace_ends(self, pod: DPod) -> None:
        if pod in self.pools[pod.pool].pods:
            self.kill(pod)

    # ---- the replica count ---------------------------------------------------------------------

    every_s = EVERY_S  # how often the replica count is set

    def autoscale(self, _: object = None) -> None:
        now = self.loop.now
        for pool in self.pools.values():
            self.scale(pool, int(now))
        self.loop.at(now + self.every_s, self.autoscale)

    def scale(self, pool: _Pool, now: int) -> None:
        replicas = [p for p in pool.pods if not p.terminating]
        spp = self.settings.slots_per_pod
        load = Load(len(replicas), len(replicas) * spp, sum(p.busy for p in replicas), len(pool.queue))
        decision = decide(load, self.settings, pool.low_since, now)
        pool.low_since = decision.low_since
        if decision.direction is Direction.UP:
            for _ in range(decision.delta(load)):
                self.create(pool)
            self.ledger.scale_up += 1
        elif decision.direction is Direction.DOWN:
            self.scale_down(replicas, -decision.delta(load))
            pool.low_since = now

    def scale_down(self, replicas: list[DPod], count: int) -> None:
        """The ReplicaSet removes `count` pods of its own choosing."""
        for pod in self.victims(replicas, count):
            self.scale_down_pod(pod)
        self.ledger.scale_down += 1

    def victims(self, replicas: list[DPod], count: int) -> list[DPod]:
        now = self.loop.now

        def rank(pod: DPod) -> tuple[int, float, float]:
            if pod.ready_since is None:
                return (0, -pod.created, 0.0)
            bucket = math.floor(math.log2(max(1.0, now - pod.ready_since)))
            return (1, bucket, self.rng.random())

        return sorted(replicas, key=rank)[:count]

    def scale_down_pod(self, pod: DPod) -> None:
        if not self.graceful or pod.busy == 0:
            self.kill(pod)
            return
        pod.terminating = True
        self.loop.at(self.loop.now + GRACE_S, self.grace_ends, pod)
