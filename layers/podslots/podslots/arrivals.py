"""Autoscale's pre-warm reads and its hourly fold (`prewarm: true`; the rule itself is `prewarm.py`).

A pool that does not pre-warm reads nothing more. One that does reads its one arrivals item each
run, and the first run of an hour folds the pods' placement counters into it: once an hour, never
a quiet minute's write (docs/architecture.md, "Pre-warm").
"""

from __future__ import annotations

from dataclasses import replace

from podslots import prewarm
from podslots.model import Pod
from podslots.ports import AutoscaleStore
from podslots.scaling import Load
from podslots.store import RegisteredPool


def foreseen(store: AutoscaleStore, pool: RegisteredPool, now: int) -> tuple[int, bool]:
    """Reads only: the idle slots the pool's history expects the next 15 minutes to need, and
    whether the hour's fold is due (a write: the run is not quiet)."""
    if not pool.settings.prewarm:
        return 0, False
    history = store.arrivals(pool.name)
    return prewarm.prewarm_slots(history, now), prewarm.due(history, now)


def learn(store: AutoscaleStore, pool: RegisteredPool, load: Load, pods: list[Pod], now: int) -> Load:
    """Under the lease: fold the pods' placement counters into the pool's history on the first run
    of an hour, and count the pre-warm slots it expects."""
    if not pool.settings.prewarm:
        return load
    read = history = store.arrivals(pool.name)
    if prewarm.due(read, now):
        history = prewarm.fold(read, {p.name: p.placed for p in pods}, now)
        if not store.save_arrivals(pool.name, history, read):
            history = store.arrivals(pool.name)  # another run folded first: its fold stands
    return replace(load, prewarm=prewarm.prewarm_slots(history, now))
