"""An idle reconcile over 1,000 pods: one LIST page set, one Query page set, no write.

DynamoDB requests are counted at moto's HTTP server (dispatcher serialized, see local/moto_server.py)
and Kubernetes requests at the stand-in, both as they arrive over HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import PAGE_SIZE, KubeGateway
from podslots.reconcile import Reconciler
from podslots.store import SlotStore
from podslots.store.items import ITEM_KINDS
from tests.support.pods import given_idle_ready_pods_in_bulk

pytestmark = pytest.mark.slow
POOL, NS, PODS = "big", "agents", 1000
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@pytest.fixture(autouse=True)
def patient_reads(monkeypatch: pytest.MonkeyPatch):
    """This test counts requests, it does not time them: a 1,000-item Query answered by moto's
    serialized server can take longer than the store's 5 s read timeout on a loaded 2-core machine,
    and a timed-out page is read again (one Query more, and a failed step). Deployed, DynamoDB answers
    a 1 MB page in milliseconds; here the timeout is lifted for this test only."""
    for kind in ITEM_KINDS:
        monkeypatch.setattr(kind.Meta, "read_timeout_seconds", 60)
        monkeypatch.setattr(kind, "_connection", None)  # PynamoDB caches the connection per class
    yield
    for kind in ITEM_KINDS:
        kind._connection = None


def test_an_idle_run_over_1000_pods_lists_once_queries_once_and_writes_nothing(server: MotoServer, clock: ManualClock):
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
        store = SlotStore()
        given_idle_ready_pods_in_bulk(kube, store, POOL, PODS, int(clock.now()))
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        reconciler = Reconciler(store, lambda pool: gateway, RecordingPublisher(), clock)
        reconciler.run(POOL)  # the first run records the pool's figures
        # When nothing changed since
        clock.advance(30)
        kube.clear_requests()
        before = server.dispatcher.operations.copy()
        (report,) = reconciler.run(POOL)
        ops = server.dispatcher.operations - before
    # Then: one LIST, followed over its pages; one Query of the pool's items (its pages, 1 MB
    # each) and one GetItem of the pool's registry entry (a one-pool run reads no other pool's);
    # not a single write
    assert report.summary() == {"pool": POOL}
    assert report.figures["pods_idle"] == PODS
    assert kube.count(verb="list") == -(-PODS // PAGE_SIZE)
    assert kube.count() == kube.count(verb="list")
    assert not WRITES & set(ops)
    item_pages = ops["Query"]
    assert 1 <= item_pages <= 3, ops  # 1,000 pod items of ~0.4 KB: at most a page per MB
    assert set(ops) == {"Query", "GetItem"}
    assert ops["GetItem"] == 1
