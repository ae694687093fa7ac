"""A beat that does not say what it holds judges nothing (issue 16, failures 5 and 7).

Through the real heartbeat, allocate and reconcile handlers, on moto and the Kubernetes API
stand-in. Reconcile frees a slot as leaked only on the word of a beat that listed the agent's tasks
(`held_tasks`, `[]` included), and only while that listing is still the one it read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from local.moto_server import MotoServer
from local.table_faults import Fault
from podslots.allocation import AllocationRequest, Allocator
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.model import Pod, PodState, TaskStatus, TaskType, new_pod
from podslots.store import SlotStore, StoreConflict
from tests.conftest import BusTap
from tests.integration.conftest import Answer, Api
from tests.integration.test_reconcile import POOL, ClusterWorld, kube, lost_events, world
from tests.support.least_privilege import as_another_process
from tests.support.pods import given_pool

__all__ = ["kube", "world"]  # the reconcile tests' fixtures: a pool in moto and in the stand-in

LEAK_GRACE_S = 600  # as `world` sets it, with heartbeat_timeout_s 120


def beat(api: Api, pod: str, body: dict[str, Any]) -> Answer:
    """A beat through the heartbeat handler, its body as the agent sent it."""
    return api.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", body, pool=POOL, pod=pod)


def task_status(store: SlotStore, task_id: str) -> TaskStatus:
    task = store.get_task(task_id)
    assert task is not None
    return task.status


def slot_task(store: SlotStore, pod: str, key: str) -> str | None:
    item = store.get_pod(POOL, pod)
    assert item is not None
    return item.slots[key].task_id


@pytest.fixture
def running(world: ClusterWorld, api: Api) -> tuple[str, str]:
    """A one-slot pod, ready, running task `t1` allocated through the allocate handler."""
    pod = world.pod(f"{POOL}-a", slots=1)
    answer = api.allocate(POOL, "t1")
    assert (answer.status, answer.body["pod"]) == (201, pod)
    return pod, answer.body["slot"]


def test_beats_that_do_not_list_their_tasks_keep_the_running_task_past_the_leak_grace(
    world: ClusterWorld, api: Api, bus: BusTap, running: tuple[str, str]
):
    # Given a pod running t1, whose agent beats but cannot read its task list (or predates the field)
    pod, slot = running
    listed_before = world.store.get_pod(POOL, pod)
    assert listed_before is not None
    # When it beats `{}` every 100 s for longer than the leak grace, reconcile running after each beat
    for _ in range(LEAK_GRACE_S // 100 + 2):
        world.clock.advance(100)
        answer = beat(api, pod, {})
        assert (answer.status, answer.body["state"]) == (200, "ready")
        report = world.reconcile()
        assert "released" not in report
    # Then the task still runs on its slot, the pod is alive, and no task was reported lost
    assert task_status(world.store, "t1") is TaskStatus.RUNNING
    assert slot_task(world.store, pod, slot) == "t1"
    item = world.store.get_pod(POOL, pod)
    assert item is not None
    assert item.state is PodState.READY
    assert lost_events(bus) == []
    # And those beats left the last listing as it was: they said nothing about the tasks
    assert (item.held_tasks, item.held_at) == (listed_before.held_tasks, listed_before.held_at)
    assert item.heartbeat_at == int(world.clock.now())
    # And the slot is not handed to a second task
    assert api.allocate(POOL, "t2").status == 503


def test_a_beat_that_lists_nothing_still_frees_the_forgotten_slot_after_the_leak_grace(
    world: ClusterWorld, api: Api, bus: BusTap, running: tuple[str, str]
):
    # Given a pod running t1, whose agent lists its tasks and no longer lists t1
    pod, slot = running
    world.clock.advance(LEAK_GRACE_S + 1)
    assert beat(api, pod, {"held_tasks": []}).body["held_at"] == int(world.clock.now())
    # When reconcile runs
    report = world.reconcile()
    # Then the slot is freed and the task reported lost, as leaked
    assert report["released"] == ["t1"]
    assert task_status(world.store, "t1") is TaskStatus.LOST
    assert slot_task(world.store, pod, slot) is None
    assert [e["reason"] for e in lost_events(bus)] == ["leaked"]


def test_a_beat_without_the_list_after_one_that_lists_nothing_does_not_save_the_forgotten_task(
    world: ClusterWorld, api: Api, running: tuple[str, str]
):
    # Given an agent that listed nothing past the grace, then could not read its list
    pod, _ = running
    world.clock.advance(LEAK_GRACE_S + 1)
    beat(api, pod, {"held_tasks": []})
    world.clock.advance(30)
    beat(api, pod, {"held_tasks": None})
    # When reconcile runs, Then it judges from the listing beat, still recent
    assert world.reconcile()["released"] == ["t1"]


def interleaved(world: ClusterWorld, monkeypatch: pytest.MonkeyPatch, step: Callable[[], Answer]) -> None:
    """Run `step` after reconcile has read the pod and decided, just before its release is written."""
    store = world.handler.reconciler.store
    release = store.release_leaked

    def stepped_in(pod: Pod, key: str, now: int, event_id: str) -> None:
        assert as_another_process(step).status == 200
        release(pod, key, now, event_id)

    monkeypatch.setattr(store, "release_leaked", stepped_in)


def test_a_listing_beat_between_reconciles_read_and_its_release_keeps_the_task_on_its_slot(
    world: ClusterWorld, api: Api, bus: BusTap, running: tuple[str, str], monkeypatch: pytest.MonkeyPatch
):
    # Given an agent slow to write t1's file: past the grace its beat lists nothing
    pod, slot = running
    world.clock.advance(LEAK_GRACE_S + 1)
    beat(api, pod, {"held_tasks": []})
    # When its next beat, listing t1, lands after reconcile read the pod and before it releases the slot
    world.clock.advance(1)
    interleaved(world, monkeypatch, lambda: beat(api, pod, {"held_tasks": ["t1"]}))
    report = world.reconcile()
    # Then the release is refused: t1 still runs on its slot, and nothing is reported lost
    assert "released" not in report
    assert task_status(world.store, "t1") is TaskStatus.RUNNING
    assert slot_task(world.store, pod, slot) == "t1"
    assert lost_events(bus) == []
    # And the next allocation does not get the slot t1 runs on
    assert api.allocate(POOL, "t2").status == 503
    # And the next run judges from the new listing: nothing to release
    monkeypatch.undo()
    assert "released" not in world.reconcile()
    assert task_status(world.store, "t1") is TaskStatus.RUNNING


def test_a_beat_without_the_list_between_reconciles_read_and_its_release_changes_nothing_judged(
    world: ClusterWorld, api: Api, running: tuple[str, str], monkeypatch: pytest.MonkeyPatch
):
    # Given an agent that listed nothing past the grace
    pod, slot = running
    world.clock.advance(LEAK_GRACE_S + 1)
    beat(api, pod, {"held_tasks": []})
    # When a beat that does not say what it holds lands between reconcile's read and its release
    world.clock.advance(1)
    interleaved(world, monkeypatch, lambda: beat(api, pod, {}))
    # Then the listing judged is still the last one: the slot is freed
    assert world.reconcile()["released"] == ["t1"]
    assert slot_task(world.store, pod, slot) is None


def test_a_release_written_from_a_stale_read_is_refused(world: ClusterWorld, api: Api, running: tuple[str, str]):
    # Given reconcile's read of a pod whose last listing, past the grace, left t1 out
    pod, slot = running
    world.clock.advance(LEAK_GRACE_S + 1)
    beat(api, pod, {"held_tasks": []})
    stale = world.store.get_pod(POOL, pod)
    assert stale is not None
    # When the agent lists t1 again, and the release is then written from the stale read
    world.clock.advance(1)
    beat(api, pod, {"held_tasks": ["t1"]})
    with pytest.raises(StoreConflict) as refused:
        world.store.release_leaked(stale, slot, int(world.clock.now()), "stale-read")
    assert refused.value.failed("slot")  # the pod item's part: the listing it was judged from moved
    # Then t1 still runs on its slot
    assert task_status(world.store, "t1") is TaskStatus.RUNNING
    assert slot_task(world.store, pod, slot) == "t1"


def test_a_beat_without_the_list_reopens_an_unhealthy_pod(world: ClusterWorld, api: Api, running: tuple[str, str]):
    # Given a pod turned unhealthy by its silence
    pod, _ = running
    world.clock.advance(121)
    assert world.reconcile()["unhealthy"] == [pod]
    # When its agent beats without saying what it holds
    answer = beat(api, pod, {})
    # Then the pod is ready again, its task untouched
    assert (answer.status, answer.body["state"]) == (200, "ready")
    assert task_status(world.store, "t1") is TaskStatus.RUNNING


# ---- the release under the table's transient faults (moto's server with the fault injector)


def leaked_slot(store: SlotStore, clock: ManualClock) -> Pod:
    """A one-slot pod whose last listing, past the grace, leaves its running task `t1` out: as read."""
    given_pool(store, POOL)
    store.put_pod(new_pod(POOL, f"{POOL}-a", 1, int(clock.now()), uid="u-a"))
    store.heartbeat(POOL, f"{POOL}-a", [], None, int(clock.now()))
    Allocator(store, RecordingPublisher(), clock).allocate(AllocationRequest(POOL, "t1", TaskType.PLAN))
    clock.advance(LEAK_GRACE_S + 1)
    store.heartbeat(POOL, f"{POOL}-a", [], None, int(clock.now()))
    pod = store.get_pod(POOL, f"{POOL}-a")
    assert pod is not None
    return pod


def test_a_leak_release_met_by_a_transaction_conflict_changes_nothing_and_can_be_written_again(
    server: MotoServer, clock: ManualClock
):
    # Given a leaked slot as reconcile read it, and a table that cancels the next transaction
    store = SlotStore()
    read = leaked_slot(store, clock)
    server.dispatcher.faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT)
    # When the release is written, Then it is refused as a conflict (no condition failed), nothing applied
    with pytest.raises(StoreConflict) as refused:
        store.release_leaked(read, "s0", int(clock.now()), "e1")
    assert not refused.value.failed("slot")
    assert task_status(store, "t1") is TaskStatus.RUNNING
    # And the next run's write, from the same read, releases it once
    store.release_leaked(read, "s0", int(clock.now()), "e2")
    assert task_status(store, "t1") is TaskStatus.LOST
    assert slot_task(store, read.name, "s0") is None
    assert [e.kind for e in store.events(POOL, 10)].count("TaskLost") == 1


def test_a_leak_release_whose_answer_was_lost_is_applied_once(server: MotoServer, clock: ManualClock):
    # Given a leaked slot as reconcile read it, and a table that loses the answer of the next transaction
    store = SlotStore()
    read = leaked_slot(store, clock)
    server.dispatcher.faults.next("TransactWriteItems", Fault.ANSWER_LOST)
    # When the release is written, Then the client's retry meets its own write: no error, one release
    store.release_leaked(read, "s0", int(clock.now()), "e1")
    assert server.dispatcher.faults.injected[Fault.ANSWER_LOST] == 1
    assert task_status(store, "t1") is TaskStatus.LOST
    assert [e.kind for e in store.events(POOL, 10)].count("TaskLost") == 1
