"""Cordon reasons as a set, on moto's HTTP server with the table fault injector: each reason is
added and removed on its own, old items read right, and no removal decided on a stale read (a
DELETE, a roll-out or another cordon slipped in between) reopens a pod.

A "concurrent" invocation is played by a store whose next pod read runs another real step right
after it answers, as in test_core_promise_edges.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest

from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.errors import Conflict, NoCapacity
from podslots.model import Cordon, Pod, PodState, TaskType, new_pod
from podslots.pools import PoolService
from podslots.store import SlotStore, StoreConflict
from podslots.store.keys import pod_sk, pool_pk
from tests.support.least_privilege import as_another_process
from tests.support.pods import given_pool, given_ready_pods

POOL = "terraform"
OPERATOR, OUTDATED, DELETED = Cordon.OPERATOR.value, Cordon.OUTDATED.value, Cordon.POOL_DELETED.value


class StoreWithAnInterloper(SlotStore):
    """The real store; after its next read of one pod, another invocation acts once."""

    def __init__(self) -> None:
        super().__init__()
        self.after_next_read: Callable[[], object] | None = None

    def get_pod(self, pool: str, pod: str) -> Pod | None:
        read = super().get_pod(pool, pod)
        interloper, self.after_next_read = self.after_next_read, None
        if interloper is not None:
            as_another_process(interloper)
        return read


class World:
    def __init__(self, server: MotoServer, clock: ManualClock) -> None:
        self.server, self.clock = server, clock
        self.store = StoreWithAnInterloper()
        self.pools = PoolService(self.store, clock)
        self.allocator = Allocator(self.store, RecordingPublisher(), clock)
        self.table = boto3.client("dynamodb", endpoint_url=server.url)
        given_pool(self.store, POOL)
        (self.pod,) = given_ready_pods(self.store, POOL)

    def raw(self) -> dict[str, Any]:
        """The pod's item as the table holds it."""
        key = {"pk": {"S": pool_pk(POOL)}, "sk": {"S": pod_sk(self.pod)}}
        return dict(self.table.get_item(TableName=self.server.table, Key=key, ConsistentRead=True)["Item"])

    def reasons(self) -> frozenset[str]:
        pod = self.store.get_pod(POOL, self.pod)
        assert pod is not None
        return pod.cordon_reasons

    def assert_item_consistent(self) -> None:
        """`cordoned` is present exactly while a reason is, and (invariant 3) `open_pool` exactly
        while the pod is ready and not cordoned."""
        item = self.raw()
        reasons = set(item.get("cordons", {}).get("SS", []))
        if reasons:
            assert item["cordoned"]["S"] in reasons
        open_expected = item["state"]["S"] == PodState.READY.value and "cordoned" not in item
        assert ("open_pool" in item) == open_expected


@pytest.fixture
def world(server: MotoServer, clock: ManualClock) -> World:
    return World(server, clock)


def test_each_reason_is_added_on_its_own_and_the_strongest_is_shown(world: World):
    # Given an operator's cordon
    assert world.pools.cordon(POOL, world.pod).changed
    # When the roll-out retires the pod as well
    retired, added = world.store.cordon(POOL, world.pod, OUTDATED)
    # Then both reasons hold, and `cordoned` names the roll-out's, which no operator takes back
    assert added
    assert retired is not None
    assert retired.cordon_reasons == {OPERATOR, OUTDATED}
    assert retired.cordoned == OUTDATED
    assert sorted(world.raw()["cordons"]["SS"]) == sorted([OPERATOR, OUTDATED])
    # And a reason added again is no change
    assert world.store.cordon(POOL, world.pod, OUTDATED)[1] is False
    world.assert_item_consistent()


def test_an_item_from_before_the_set_reads_as_one_reason_and_keeps_it_when_a_second_comes(world: World):
    # Given a pod cordoned by an older version: `cordoned` only, no set
    world.table.update_item(
        TableName=world.server.table,
        Key={"pk": {"S": pool_pk(POOL)}, "sk": {"S": pod_sk(world.pod)}},
        UpdateExpression="SET cordoned = :r REMOVE open_pool",
        ExpressionAttributeValues={":r": {"S": OPERATOR}},
    )
    # Then it reads as a set of that one reason
    assert world.reasons() == {OPERATOR}
    # When a pool deletion adds its own
    world.store.cordon(POOL, world.pod, DELETED)
    # Then the old reason is kept in the set beside the new one, and the flag names the stronger
    assert world.reasons() == {OPERATOR, DELETED}
    item = world.raw()
    assert sorted(item["cordons"]["SS"]) == sorted([OPERATOR, DELETED])
    assert item["cordoned"]["S"] == DELETED
    world.assert_item_consistent()


def test_an_old_items_operator_cordon_is_taken_back_and_the_pod_reopens(world: World):
    world.table.update_item(
        TableName=world.server.table,
        Key={"pk": {"S": pool_pk(POOL)}, "sk": {"S": pod_sk(world.pod)}},
        UpdateExpression="SET cordoned = :r REMOVE open_pool",
        ExpressionAttributeValues={":r": {"S": OPERATOR}},
    )
    change = world.pools.uncordon(POOL, world.pod)
    assert change.changed
    assert change.pod.takes_tasks
    item = world.raw()
    assert "cordoned" not in item
    assert "cordons" not in item
    assert item["open_pool"]["S"] == POOL
    assert world.allocator.allocate(AllocationRequest(POOL, "t", TaskType.PLAN)).pod == world.pod


def test_a_removal_decided_on_a_stale_read_changes_nothing(world: World):
    # Given a pod read with the operator's cordon only, then retired by a roll-out
    world.pools.cordon(POOL, world.pod)
    stale = world.store.get_pod(POOL, world.pod)
    assert stale is not None
    world.store.cordon(POOL, world.pod, OUTDATED)
    # When a removal of the operator's reason is written from the stale read
    # Then it is refused, and both reasons still hold
    with pytest.raises(StoreConflict):
        world.store.uncordon(stale, OPERATOR)
    assert world.reasons() == {OPERATOR, OUTDATED}
    world.assert_item_consistent()


def test_an_uncordon_racing_a_delete_of_the_pool_is_refused_and_the_pod_stays_closed(world: World):
    # Given an operator's cordon, and a DELETE of the pool landing right after the uncordon read the pod
    world.pools.cordon(POOL, world.pod)
    world.store.after_next_read = lambda: world.pools.delete(POOL)
    # When the uncordon goes on from what it read
    # Then it answers 409 (the pool is being deleted), and no task lands on the pod
    with pytest.raises(Conflict, match="being deleted"):
        world.pools.uncordon(POOL, world.pod)
    assert OPERATOR in world.reasons()
    with pytest.raises((Conflict, NoCapacity)):
        world.allocator.allocate(AllocationRequest(POOL, "t", TaskType.PLAN))
    world.assert_item_consistent()


def test_an_uncordon_racing_a_rollout_leaves_the_pod_closed(world: World):
    # Given an operator's cordon, and a roll-out retiring the pod right after the uncordon read it
    world.pools.cordon(POOL, world.pod)
    world.store.after_next_read = lambda: world.store.cordon(POOL, world.pod, OUTDATED)
    # When the uncordon goes on from what it read
    # Then it reads again and answers 409, and the pod stays closed with both reasons
    with pytest.raises(Conflict, match="outdated revision"):
        world.pools.uncordon(POOL, world.pod)
    assert world.reasons() == {OPERATOR, OUTDATED}
    world.assert_item_consistent()


def test_two_reasons_added_at_once_both_land(world: World):
    # Given a DELETE's cordon landing right after an operator's cordon read the pod
    world.store.after_next_read = lambda: world.store.cordon(POOL, world.pod, DELETED)
    # When the operator's cordon goes on (at the store, as a roll-out would)
    _, added = world.store.cordon(POOL, world.pod, OPERATOR)
    # Then both reasons hold, and the stronger is shown
    assert added
    assert world.reasons() == {OPERATOR, DELETED}
    assert world.raw()["cordoned"]["S"] == DELETED
    world.assert_item_consistent()


@pytest.mark.parametrize("fault", [Fault.TRANSACTION_CONFLICT, Fault.ANSWER_LOST, Fault.THROTTLE])
def test_an_uncordon_rides_out_table_faults(world: World, fault: Fault):
    # Given an operator's cordon, and a table that faults the uncordon's transaction twice
    world.pools.cordon(POOL, world.pod)
    world.server.dispatcher.faults.next("TransactWriteItems", fault, times=2)
    # When the operator takes it back
    change = world.pools.uncordon(POOL, world.pod)
    # Then the pod is back in service, said so (a lost answer's retry knew its own write), and the
    # item is whole
    assert change.changed
    assert change.pod.takes_tasks
    assert world.reasons() == frozenset()
    assert world.server.dispatcher.faults.injected[fault] == 2
    world.assert_item_consistent()
    assert world.allocator.allocate(AllocationRequest(POOL, "t", TaskType.PLAN)).pod == world.pod


@pytest.mark.parametrize("fault", [Fault.ANSWER_LOST, Fault.THROTTLE])
def test_a_cordon_rides_out_table_faults(world: World, fault: Fault):
    world.server.dispatcher.faults.next("UpdateItem", fault)
    change = world.pools.cordon(POOL, world.pod)
    assert change.changed
    assert change.pod.cordon_reasons == {OPERATOR}
    assert [e.kind for e in world.store.events(POOL, 10)] == ["PodCordoned"]
    world.assert_item_consistent()
    with pytest.raises(NoCapacity):
        world.allocator.allocate(AllocationRequest(POOL, "t", TaskType.PLAN))


def test_a_pod_put_with_a_reason_by_an_older_writer_reads_as_that_reason(world: World):
    # (reconcile adopting into a deleting pool writes `cordoned` on the new item, without a set)
    pod = new_pod(POOL, f"{POOL}-adopted", 3, int(world.clock.now()))
    world.store.put_pod(replace(pod, cordoned=DELETED))
    read = world.store.get_pod(POOL, f"{POOL}-adopted")
    assert read is not None
    assert read.cordon_reasons == {DELETED}
