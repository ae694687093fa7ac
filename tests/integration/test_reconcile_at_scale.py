"""An idle reconcile over 1,000 pods: one LIST page set, one Query page set, no write.

DynamoDB requests are counted at moto's HTTP server (dispatcher serialized, see local/moto_server.py)
and Kubernetes requests at the stand-in, both as they arrive over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer, moto_server
from local.template import table_definition
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import MANAGED_BY, MANAGED_BY_LABEL, PAGE_SIZE, POOL_LABEL, KubeGateway
from podslots.reconcile import Reconciler
from podslots.store import SlotStore, bind_table
from tests.support.pods import given_pool

pytestmark = pytest.mark.slow
POOL, NS, PODS = "big", "agents", 1000
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@pytest.fixture
def dynamodb(clock: ManualClock) -> Iterator[MotoServer]:
    with moto_server() as server:
        boto3.client("dynamodb", endpoint_url=server.url).create_table(**table_definition("podslots-scale"))
        bind_table("podslots-scale", host=server.url)
        yield server
    bind_table("podslots-test")


def given_a_pool_of_idle_ready_pods(server: MotoServer, kube: KubeApiStandIn, store: SlotStore, now: int) -> None:
    given_pool(store, POOL, now=now, max_pods=PODS)
    table = boto3.resource("dynamodb", endpoint_url=server.url).Table("podslots-scale")
    with table.batch_writer() as batch:
        for i in range(PODS):
            name = f"{POOL}-{i:04d}"
            created = kube.add_pod(
                NS,
                {
                    "metadata": {"name": name, "labels": {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY}},
                    "spec": {"containers": [{"name": "agent", "image": "x"}]},
                    "status": {"phase": "Running", "podIP": f"10.1.{i // 250}.{i % 250}"},
                },
            )
            batch.put_item(
                Item={
                    "pk": f"POOL#{POOL}",
                    "sk": f"POD#{name}",
                    "pool": POOL,
                    "name": name,
                    "uid": created["metadata"]["uid"],
                    "state": "ready",
                    "slots": {f"s{k}": {"status": "idle"} for k in range(3)},
                    "busy": 0,
                    "pod_ip": f"10.1.{i // 250}.{i % 250}",
                    "created_at": now,
                    "heartbeat_at": now,
                    "held_tasks": [],
                    "last_used_at": now,
                }
            )


def test_an_idle_run_over_1000_pods_lists_once_queries_once_and_writes_nothing(
    dynamodb: MotoServer, clock: ManualClock
):
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
        store = SlotStore()
        given_a_pool_of_idle_ready_pods(dynamodb, kube, store, int(clock.now()))
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        reconciler = Reconciler(store, lambda pool: gateway, RecordingPublisher(), clock)
        reconciler.run(POOL)  # the first run records the pool's figures
        # When nothing changed since
        clock.advance(30)
        kube.clear_requests()
        before = dynamodb.dispatcher.operations.copy()
        (report,) = reconciler.run(POOL)
        ops = dynamodb.dispatcher.operations - before
    # Then: one LIST, followed over its pages; one Query of the pool's items (its pages, 1 MB
    # each) and one of the pool registry; not a single write
    assert report.summary() == {"pool": POOL}
    assert report.figures["pods_idle"] == PODS
    assert kube.count(verb="list") == -(-PODS // PAGE_SIZE)
    assert kube.count() == kube.count(verb="list")
    assert not WRITES & set(ops)
    queries = ops["Query"]
    item_pages = queries - 1  # the registry Query is one page
    assert 1 <= item_pages <= 3, ops  # 1,000 pod items of ~0.4 KB: at most a page per MB
    assert set(ops) == {"Query"}
