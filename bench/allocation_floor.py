"""Allocation at the floor: latency next to the bare requests it is made of, reads flat in the
pool's size, and a burst of 32 threads into one pool (throughput, conflict retries, double bookings),
also with the table's faults injected.

Against moto's HTTP server on loopback, whose dispatcher is serialized on purpose
(local/moto_server.py): moto checks a condition and applies the update in separate steps, so
without the lock two concurrent conditional writes could both succeed there, which DynamoDB never
allows. The lock stays; the threads still race to be served and interleave between requests. So
the absolute figures are this machine's and moto's, not DynamoDB's; the ratios against the bare
requests, measured in the same run on the same server, are the portable part.

    make bench                  # or: .venv/bin/python -m bench.allocation_floor
    .venv/bin/python -m bench.allocation_floor --timed 30 --tasks 300 --pods 110   # the bigger run
"""

from __future__ import annotations

import os

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PodSlots")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

import argparse
import math
import time

from bench import bare_allocation
from bench.burst import BurstResult, bare_burst, burst, seed_bare_pools
from bench.floor_support import CountingWindow, ServerCounts, make_table, median, per_call, percentile
from local.moto_server import MotoServer, moto_server
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.model import TaskStatus, TaskType
from podslots.observability import metrics
from podslots.store import SlotStore
from podslots.tasks import TaskStatusService
from tests.support.pods import given_idle_ready_pods_in_bulk

TABLE = "podslots-bench-floor"
SIZES = (10, 100, 1000)
CHAOS = {Fault.TRANSACTION_CONFLICT: 0.05, Fault.THROTTLE: 0.02, Fault.ANSWER_LOST: 0.02}


def latency(server: MotoServer, store: SlotStore, timed: int) -> None:
    """(a) Per new allocation, podslots against the bare Query + TransactWriteItems, at each size.

    Each round times one podslots allocation and one bare one (in alternating order), then frees
    both slots untimed, so every round starts from the same pool.
    """
    clock = ManualClock()
    allocator = Allocator(store, RecordingPublisher(), clock)
    tasks = TaskStatusService(store, clock)
    window = CountingWindow(server)
    print(f"(a) time per new allocation, median of {timed}; requests, items and bytes read per allocation")
    print(
        f"{'pods':>6} {'bare ms':>8} {'podslots ms':>12} {'ratio':>6}   {'requests (podslots)':38} {'items':>5} {'bytes':>6}   bare"
    )
    for pods in SIZES:
        pool, table = f"floor{pods}", f"{TABLE}-a{pods}"
        client = make_table(server, table)
        given_idle_ready_pods_in_bulk(None, store, pool, pods, now=1)
        for warm in ("warm-a", "warm-b"):  # connections open, code paths loaded
            allocator.allocate(AllocationRequest(pool, f"{pool}-{warm}", TaskType.PLAN))
            tasks.set_status(f"{pool}-{warm}", TaskStatus.SUCCESS)
        ours: list[float] = []
        bare: list[float] = []
        our_counts, bare_counts = ServerCounts(), ServerCounts()
        for i in range(timed):
            ours_first = i % 2 == 0
            for turn in (0, 1):
                mine = (turn == 0) == ours_first
                task_id = f"{pool}-{'ours' if mine else 'bare'}-{i}"
                window.open()
                began = time.perf_counter()
                if mine:
                    allocator.allocate(AllocationRequest(pool, task_id, TaskType.PLAN))
                else:
                    bare_allocation.allocate(client, table, pool, task_id, int(clock.now()))
                elapsed = time.perf_counter() - began
                window.close(our_counts if mine else bare_counts)
                (ours if mine else bare).append(elapsed)
                tasks.set_status(task_id, TaskStatus.SUCCESS)
            metrics.clear_metrics()  # Powertools would print its EMF buffer every 100 values
        o, b = median(ours), median(bare)
        print(
            f"{pods:6d} {b * 1000:8.2f} {o * 1000:12.2f} {o / b:6.2f}   {per_call(our_counts.requests, timed):38}"
            f" {sum(our_counts.items.values()) / timed:5.1f} {sum(our_counts.bytes.values()) / timed:6.0f}"
            f"   {per_call(bare_counts.requests, timed)}, {sum(bare_counts.items.values()) / timed:.1f} items,"
            f" {sum(bare_counts.bytes.values()) / timed:.0f} bytes"
        )


def show_burst(label: str, ours: BurstResult, bare: BurstResult) -> None:
    rate, bare_rate = ours.placed / ours.wall_s, bare.placed / bare.wall_s
    retries = [float(r) for r in ours.retries]
    print(f"  {label}")
    print(
        f"    bare (each thread its own pool, no conflict possible): {bare.placed} in {bare.wall_s:.2f} s = {bare_rate:7.1f}/s"
        + (f"  ({bare.failed} failed, not retried)" if bare.failed else "")
    )
    print(
        f"    podslots, one pool:                                   {ours.placed} in {ours.wall_s:.2f} s = {rate:7.1f}/s"
        f"  ratio {rate / bare_rate:.2f} of bare"
    )
    print(
        f"    conflict retries per allocation: p50 {percentile(retries, 50):.0f}, p99 {percentile(retries, 99):.0f},"
        f" max {max(retries, default=math.nan):.0f}, mean {sum(retries) / max(1, len(retries)):.2f}"
        f"  (AllocationConflictRetry, counted per allocation)"
    )
    print(
        f"    transactions sent per allocation (at the server, botocore's retries included):"
        f" {ours.server_transactions / max(1, ours.placed):.2f}; latency p50 {percentile(ours.latencies, 50) * 1000:.0f} ms,"
        f" p99 {percentile(ours.latencies, 99) * 1000:.0f} ms"
    )
    asks = f"{ours.no_capacity} answered 503 and asked again, {ours.errors} raised and asked again"
    print(f"    {asks}; faults injected: {dict(ours.injected) or 'none'}")
    check = ours.check
    print(
        f"    double bookings: {check.double_bookings} (slots claimed twice {check.slot_claimed_twice},"
        f" tasks in two slots {check.task_in_two_slots}, busy slots whose task points elsewhere {check.dangling},"
        f" busy/idle counters off {check.counters_off}); busy slots {check.busy_slots} = placed {ours.placed}:"
        f" {'yes' if check.busy_slots == ours.placed else 'NO'}"
    )


def contention(server: MotoServer, store: SlotStore, tasks: int, threads: int, pods: int, seed: int) -> None:
    """(b) `threads` threads bursting `tasks` allocations into one pool of `pods` pods; then again
    with the table's faults injected at random (seeded)."""
    print(f"\n(b) {threads} threads burst {tasks} allocations into one pool of {pods} ready pods ({pods * 3} slots)")
    for label, chaos in (
        ("no faults", None),
        (f"faults injected: {', '.join(f'{f.value} {r:.0%}' for f, r in CHAOS.items())}", CHAOS),
    ):
        tag = "chaos" if chaos else "calm"
        bare_table = f"{TABLE}-b-{tag}-bare"
        client = make_table(server, bare_table)
        seed_bare_pools(server, bare_table, store, f"bare-{tag}", tasks, threads)
        if chaos:
            server.dispatcher.faults.chaos(chaos, seed=seed)
        try:
            bare = bare_burst(client, bare_table, f"bare-{tag}", tasks, threads)
            server.dispatcher.faults.clear()
            table = f"{TABLE}-b-{tag}"
            make_table(server, table)
            given_idle_ready_pods_in_bulk(None, store, f"burst-{tag}", pods, now=1)
            if chaos:
                server.dispatcher.faults.chaos(chaos, seed=seed + 1)
            ours = burst(server, store, table, f"burst-{tag}", tasks, threads, seed)
        finally:
            server.dispatcher.faults.clear()
        show_burst(label, ours, bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timed", type=int, default=20, help="allocations timed per pool size (a)")
    parser.add_argument("--tasks", type=int, default=96, help="allocations in each burst (b)")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--pods", type=int, default=40, help="ready pods of 3 slots in the burst's pool")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    print(
        "moto server on loopback, its dispatcher serialized (one request at a time, as DynamoDB's per-item isolation needs)"
    )
    with moto_server() as server:
        store = SlotStore()
        latency(server, store, args.timed)
        contention(server, store, args.tasks, args.threads, args.pods, args.seed)
    metrics.clear_metrics()


if __name__ == "__main__":
    main()
