"""Allocations racing scale-down, over moto's HTTP server (dispatcher serialized, see
local/moto_server.py) and the Kubernetes API stand-in: no pod is deleted while it holds a running
or reserved slot, and every allocation either holds a slot on a live pod or got a 503."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from kubernetes.config import new_client_from_config_dict

from local.kube_api import KubeApiStandIn
from local.moto_server import MotoServer
from podslots.allocation import AllocationRequest, Allocator
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL, KubeGateway
from podslots.errors import NoCapacity
from podslots.model import PodState, TaskType
from podslots.store import RegisteredPool, SlotStore, new_pod
from tests.support.pods import given_pool

pytestmark = pytest.mark.slow
NS = "agents"
ROUNDS = int(os.environ.get("RACE_ROUNDS", "200"))


def test_allocations_racing_scale_down_never_lose_a_task_to_a_deleted_pod(server: MotoServer):
    clock = ManualClock()
    store = SlotStore()
    jitter = random.Random(11)
    outcomes = {"allocated": 0, "scaled_down": 0}
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as kube:
        gateway = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        allocator = Allocator(store, RecordingPublisher(), clock)
        autoscaler = Autoscaler(store, lambda _: gateway, RecordingPublisher(), clock, "https://api.example/v1")

        def allocate(pool: str, start: threading.Barrier, delay: float) -> bool:
            start.wait()
            time.sleep(delay)
            try:
                allocator.allocate(AllocationRequest(pool, f"{pool}-task", TaskType.PLAN))
                return True
            except NoCapacity:
                return False

        def scale_down(pool: RegisteredPool, start: threading.Barrier, delay: float) -> list[str]:
            start.wait()
            time.sleep(delay)
            return autoscaler.scale_pool(pool).removed

        def round_trip(pool: str) -> tuple[float, float]:
            """How long each side takes alone, so the head starts can make both orders happen."""
            settings = given_pool(store, pool, min_pods=0, scale_down_delay_s=0)
            store.put_pod(new_pod(pool, f"{pool}-pod", 3, int(clock.now()), uid=None))
            store.heartbeat(pool, f"{pool}-pod", [], None, int(clock.now()))
            began = time.perf_counter()
            scale_down(RegisteredPool(pool, settings, False, None), threading.Barrier(1), 0)
            scaling = time.perf_counter() - began
            store.put_pod(new_pod(pool, f"{pool}-pod2", 3, int(clock.now()), uid=None))
            store.heartbeat(pool, f"{pool}-pod2", [], None, int(clock.now()))
            began = time.perf_counter()
            allocate(pool, threading.Barrier(1), 0)
            return scaling, time.perf_counter() - began

        scaling, allocating = round_trip("warm-up")
        # The side that is quicker to its decisive write gets a varied late start
        scale_lag = max(0.0, allocating - scaling) * 1.5 + 0.005
        alloc_lag = max(0.0, scaling - allocating) * 1.5 + 0.005
        with ThreadPoolExecutor(max_workers=2) as ex:
            for round_ in range(ROUNDS):
                # Given a pool whose one pod is ready and idle, and that wants no pod at all
                pool = f"r{round_}"
                settings = given_pool(store, pool, min_pods=0, scale_down_delay_s=0)
                name = f"{pool}-pod"
                created = kube.add_pod(
                    NS,
                    {
                        "metadata": {"name": name, "labels": {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY}},
                        "spec": {"containers": [{"name": "agent", "image": "x"}]},
                        "status": {"phase": "Running"},
                    },
                )
                store.put_pod(new_pod(pool, name, 3, int(clock.now()), uid=created["metadata"]["uid"]))
                store.heartbeat(pool, name, [], "10.0.0.1", int(clock.now()))
                # When a dispatch and a scale-down race for it (varied head starts, both orders)
                start = threading.Barrier(2)
                record = RegisteredPool(pool, settings, False, None)
                got = ex.submit(allocate, pool, start, jitter.uniform(0, alloc_lag))
                removed = ex.submit(scale_down, record, start, jitter.uniform(0, scale_lag))
                allocated, scaled = got.result(), removed.result()
                # Then never both, and a task is only ever held on a live pod
                assert allocated != bool(scaled), f"round {round_}: allocated={allocated} removed={scaled}"
                item = store.get_pod(pool, name)
                if allocated:
                    assert item is not None
                    assert item.state is PodState.READY
                    assert item.busy == 1
                    assert kube.pod(NS, name) is not None, "a pod holding a task was deleted"
                    outcomes["allocated"] += 1
                else:
                    assert item is None
                    assert kube.pod(NS, name) is None
                    outcomes["scaled_down"] += 1
    assert outcomes["allocated"] > 0, outcomes
    assert outcomes["scaled_down"] > 0, outcomes
