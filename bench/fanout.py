"""The fan-out at scale: how long after the minute's schedule each pool's run ends, what a pool's run
asks of the servers, and what a month costs, for 1,000 pools and 10,000 pods by default.

Two halves:

- **Requests, measured.** A sample of pools of the same shape (10 pods each by default), idle and just
  beaten, on moto's DynamoDB server and the Kubernetes API stand-in: the dispatcher's registry Query,
  then each pool's reconcile and autoscale run as a fan-out message runs it (`run(pool, strict=True)`),
  counted at both servers. SQS requests are counted from the wiring (template.yaml): a SendMessageBatch
  per 10 pools, a ReceiveMessage and a DeleteMessage per message (BatchSize 1).
- **Time, modelled.** Each pool's run costs its measured requests at 5 ms per DynamoDB request and 20 ms
  per Kubernetes request, plus 10 ms of Lambda per invocation; a slow cluster's LIST takes 15 s, a
  failing cluster's fails after its 2 s connect timeout (the run ends, reported). The dispatcher sends
  a batch every 15 ms after its Query (5 ms a page of 1 MB, ~1 KB a registry item). The messages go, in
  order, to `PoolRunConcurrency` runs at a time (the mapping's MaximumConcurrency, 20 by default). A
  pool's lag is the time from the schedule to the end of its run.

One line per step and run: `pools: N, visited within 60 s: P %, slowest lag: S s, requests per pool: R`,
then the monthly cost at us-east-1 list prices (stated below).

    make bench       # or: .venv/bin/python -m bench.fanout            (1,000 pools, 10,000 pods)
    .venv/bin/python -m bench.fanout --pools 10000 --pods-per-pool 10  (10,000 pools)
    .venv/bin/python -m bench.fanout --concurrency 50 --slow 0.05 --failing 0.02 --sample 40
"""

from __future__ import annotations

import os

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")

import argparse
import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes.config import new_client_from_config_dict

from bench.floor_support import make_table
from local.kube_api import KubeApiStandIn
from local.moto_server import moto_server
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.fanout import Dispatcher
from podslots.reconcile import Reconciler
from podslots.step_queues import RecordingQueues
from podslots.store import SlotStore
from tests.support.pods import given_idle_ready_pods_in_bulk

NS = "agents"
# the latency model
DYNAMODB_S, KUBE_S, LAMBDA_S = 0.005, 0.020, 0.010
SLOW_LIST_S, FAILING_LIST_S = 15.0, 2.0
SEND_BATCH_S, REGISTRY_ITEM_KB = 0.015, 1.0
# list prices, us-east-1
LAMBDA_PER_M_REQUESTS, LAMBDA_ARM_PER_GB_S = 0.20, 0.0000133334
SQS_FIFO_PER_M_REQUESTS = 0.50
DYNAMODB_PER_M_READS, DYNAMODB_PER_M_WRITES = 0.125, 0.625
MINUTES_A_MONTH = 43_800
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@dataclass
class PoolRun:
    """What one pool's run of a step asks, measured (mean over the sample)."""

    dynamodb: Counter[str]
    kube: Counter[str]
    runs: int

    def per_run(self, counts: Counter[str]) -> float:
        return sum(counts.values()) / self.runs

    def seconds(self, cluster: str) -> float:
        base = LAMBDA_S + self.per_run(self.dynamodb) * DYNAMODB_S + self.per_run(self.kube) * KUBE_S
        lists = self.kube["list"] / self.runs
        if cluster == "slow":
            return base + lists * SLOW_LIST_S
        if cluster == "failing" and lists:
            return LAMBDA_S + 2 * DYNAMODB_S + FAILING_LIST_S  # the settings' read, the LIST refused
        return base

    def writes(self) -> float:
        return sum(n for op, n in self.dynamodb.items() if op in WRITES) / self.runs

    def reads(self) -> float:
        return sum(n for op, n in self.dynamodb.items() if op not in WRITES) / self.runs


def measure(sample: int, pods: int) -> tuple[dict[str, PoolRun], int]:
    """Each step's pool run on moto and the stand-in; the dispatcher's DynamoDB requests for `sample`."""
    with moto_server() as server:
        make_table(server, "podslots-bench-fanout")
        clock = ManualClock()
        store = SlotStore()
        with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
            gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
            names = [f"p{i:04d}" for i in range(sample)]
            for name in names:
                given_idle_ready_pods_in_bulk(kube, store, name, pods, int(clock.now()))
            steps: dict[str, Reconciler | Autoscaler] = {
                "reconcile": Reconciler(store, lambda _: gateway, RecordingPublisher(), clock),
                "autoscale": Autoscaler(store, lambda _: gateway, RecordingPublisher(), clock, "http://bench.invalid"),
            }
            for step in steps.values():
                step.run()  # the first run records the figures and the low-utilization clock
            clock.advance(60)
            before = server.dispatcher.operations.copy()
            Dispatcher(store, RecordingQueues(), clock).dispatch("reconcile")
            dispatch = sum((server.dispatcher.operations - before).values())
            measured = {}
            for label, step in steps.items():
                ops, calls = server.dispatcher.operations.copy(), kube.calls()
                for name in names:
                    step.run(name, strict=True)
                measured[label] = PoolRun(server.dispatcher.operations - ops, kube.calls() - calls, len(names))
    return measured, dispatch


def clusters(pools: int, slow: float, failing: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["slow" if (r := rng.random()) < slow else "failing" if r < slow + failing else "ok" for _ in range(pools)]


def lags(run: PoolRun, kinds: list[str], concurrency: int) -> list[float]:
    """When each pool's run ends, from the schedule: messages in send order, `concurrency` at a time."""
    registry_s = max(1, math.ceil(len(kinds) * REGISTRY_ITEM_KB / 1024)) * DYNAMODB_S + LAMBDA_S
    free = [0.0] * concurrency
    ends = []
    for i, kind in enumerate(kinds):
        sent = registry_s + (i // 10 + 1) * SEND_BATCH_S
        start = max(sent, heapq.heappop(free))
        end = start + run.seconds(kind)
        heapq.heappush(free, end)
        ends.append(end)
    return ends


def monthly_cost(runs: dict[str, PoolRun], kinds: list[str], pools: int, memory_gb: dict[str, float]) -> str:
    """Per month: reconcile and autoscale every minute per pool, expire every 5 minutes (not measured
    here: one Query per pool, 10 pools an invocation), the dispatcher 2.2 times a minute."""
    lambda_requests = lambda_gb_s = sqs = reads = writes = 0.0
    for label, run in runs.items():
        seconds = sum(run.seconds(k) for k in kinds)
        lambda_requests += pools * MINUTES_A_MONTH
        lambda_gb_s += seconds * memory_gb[label] * MINUTES_A_MONTH
        sqs += (pools / 10 + 2 * pools) * MINUTES_A_MONTH  # send batches; receive and delete each message
        reads += run.reads() * pools * MINUTES_A_MONTH
        writes += run.writes() * pools * MINUTES_A_MONTH
    expire_runs = pools / 5 * MINUTES_A_MONTH
    lambda_requests += expire_runs / 10 + 2.2 * MINUTES_A_MONTH
    lambda_gb_s += (expire_runs * (DYNAMODB_S + LAMBDA_S) + 2.2 * MINUTES_A_MONTH * (pools / 10) * SEND_BATCH_S) * 0.5
    sqs += expire_runs * 2.1
    reads += expire_runs + 2.2 * MINUTES_A_MONTH * max(1, pools * REGISTRY_ITEM_KB / 4)
    parts = {
        "Lambda": lambda_requests / 1e6 * LAMBDA_PER_M_REQUESTS + lambda_gb_s * LAMBDA_ARM_PER_GB_S,
        "SQS": sqs / 1e6 * SQS_FIFO_PER_M_REQUESTS,
        "DynamoDB": reads / 1e6 * DYNAMODB_PER_M_READS + writes / 1e6 * DYNAMODB_PER_M_WRITES,
    }
    listed = ", ".join(f"{name} ${value:,.0f}" for name, value in parts.items())
    return f"monthly cost: ${sum(parts.values()):,.0f} ({listed})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--pods-per-pool", type=int, default=10)
    parser.add_argument("--sample", type=int, default=10, help="pools measured on moto (same shape)")
    parser.add_argument("--concurrency", type=int, default=20, help="PoolRunConcurrency")
    parser.add_argument("--slow", type=float, default=0.02, help="share of pools whose cluster is slow")
    parser.add_argument("--failing", type=float, default=0.01, help="share of pools whose cluster fails")
    parser.add_argument("--minutes", type=int, default=2, help="scheduled runs of each step")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    runs, dispatch = measure(args.sample, args.pods_per_pool)
    print(
        f"{args.pools:,} pools, {args.pools * args.pods_per_pool:,} pods; {args.slow:.0%} slow clusters"
        f" ({SLOW_LIST_S:.0f} s LIST), {args.failing:.0%} failing ({FAILING_LIST_S:.0f} s); concurrency"
        f" {args.concurrency}; {DYNAMODB_S * 1000:.0f} ms a DynamoDB request, {KUBE_S * 1000:.0f} ms a Kubernetes one"
    )
    dispatch_per_pool = dispatch / args.sample + 0.1  # its registry pages, and a SendMessageBatch per 10
    for minute in range(args.minutes):
        kinds = clusters(args.pools, args.slow, args.failing, args.seed + minute)
        for label, run in runs.items():
            ends = lags(run, kinds, args.concurrency)
            within = sum(end <= 60 for end in ends) / len(ends)
            requests = run.per_run(run.dynamodb) + run.per_run(run.kube) + 2 + dispatch_per_pool
            print(
                f"{label} minute {minute + 1}: pools: {args.pools}, visited within 60 s: {within:.1%},"
                f" slowest lag: {max(ends):.1f} s, requests per pool: {requests:.1f}"
            )
    for label, run in runs.items():
        dynamodb = ", ".join(f"{op} {n / run.runs:.1f}" for op, n in sorted(run.dynamodb.items()))
        kube = ", ".join(f"{verb} {n / run.runs:.1f}" for verb, n in sorted(run.kube.items())) or "none"
        print(f"  {label}, per pool run (measured): DynamoDB {dynamodb}; Kubernetes {kube}; SQS receive 1, delete 1")
    kinds = clusters(args.pools, args.slow, args.failing, args.seed)
    print(monthly_cost(runs, kinds, args.pools, {"reconcile": 1.0, "autoscale": 1.0}))
    print(
        f"  prices: Lambda ${LAMBDA_PER_M_REQUESTS}/M requests + ${LAMBDA_ARM_PER_GB_S}/GB-s (arm64);"
        f" SQS FIFO ${SQS_FIFO_PER_M_REQUESTS}/M requests; DynamoDB on-demand ${DYNAMODB_PER_M_READS}/M reads,"
        f" ${DYNAMODB_PER_M_WRITES}/M writes (a request = one unit; free tiers left out)"
    )


if __name__ == "__main__":
    main()
