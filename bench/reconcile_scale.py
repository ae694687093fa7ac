"""Reconcile wall time over 100 and 1,000 pods, next to the bare LIST plus Query it is built on
(a baseline measured in the same run, against the same servers): the ratio is what reconcile adds.

DynamoDB is moto's HTTP server and the cluster the Kubernetes API stand-in, both on loopback, so
the absolute figures are this machine's, not AWS's; the ratio is the portable part.

    make bench            # or, from the repository root: .venv/bin/python -m bench.reconcile_scale
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import boto3
from kubernetes.client import CoreV1Api
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import moto_server
from local.template import table_definition
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.cluster_pods import pool_selector
from podslots.reconcile import Reconciler
from podslots.store import SlotStore, bind_table
from tests.support.pods import given_idle_ready_pods_in_bulk

NS = "agents"
RUNS = 5


def main() -> None:
    print(f"reconcile of one idle pool, median of {RUNS} runs (moto server + Kubernetes stand-in, loopback)")
    print("  client LIST: the official client's models; raw LIST: the same request read as JSON (as podslots does)")
    print(
        f"{'pods':>6} {'client LIST+Query':>18} {'raw LIST+Query':>15} {'reconcile':>10} {'/client':>8} {'/raw':>6}  (ms)"
    )
    with moto_server() as server:
        table = "podslots-bench-reconcile"
        boto3.client("dynamodb", endpoint_url=server.url).create_table(**table_definition(table))
        bind_table(table, host=server.url)
        clock = ManualClock()
        with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
            client = new_client_from_config_dict(kube.kubeconfig(NS))
            gateway, core = KubeGateway(client), CoreV1Api(client)
            store = SlotStore()
            reconciler = Reconciler(store, lambda _: gateway, RecordingPublisher(), clock)
            for pods in (100, 1000):
                pool = f"bench{pods}"
                given_idle_ready_pods_in_bulk(kube, store, pool, pods, int(clock.now()))
                reconciler.run(pool)  # records the figures once
                bare, raw, ours = [], [], []
                for _ in range(RUNS):
                    began = time.perf_counter()
                    gateway.list_pool_pods(NS, pool)
                    store.pods(pool)
                    raw.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    token = None
                    while True:  # the same LIST, with the official client's own deserialization
                        page = core.list_namespaced_pod(
                            NS, label_selector=pool_selector(pool), limit=500, _continue=token
                        )
                        token = page.metadata.var_continue if page.metadata else None
                        if not token:
                            break
                    store.pods(pool)
                    bare.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    reconciler.run(pool)
                    ours.append(time.perf_counter() - began)
                b, r, o = statistics.median(bare), statistics.median(raw), statistics.median(ours)
                print(f"{pods:6d} {b * 1000:18.1f} {r * 1000:15.1f} {o * 1000:10.1f} {o / b:8.2f} {o / r:6.2f}")


if __name__ == "__main__":
    main()
