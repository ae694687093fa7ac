"""podslots' run split over worker processes, a share of the pools each (`--workers N`).

Why it is the same simulation: podslots' pools share nothing that decides anything. Each pool
has its own items, its own pods and its own per-pool runs of the scheduled steps (the fan-out);
what all pools touch is the table (distinct items) and the dispatcher's list of pools. So pools
0, N, 2N, ... in one process and 1, N+1, ... in another follow the same rules one process of
all pools follows. What differs is the random draws: each worker draws its pods' start-up
times, and the choices among equally good pods, from its own copy of the seeded streams, so a
pool's pods start at other (equally likely) times than in a one-process run, and a run is
reproduced with the same N (the command in RESULTS.md names it). Each worker also has its own
dispatcher (more dispatch invocations, the same per-pool runs) and a table of its own pools' items.

The ledgers are merged exactly: pod-, bound- and pinned-seconds add, each task's fate comes from
the worker that ran its pool, and the per-minute samples add minute by minute.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field, replace
from typing import Any

from bench.day.ledger import Ledger
from bench.day.traffic import Trace


@dataclass
class RunNotes:
    """What is printed after podslots' row: its calls, where the time went, its invocations."""

    calls: int = 0
    sim_wall: dict[str, float] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    progress: list[tuple[float, float, float, int]] = field(default_factory=list)  # h, CPU s, wall s, calls
    workers_cpu_s: float = 0.0  # CPU of worker processes (0: the run was in this process)

    @classmethod
    def of(cls, model: Any) -> RunNotes:
        invocations: dict[str, int] = {}
        for _, function in model.stack.invocations:
            invocations[function] = invocations.get(function, 0) + 1
        return cls(model.calls, dict(model.sim_wall), invocations, list(model.violations), list(model.progress))

    def add(self, other: RunNotes) -> None:
        self.calls += other.calls
        for key, value in other.sim_wall.items():
            self.sim_wall[key] = self.sim_wall.get(key, 0.0) + value
        for key, count in other.invocations.items():
            self.invocations[key] = self.invocations.get(key, 0) + count
        self.violations += other.violations
        if not self.progress:
            self.progress = list(other.progress)
        else:  # the same simulated hours in every worker: CPU and calls add, wall is the longest
            self.progress = [
                (h, cpu + c2, max(wall, w2), n + n2)
                for (h, cpu, wall, n), (_, c2, w2, n2) in zip(self.progress, other.progress, strict=False)
            ]
        self.workers_cpu_s += other.workers_cpu_s


def share(trace: Trace, index: int, workers: int) -> Trace:
    """Pools index, index + workers, ... of the trace, with their tasks."""
    pools = trace.pools[index::workers]
    return replace(trace, pools=pools, tasks=[t for t in trace.tasks if t.pool in set(pools)])


def merge(ledgers: list[Ledger], pools: list[str]) -> Ledger:
    """One ledger of the whole run from the workers' (see the module's docstring)."""
    first = ledgers[0]
    merged = Ledger(pools, first.slots_per_pod, first.floor_pods)
    merged.now = max(ledger.now for ledger in ledgers)
    for ledger in ledgers:
        merged.pod_seconds += ledger.pod_seconds
        merged.bound_seconds += ledger.bound_seconds
        merged.pinned_seconds += ledger.pinned_seconds
        merged.pins_tracked |= ledger.pins_tracked
        merged.scale_up += ledger.scale_up
        merged.scale_down += ledger.scale_down
        merged.fates.update(ledger.fates)
        merged.state.update(ledger.state)
    length = max(len(ledger.samples) for ledger in ledgers)
    for i in range(length):
        rows = [ledger.samples[i] for ledger in ledgers if i < len(ledger.samples)]
        merged.samples.append((rows[0][0], *(sum(row[k] for row in rows) for k in (1, 2, 3))))  # type: ignore[arg-type]
    return merged


def run_split(play: Any, trace: Trace, workers: int) -> tuple[Ledger, RunNotes]:
    """`play(share) -> (Ledger, RunNotes)` in `workers` forked processes, merged."""
    shares = [share(trace, i, workers) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(play, [s for s in shares if s.pools])
    notes = RunNotes()
    for _, part in results:
        notes.add(part)
    return merge([ledger for ledger, _ in results], trace.pools), notes


def timed(play: Any, trace: Trace) -> tuple[Ledger, RunNotes]:
    """Run `play` here and note its CPU, as a worker does for `run_split`."""
    began = time.process_time()
    ledger, notes = play(trace)
    notes.workers_cpu_s = time.process_time() - began
    return ledger, notes
