"""Many threads allocating into one pool at once, and what the table says afterwards.

Conflict retries are counted per allocation where the Allocator counts them: its
`count("AllocationConflictRetry")` is wrapped for the burst with a per-thread counter (the metric
itself is not emitted). Transactions are also counted at the server, botocore's own retries
included. The check reads the table, not the answers: every busy slot's task points back at it, no
task is in two slots, no slot was answered twice, `busy` matches the slots.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from bench import bare_allocation
from local.moto_server import MotoServer
from podslots import allocation
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import NoCapacity
from podslots.model import TaskStatus, TaskType
from podslots.store import SlotStore
from tests.support.pods import given_idle_ready_pods_in_bulk

MAX_ASKS = 5  # a 503 or an error is asked again, as the task queue would
_retries = threading.local()


@dataclass
class TableCheck:
    slot_claimed_twice: int = 0  # two answers named the same pod and slot
    task_in_two_slots: int = 0
    dangling: int = 0  # a busy slot whose task item does not point back at it (or an answer the table lacks)
    counters_off: int = 0  # pods whose `busy` is not the number of busy slots
    busy_slots: int = 0

    @property
    def double_bookings(self) -> int:
        return self.slot_claimed_twice + self.task_in_two_slots + self.dangling


@dataclass
class BurstResult:
    placed: int = 0
    wall_s: float = math.nan
    retries: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    no_capacity: int = 0
    errors: int = 0
    failed: int = 0  # bare only: a request that failed (not retried)
    server_transactions: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    check: TableCheck = field(default_factory=TableCheck)


def _count(name: str, value: float = 1) -> None:
    if name == "AllocationConflictRetry":
        _retries.n = getattr(_retries, "n", 0) + int(value)


def _run(threads: int, work: Callable[[int], None]) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, k) for k in range(threads)]:
            future.result()
    return time.perf_counter() - began


def burst(
    server: MotoServer, store: SlotStore, table: str, pool: str, tasks: int, threads: int, seed: int
) -> BurstResult:
    """`tasks` new allocations into `pool` from `threads` threads, each with its own Allocator."""
    result, lock = BurstResult(), threading.Lock()
    todo: queue.Queue[str] = queue.Queue()
    for i in range(tasks):
        todo.put(f"{pool}-{i:05d}")
    placed: list[tuple[str, str, str]] = []
    clock = ManualClock()

    def work(k: int) -> None:
        allocator = Allocator(store, RecordingPublisher(), clock, rng=random.Random(seed * 1000 + k))
        while True:
            try:
                task_id = todo.get_nowait()
            except queue.Empty:
                return
            _retries.n = 0
            began = time.perf_counter()
            for _ in range(MAX_ASKS):
                try:
                    done = allocator.allocate(AllocationRequest(pool, task_id, TaskType.PLAN))
                except NoCapacity:
                    with lock:
                        result.no_capacity += 1
                    continue
                except Exception:  # botocore gave up on a throttle or a lost answer: ask again
                    with lock:
                        result.errors += 1
                    continue
                with lock:
                    result.latencies.append(time.perf_counter() - began)
                    result.retries.append(_retries.n)
                    placed.append((task_id, done.pod, done.slot))
                break

    before = server.dispatcher.operations["TransactWriteItems"]
    injected = server.dispatcher.faults.injected.copy()
    with mock.patch.object(allocation, "count", _count):
        result.wall_s = _run(threads, work)
    result.server_transactions = server.dispatcher.operations["TransactWriteItems"] - before
    result.injected = Counter({str(f.value): n for f, n in (server.dispatcher.faults.injected - injected).items()})
    result.placed = len(placed)
    result.check = check_table(server.url, table, pool, placed)
    return result


def seed_bare_pools(server: MotoServer, table: str, store: SlotStore, prefix: str, tasks: int, threads: int) -> None:
    """One pool per thread for the baseline, with room for that thread's share of the tasks."""
    share = math.ceil(tasks / threads)
    for k in range(threads):
        given_idle_ready_pods_in_bulk(None, store, f"{prefix}-{k}", math.ceil(share / 3) + 1, now=1)


def bare_burst(client: Any, table: str, prefix: str, tasks: int, threads: int) -> BurstResult:
    """The baseline: the same requests from the same threads, each thread into a pool of its own
    (seed_bare_pools: no race is ever lost); a failed request is counted, not retried."""
    result, lock = BurstResult(), threading.Lock()

    def work(k: int) -> None:
        for i in range(k, tasks, threads):
            began = time.perf_counter()
            try:
                bare_allocation.allocate(client, table, f"{prefix}-{k}", f"{prefix}-{i:05d}", 1)
            except ClientError:
                with lock:
                    result.failed += 1
                continue
            with lock:
                result.latencies.append(time.perf_counter() - began)
                result.placed += 1

    result.wall_s = _run(threads, work)
    return result


def check_table(endpoint: str, table: str, pool: str, placed: list[tuple[str, str, str]]) -> TableCheck:
    """Read the pool's pod items and their tasks' items (consistent reads, a patient client: the
    server may still be draining a burst on a busy machine)."""
    client = boto3.client(
        "dynamodb", endpoint_url=endpoint, config=Config(read_timeout=120, retries={"max_attempts": 10})
    )
    check = TableCheck()
    holders: dict[str, tuple[str, str]] = {}
    pages = client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :pod)",
        ExpressionAttributeValues={":pk": {"S": f"POOL#{pool}"}, ":pod": {"S": "POD#"}},
        ConsistentRead=True,
    )
    for item in (item for page in pages for item in page["Items"]):
        slots = {key: value["M"] for key, value in item["slots"]["M"].items()}
        busy = [(key, slot.get("task_id", {}).get("S")) for key, slot in slots.items() if slot["status"]["S"] != "idle"]
        check.busy_slots += len(busy)
        check.counters_off += int(item["busy"]["N"]) != len(busy) or int(item["idle"]["N"]) != len(slots) - len(busy)
        for key, task_id in busy:
            if task_id is None or task_id in holders:
                check.task_in_two_slots += 1
                continue
            holders[task_id] = (item["name"]["S"], key)
    for task_id, (pod_name, key) in holders.items():
        task = client.get_item(
            TableName=table, Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "#TASK"}}, ConsistentRead=True
        ).get("Item")
        points_back = task is not None and (task.get("pod", {}).get("S"), task.get("slot", {}).get("S")) == (
            pod_name,
            key,
        )
        check.dangling += not (points_back and task is not None and TaskStatus(task["status"]["S"]).holds_slot)
    answers = Counter((pod_name, key) for _, pod_name, key in placed)
    check.slot_claimed_twice = sum(n - 1 for n in answers.values())
    check.dangling += sum(1 for task_id, pod_name, key in placed if holders.get(task_id) != (pod_name, key))
    return check
