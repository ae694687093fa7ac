"""Nothing on a hot path grows with the pool, and a quiet pool costs no write (issue 20).

Requests are counted at moto's HTTP server as they arrive (`server.dispatcher`), items read from each
answer's own `Count`; the cluster is the Kubernetes API stand-in.

- A 503 chooses its `Retry-After` from the starting pods autoscale keeps on the pool's lease item,
  not from the pool's pod items: the same requests and items at 10 and at 1,000 pods.
- A quiet pool's autoscale run decides from reads alone and takes no lease: no write, run after run;
  a run that will write or act still takes the lease first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from podslots.allocation import RETRY_AFTER_COLD_S, RETRY_AFTER_STARTING_S, AllocationRequest, Allocator
from podslots.autoscale import DEMAND_WINDOW_S, LEASE_TTL_S, Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.errors import NoCapacity
from podslots.model import PodState, TaskType
from podslots.store import SlotStore
from tests.support.pods import given_pool, given_ready_pods, given_starting_pods_in_bulk

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})


def requests_of(server: MotoServer, step: Callable[[], object]) -> Counter[str]:
    before = server.dispatcher.operations.copy()
    step()
    return server.dispatcher.operations - before


def writes(counted: Counter[str]) -> int:
    return sum(n for operation, n in counted.items() if operation in WRITES)


def autoscaler(store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> Autoscaler:
    gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig("agents")))
    return Autoscaler(store, lambda _: gateway, RecordingPublisher(), clock, "https://api.example/v1")


def refused(allocator: Allocator, pool: str, task_id: str) -> NoCapacity:
    with pytest.raises(NoCapacity) as answer:
        allocator.allocate(AllocationRequest(pool, task_id, TaskType.PLAN))
    return answer.value


@pytest.mark.parametrize("pods", [10, 1000])
def test_a_503_reads_the_same_few_items_however_large_the_pool(server: MotoServer, pods: int):
    # Given a pool mid-way through a scale-up: `pods` pods starting, none open yet
    store, clock = SlotStore(), ManualClock()
    assert server.table is not None
    given_starting_pods_in_bulk(store, "big", pods, now=int(clock.now()))
    # and the lease as autoscale's last run left it: counting them (through the store's own calls;
    # autoscale's own recording is the next test's, on a small pool)
    lease = store.acquire_lease("big", "autoscale", int(clock.now()), LEASE_TTL_S)
    assert lease is not None
    store.release_lease(lease, None, starting=pods)
    allocator = Allocator(store, RecordingPublisher(), clock)
    refused(allocator, "big", "warm")  # the container's first read of the pool (allowed_callers)
    items = server.dispatcher.items_read.copy()

    # When a task finds no idle slot
    sent = requests_of(server, lambda: refused(allocator, "big", "t-1"))
    read = server.dispatcher.items_read - items
    answer = refused(allocator, "big", "t-1")

    # Then the 503 said capacity is near, having read the candidates (none), the task (not there
    # yet), the pool's item and the lease item, whatever the pool's size: no pod item at all
    assert answer.retry_after_s == RETRY_AFTER_STARTING_S
    assert sent == Counter({"Query": 2, "GetItem": 3, "UpdateItem": 1})
    assert read == Counter({"GetItem": 2})


def test_the_503s_retry_after_follows_the_starting_pods_autoscale_recorded(server: MotoServer, kube: KubeApiStandIn):
    # Given a pool whose two pods are starting, as autoscale recorded them
    store, clock = SlotStore(), ManualClock()
    assert server.table is not None
    given_starting_pods_in_bulk(store, "cold", 2, now=int(clock.now()), min_pods=0, headroom_pods=0)
    scaler, allocator = autoscaler(store, kube, clock), Allocator(store, RecordingPublisher(), clock)
    scaler.run("cold")
    assert refused(allocator, "cold", "t-1").retry_after_s == RETRY_AFTER_STARTING_S

    # When both pods go away (their creates never came to anything), the task stops asking, and
    # autoscale runs again
    for pod in store.pods("cold"):
        assert pod.state is PodState.STARTING
        store.remove_idle_pod(pod)
    clock.advance(DEMAND_WINDOW_S + 60)
    (report,) = scaler.run("cold")
    assert not report.created

    # Then a 503 no longer says capacity is near
    assert refused(allocator, "cold", "t-2").retry_after_s == RETRY_AFTER_COLD_S


def test_a_quiet_pool_writes_nothing_run_after_run(server: MotoServer, kube: KubeApiStandIn):
    # Given a pool at its minimum size, idle, whose first autoscale run started the low clock
    store, clock = SlotStore(), ManualClock()
    given_pool(
        store, "quiet", now=int(clock.now()), min_pods=2, max_pods=10, scale_down_delay_s=120, scaling="utilization"
    )
    given_ready_pods(store, "quiet", count=2, now=int(clock.now()))
    scaler = autoscaler(store, kube, clock)
    assert writes(requests_of(server, lambda: scaler.run("quiet"))) > 0  # low_since recorded

    # When autoscale runs every minute for ten minutes (past its scale-down delay)
    sent: Counter[str] = Counter()
    for _ in range(10):
        clock.advance(60)
        sent += requests_of(server, lambda: scaler.run("quiet"))

    # Then it wrote nothing (no lease taken or given back) and read the same few things each run
    assert writes(sent) == 0, sent
    # (each run: the pool's registry entry and its lease, by key; its pods and its demand, queried)
    assert sent == Counter({"GetItem": 2 * 10, "Query": 2 * 10})
    assert len(store.pods("quiet")) == 2
    assert kube.count() == 0


def test_a_run_that_acts_still_takes_the_lease_and_one_held_elsewhere_is_left_alone(
    server: MotoServer, kube: KubeApiStandIn
):
    # Given an idle pool above its minimum, with no scale-down delay: each run would drain a pod
    store, clock = SlotStore(), ManualClock()
    given_pool(store, "busy", now=int(clock.now()), min_pods=0, max_pods=10, scale_down_delay_s=0)
    given_ready_pods(store, "busy", count=2, now=int(clock.now()))
    # and another run (another container) holding the pool's lease
    assert store.acquire_lease("busy", "elsewhere", int(clock.now()), LEASE_TTL_S) is not None

    # When autoscale runs
    sent = requests_of(server, lambda: autoscaler(store, kube, clock).run("busy"))

    # Then it left the pool alone, having only read the lease
    assert writes(sent) == 0
    assert len(store.pods("busy")) == 2
    # and once that lease has lapsed, the run takes it and acts
    clock.advance(LEASE_TTL_S + 1)
    (report,) = autoscaler(store, kube, clock).run("busy")
    assert report.removed
    lease = store.read_lease("busy")
    assert lease is not None
    assert (lease.holder != "elsewhere", lease.deadline) == (True, 0)
