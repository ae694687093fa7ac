"""The pool's history names what each autoscale step changed (issue 18), through the real handlers on
moto and the Kubernetes API stand-in: the pods created and drained, which pod replaced which in a
roll-out, and a step that leaves the size in service as it was is not told as a `PoolScaled`."""

from __future__ import annotations

from typing import Any

import pytest

from local.kube_api import KubeApiStandIn
from podslots.clock import ManualClock
from podslots.store import SlotStore
from tests.integration.conftest import Api
from tests.integration.test_rollout import NEW, NS, POOL, World

STEP_KINDS = ("PoolScaled", "PoolRolled", "PodsDrained", "ScaleBlocked")


@pytest.fixture
def world(api: Api, store: SlotStore, kube: KubeApiStandIn, clock: ManualClock) -> World:
    w = World(api, store, kube, clock)
    w.put()
    w.minute()  # autoscale creates min_pods pods
    w.minute()  # ... and they come up
    return w


def steps(world: World) -> list[tuple[str, dict[str, Any]]]:
    """Every step the history tells, oldest first."""
    return [(e.kind, e.detail) for e in reversed(world.store.events(POOL, 200)) if e.kind in STEP_KINDS]


def test_a_step_up_names_the_pods_it_created(world: World):
    # Given a new pool of min_pods 2 (the fixture's first minute created them)
    # Then the history's PoolScaled names the two pods, and the bus says the same
    ((kind, scaled),) = steps(world)
    assert (kind, scaled["direction"], scaled["before"], scaled["after"]) == ("PoolScaled", "up", 0, 2)
    assert sorted(scaled["pods_created"]) == sorted(world.pods())
    assert world.bus.of("PoolScaled")[0]["pods_created"] == scaled["pods_created"]


def test_a_drained_cordoned_pod_appears_in_the_history_and_is_no_scale_step(world: World):
    # Given a pod an operator cordoned while it held a task, replaced meanwhile to keep min_pods
    pod = world.api.allocate(POOL, "a", "plan").body["pod"]
    assert world.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=POOL, pod=pod).status == 200
    world.minute()
    # When its task ends and the next step drains it
    world.api.status("a", "success")
    world.minute()
    assert world.kube.pod(NS, pod) is None
    # Then the history names it as drained, in a step that is not a PoolScaled (2 in service before and after)
    kind, drained = steps(world)[-1]
    assert (kind, drained["pods_drained"], drained["before"], drained["after"]) == ("PodsDrained", [pod], 2, 2)
    assert world.bus.of("PodsDrained")[-1]["pods_drained"] == [pod]
    # And no step the history calls PoolScaled left the size in service as it was
    assert all(d["before"] != d["after"] for k, d in steps(world) if k == "PoolScaled")


def test_a_rollout_says_which_pod_replaced_which_and_is_not_announced_as_a_scale_step(world: World):
    # Given a pool of two old pods
    old = set(world.pods())
    # When the image changes and the pool rolls to the end
    world.put(image=NEW)
    for _ in range(8):
        world.minute()
    new = world.revision()
    assert set(world.pods().values()) == {new}
    told = steps(world)
    # Then every old pod is named as replaced by a current pod, and named as drained
    replaced = [r for _, d in told for r in d.get("replaced", [])]
    assert {r["pod"] for r in replaced} == old
    current = {p.name for p in world.store.pods(POOL)} | {n for _, d in told for n in d.get("pods_created", [])}
    assert all(r["by"] in current and r["by"] not in old for r in replaced)
    assert old <= {n for _, d in told for n in d.get("pods_drained", [])}
    # And the roll-out's steps that kept the size in service are PoolRolled, never PoolScaled n -> n
    assert any(k == "PoolRolled" for k, _ in told)
    assert all(d["before"] != d["after"] for k, d in told if k == "PoolScaled")
    assert all(d["before"] != d["after"] for d in world.bus.of("PoolScaled"))
