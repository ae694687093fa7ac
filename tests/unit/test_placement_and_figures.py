"""Placement (bin-packing) and pool figures: pure rules, no I/O."""

from __future__ import annotations

import pytest

from podslots.model import (
    Pod,
    PodState,
    PoolFigures,
    Slot,
    SlotStatus,
    TaskType,
    empty_slots,
    is_pinned,
    new_pod,
    pins_a_pod,
    placement_candidates,
)


def pod(name: str, busy: int = 0, slots: int = 3, state: PodState = PodState.READY, used_at: int = 0) -> Pod:
    base = Pod("p", name, state, empty_slots(slots), last_used_at=used_at)
    for i in range(busy):
        base = base.with_slot(f"s{i}", Slot(SlotStatus.RUNNING, f"{name}-t{i}", TaskType.PLAN, 1))
    return base


def test_the_fullest_ready_pod_with_an_idle_slot_comes_first():
    candidates = placement_candidates([pod("a", busy=0), pod("b", busy=2), pod("c", busy=1)])
    assert [(c.pod.name, c.slot) for c in candidates] == [
        ("b", "s2"),
        ("c", "s1"),
        ("c", "s2"),
        ("a", "s0"),
        ("a", "s1"),
        ("a", "s2"),
    ]


def test_full_starting_unhealthy_and_draining_pods_take_no_task():
    pods = [
        pod("full", busy=3),
        pod("starting", state=PodState.STARTING),
        pod("sick", state=PodState.UNHEALTHY),
        pod("leaving", state=PodState.DRAINING),
    ]
    assert placement_candidates(pods) == []


def test_a_pod_with_fewer_idle_slots_left_wins_even_with_a_different_slot_count():
    # 1 idle of 4 beats 2 idle of 3: the pod closest to full is filled first
    candidates = placement_candidates([pod("three", busy=1, slots=3), pod("four", busy=3, slots=4)])
    assert candidates[0].pod.name == "four"


def test_ties_go_to_the_pod_used_most_recently_then_by_name():
    candidates = placement_candidates([pod("b", used_at=5), pod("a", used_at=5), pod("c", used_at=9)])
    assert [c.pod.name for c in candidates][::3] == ["c", "a", "b"]


def test_figures_count_capacity_only_on_ready_and_starting_pods():
    reserved = pod("r").with_slot("s0", Slot(SlotStatus.RESERVED, "x", TaskType.PLAN_AND_APPLY, 1, 99))
    figures = PoolFigures.of(
        [pod("idle"), pod("half", busy=2), pod("full", busy=3), pod("new", state=PodState.STARTING), reserved]
    )
    assert figures.slots_total == 15
    assert (figures.slots_running, figures.slots_reserved) == (5, 1)
    assert figures.slots_idle == 9
    assert figures.utilization == round(6 / 15, 4)
    assert (figures.pods_idle, figures.pods_partial, figures.pods_full) == (2, 2, 1)
    assert (figures.pods_ready, figures.pods_starting) == (4, 1)


def test_an_empty_pool_has_zero_utilization():
    assert PoolFigures.of([]).utilization == 0.0


def pinned_pod(name: str, plans: int = 1, busy: int = 0, slots: int = 3, reserved: bool = False) -> Pod:
    """A pod holding `plans` plan_and_apply tasks (reserved or running) and `busy` short tasks after them."""
    base = pod(name, slots=slots)
    status = SlotStatus.RESERVED if reserved else SlotStatus.RUNNING
    for i in range(plans):
        base = base.with_slot(f"s{i}", Slot(status, f"{name}-p{i}", TaskType.PLAN_AND_APPLY, 1))
    for i in range(plans, plans + busy):
        base = base.with_slot(f"s{i}", Slot(SlotStatus.RUNNING, f"{name}-t{i}", TaskType.PLAN, 1))
    return base


def best(pods: list[Pod], task_type: TaskType) -> str:
    return placement_candidates(pods, pins_a_pod(task_type))[0].pod.name


@pytest.mark.parametrize(
    ("pods", "task_type", "chosen", "why"),
    [
        ([pod("empty"), pinned_pod("pinned")], TaskType.PLAN, "pinned", "never an empty pod while one has room"),
        ([pod("empty"), pod("used", busy=1)], TaskType.PLAN_AND_APPLY, "used", "never an empty pod, even unpinned"),
        ([pod("free", busy=2), pinned_pod("pinned")], TaskType.PLAN_AND_APPLY, "pinned", "pins go together"),
        ([pod("free", busy=1), pinned_pod("pinned", busy=1)], TaskType.PLAN, "free", "short tasks stay off pins"),
        ([pod("free", busy=1), pinned_pod("pinned", busy=1)], TaskType.APPLY, "free", "an apply pins nothing"),
        ([pinned_pod("one"), pinned_pod("two", plans=2)], TaskType.PLAN_AND_APPLY, "two", "then the fullest"),
        ([pod("a", busy=1), pod("b", busy=2)], TaskType.PLAN_AND_APPLY, "b", "no pinned pod: the fullest"),
        ([pinned_pod("r", reserved=True), pod("f", busy=1)], TaskType.PLAN_AND_APPLY, "r", "a reservation pins"),
        ([pinned_pod("p"), pod("e", slots=1)], TaskType.PLAN, "p", "partly used beats an emptier pod with fewer idle"),
    ],
)
def test_placement_keeps_pinning_tasks_together_without_opening_an_empty_pod(
    pods: list[Pod], task_type: TaskType, chosen: str, why: str
):
    assert best(pods, task_type) == chosen, why


def test_three_plans_on_an_empty_pool_of_three_slot_pods_share_one_pod():
    pods = [pod("a"), pod("b"), pod("c")]
    for n in range(3):
        choice = placement_candidates(pods, pins=True)[0]
        task = Slot(SlotStatus.RUNNING, f"plan-{n}", TaskType.PLAN_AND_APPLY, 1)
        pods = [p.with_slot(choice.slot, task) if p.name == choice.pod.name else p for p in pods]
    assert sorted(p.busy for p in pods) == [0, 0, 3]


def test_a_pod_is_pinned_by_a_reservation_or_a_plan_and_apply_and_not_by_others():
    assert is_pinned(pinned_pod("p"))
    assert is_pinned(pinned_pod("r", reserved=True))
    assert not is_pinned(pod("b", busy=3))
    assert not is_pinned(pod("e"))


def test_slots_are_gone_over_by_number_not_as_text():
    # Given a pod of twelve slots, s2 and s10 running (as text, "s10" sorts before "s2")
    twelve = pod("a", slots=12).with_slot("s10", Slot(SlotStatus.RUNNING, "t10", TaskType.PLAN, 1))
    twelve = twelve.with_slot("s2", Slot(SlotStatus.RUNNING, "t2", TaskType.PLAN, 1))

    # When its slots are listed, Then s0 to s11 in that order, and the idle ones likewise
    assert [key for key, _ in twelve.slots_in_order()] == [f"s{i}" for i in range(12)]
    assert twelve.idle_slot_keys() == [f"s{i}" for i in range(12) if i not in (2, 10)]
    assert [key for key, slot in twelve.slots_in_order() if not slot.is_idle] == ["s2", "s10"]


def test_a_new_pod_starts_with_every_slot_idle_and_no_beat():
    # Given the pure constructor (autoscale records it before the create, reconcile for an adoption)
    started = new_pod("p", "p-a", 3, 100, uid="u", revision="abcdef0123")

    # Then it is starting, idle, unseen by its agent, and stamped with the time and the revision
    assert (started.state, started.busy, started.slot_count) == (PodState.STARTING, 0, 3)
    assert (started.heartbeat_at, started.created_at, started.last_used_at) == (None, 100, 100)
    assert (started.uid, started.revision) == ("u", "abcdef0123")
