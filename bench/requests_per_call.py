"""DynamoDB requests per API step, counted at moto's HTTP server, and the time per allocation next
to the bare requests it is made of (a baseline measured in the same run, on the same server).

    make bench            # or, from the repository root: .venv/bin/python -m bench.requests_per_call
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PodSlots")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import boto3

from local.moto_server import moto_server
from local.template import table_definition
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import NoCapacity
from podslots.heartbeat import HeartbeatService
from podslots.model import TaskStatus, TaskType
from podslots.observability import metrics
from podslots.store import SlotStore, bind_table
from podslots.tasks import TaskStatusService
from tests.support.pods import given_pool, given_ready_pods, given_starting_pods_in_bulk

TABLE = "podslots-bench"
POOL = "bench"
PODS = 20
TIMED = 30
STARTING_PODS = 1000


def count(ops: Counter[str], step: Callable[[], Any]) -> Counter[str]:
    before = ops.copy()
    try:
        step()
    except NoCapacity:
        pass
    return ops - before


def show(label: str, delta: Counter[str]) -> None:
    parts = ", ".join(f"{n} {op}" for op, n in sorted(delta.items()))
    print(f"  {label:44} {sum(delta.values()):2d} requests: {parts}")


def main() -> None:
    with moto_server() as server:
        client = boto3.client("dynamodb", endpoint_url=server.url)
        client.create_table(**table_definition(TABLE))
        bind_table(TABLE, host=server.url)
        store, clock = SlotStore(), ManualClock()
        allocator = Allocator(store, RecordingPublisher(), clock)
        tasks = TaskStatusService(store, clock)
        agents = HeartbeatService(store, clock)
        given_pool(store, POOL, max_pods=PODS)
        given_ready_pods(store, POOL, count=PODS)
        given_pool(store, "empty")
        ops = server.dispatcher.operations

        def alloc(task: str, kind: TaskType = TaskType.PLAN_AND_APPLY, pool: str = POOL) -> Any:
            return allocator.allocate(AllocationRequest(pool, task, kind))

        print(f"DynamoDB requests per step (pool of {PODS} ready pods, uncontended)")
        # The pool's allowed_callers: read by a container's first allocation in a pool, then trusted
        # for CALLERS_MAX_AGE_S (the clock here stands still, so every step below is a warm one).
        show("allocate, a container's first in the pool", count(ops, lambda: alloc("t-0", TaskType.PLAN)))
        show("allocate, new task", count(ops, lambda: alloc("t-1")))
        show("allocate, same task again (idempotent)", count(ops, lambda: alloc("t-1")))
        show(
            "status apply_pending (reserve)",
            count(ops, lambda: tasks.set_status("t-1", TaskStatus.APPLY_PENDING)),
        )
        show("allocate, reserved task (apply resumes)", count(ops, lambda: alloc("t-1")))
        show("status success (release)", count(ops, lambda: tasks.set_status("t-1", TaskStatus.SUCCESS)))
        show(
            "status success again (no change)",
            count(ops, lambda: tasks.set_status("t-1", TaskStatus.SUCCESS)),
        )
        show("heartbeat", count(ops, lambda: agents.beat(POOL, f"{POOL}-0000", ["t-1"], "10.0.0.9")))
        show("allocate, no capacity (503)", count(ops, lambda: alloc("w-1", pool="empty")))
        show("allocate, no capacity again within 60 s", count(ops, lambda: alloc("w-1", pool="empty")))
        # The 503 of a large pool: 1,000 pods starting (none open), the container warm in the pool.
        given_starting_pods_in_bulk(store, "starting", STARTING_PODS, now=int(clock.now()))
        count(ops, lambda: alloc("w-2", pool="starting"))  # the container's first read of this pool
        items = server.dispatcher.items_read.copy()
        show(
            f"allocate, no capacity, {STARTING_PODS:,} pods starting", count(ops, lambda: alloc("w-3", pool="starting"))
        )
        read = server.dispatcher.items_read - items
        print(
            f"  {'':44}    items read: {sum(read.values())} ({', '.join(f'{n} {op}' for op, n in sorted(read.items()))})"
        )

        # Time per allocation against the bare requests it is made of, on the same server.
        ours, bare = [], []
        for i in range(TIMED):
            t = time.perf_counter()
            alloc(f"timed-{i}", TaskType.PLAN)
            ours.append(time.perf_counter() - t)
            tasks.set_status(f"timed-{i}", TaskStatus.SUCCESS)
            t = time.perf_counter()
            client.query(  # the same read of candidates: the four fullest open pods
                TableName=TABLE,
                IndexName="open_slots",
                KeyConditionExpression="open_pool = :p AND idle > :z",
                ExpressionAttributeValues={":p": {"S": POOL}, ":z": {"N": "0"}},
                Limit=4,
            )
            client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": {"pk": {"S": f"BARE#{i}"}, "sk": {"S": "x"}}}},
                    {
                        "Update": {
                            "TableName": TABLE,
                            "Key": {"pk": {"S": f"BARE#{i}"}, "sk": {"S": "y"}},
                            "UpdateExpression": "SET n = :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
            bare.append(time.perf_counter() - t)
        o, b = statistics.median(ours), statistics.median(bare)
        print(
            f"\nTime per allocation, median of {TIMED} (moto server on loopback; shows overhead, not DynamoDB latency)"
        )
        print(f"  bare index Query + TransactWriteItems (boto3):     {b * 1000:7.2f} ms")
        print(f"  podslots allocation (PynamoDB, placement, checks): {o * 1000:7.2f} ms   ratio {o / b:.2f}")
        metrics.clear_metrics()


if __name__ == "__main__":
    main()
