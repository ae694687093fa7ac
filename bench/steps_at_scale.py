"""The scheduled steps at scale: reconcile and autoscale over one pool of 100 and 1,000 pods (and
five pools of 1,000: 5,000 pods, each pool at the `max_pods` bound), and over many pools of 5 pods,
next to the bare reads they are made of, measured in the same run against the same servers.

The bare reads, per run: the registry Query (every pool's settings, one Query), then per pool the
label-selected LIST of its pods (all pages, read as JSON as podslots reads it) and the Query of its
pod items (all pages). Reconcile is built on exactly these; autoscale on the registry and the Query
(it makes no LIST: it does not look at the cluster unless it scales), plus its lease (read, not
taken: a quiet pool's run writes nothing) and the `waiting` index. Every pool is idle and just
beaten, so neither step has anything to write. DynamoDB is moto's HTTP server and the cluster the
Kubernetes API stand-in, both on loopback; each scenario has a table of its own (moto answers a
Query by going over the whole table). Requests are counted at both servers.

    make bench            # or: .venv/bin/python -m bench.steps_at_scale       (100 and 1,000 pods, 20 pools of 5)
    .venv/bin/python -m bench.steps_at_scale --full      (and 5 pools of 1,000 pods, 200 pools of 5)
"""

from __future__ import annotations

import os

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes.config import new_client_from_config_dict

from bench.floor_support import make_table, median, per_call
from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer, moto_server
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.reconcile import Reconciler
from podslots.store import SlotStore
from tests.support.pods import given_idle_ready_pods_in_bulk

NS = "agents"


@dataclass
class Step:
    """One way of going over the pools: its wall times and what each run asked of the servers."""

    seconds: list[float] = field(default_factory=list)
    dynamodb: Counter[str] = field(default_factory=Counter)
    kube: Counter[str] = field(default_factory=Counter)
    runs: int = 0

    def measure(self, server: MotoServer, kube: KubeApiStandIn, run: Callable[[], object]) -> None:
        before, calls = server.dispatcher.operations.copy(), kube.calls()
        began = time.perf_counter()
        run()
        self.seconds.append(time.perf_counter() - began)
        self.dynamodb.update(server.dispatcher.operations - before)
        self.kube.update(kube.calls() - calls)
        self.runs += 1

    def requests(self) -> str:
        kube = per_call(self.kube, self.runs) if self.kube else "no Kubernetes request"
        return f"{per_call(self.dynamodb, self.runs)}; {kube}"


def scenario(server: MotoServer, label: str, pools: int, pods: int, runs: int) -> None:
    table = f"podslots-bench-steps-{label}"
    make_table(server, table)
    clock = ManualClock()
    store = SlotStore()
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        names = [f"p{i:03d}" if pools > 1 else f"big{pods}" for i in range(pools)]
        for name in names:
            given_idle_ready_pods_in_bulk(kube, store, name, pods, int(clock.now()))
        reconciler = Reconciler(store, lambda _: gateway, RecordingPublisher(), clock)
        autoscaler = Autoscaler(store, lambda _: gateway, RecordingPublisher(), clock, "http://bench.invalid")
        reconciler.run()  # records the figures once; from then on an idle pool writes nothing
        autoscaler.run()  # starts the low-utilization clock; it does not move while the clock stands still

        def bare() -> None:
            for pool in store.pool_records():
                gateway.list_pool_pods(pool.settings.namespace, pool.name)
                store.pods(pool.name)

        def bare_query() -> None:
            for pool in store.pool_records():
                store.pods(pool.name)

        steps = {"bare LIST+Query": Step(), "reconcile": Step(), "bare Query": Step(), "autoscale": Step()}
        for _ in range(runs):  # interleaved, so that a slow moment of the machine hits each alike
            steps["bare LIST+Query"].measure(server, kube, bare)
            steps["reconcile"].measure(server, kube, reconciler.run)
            steps["bare Query"].measure(server, kube, bare_query)
            steps["autoscale"].measure(server, kube, autoscaler.run)
    base, rec = median(steps["bare LIST+Query"].seconds), median(steps["reconcile"].seconds)
    base_q, auto = median(steps["bare Query"].seconds), median(steps["autoscale"].seconds)
    shape = f"{pools} pools of {pods}" if pools > 1 else f"1 pool of {pods}"
    print(
        f"{shape:>18} {base * 1000:10.0f} {rec * 1000:10.0f} {rec / base:6.2f}   {base_q * 1000:10.0f} {auto * 1000:10.0f} {auto / base_q:6.2f}"
    )
    for name, step in steps.items():
        print(f"{'':18}   {name + ':':17} {step.requests()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also 5 pools of 1,000 pods and 200 pools of 5")
    parser.add_argument("--runs", type=int, default=3, help="runs of each step per scenario (median)")
    args = parser.parse_args()
    shapes = [(1, 100), (1, 1000), (20, 5)]
    if args.full:
        # A pool holds at most 1,000 pods (`max_pods`): 5,000 pods are five pools at that bound.
        shapes = [(1, 100), (1, 1000), (5, 1000), (200, 5)]
    print(
        f"reconcile and autoscale of idle pools, median of {args.runs} runs (moto server + Kubernetes stand-in, loopback)"
    )
    print(
        f"{'':18} {'LIST+Query':>10} {'reconcile':>10} {'ratio':>6}   {'Query':>10} {'autoscale':>10} {'ratio':>6}   (ms; requests per run below)"
    )
    with moto_server() as server:
        for pools, pods in shapes:
            scenario(server, f"{pools}x{pods}", pools, pods, args.runs)


if __name__ == "__main__":
    main()
