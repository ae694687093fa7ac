"""The roll-out's rules as a table of cases (pure: no table, no cluster)."""

from __future__ import annotations

import pytest

from podslots import rollout
from podslots.model import Cordon, Pod, PodState, Slot, SlotStatus, TaskType, empty_slots
from podslots.scaling import Decision, Direction
from podslots.step_plan import plan, removal_order

OLD, NEW = "0000000000", "1111111111"


def pod(
    name: str,
    revision: str | None = NEW,
    busy: int = 0,
    *,
    state: PodState = PodState.READY,
    cordoned: str | None = None,
    cordons: frozenset[str] = frozenset(),
    reserved: int = 0,
    second_choice: bool = False,
) -> Pod:
    p = Pod(
        "p",
        name,
        state,
        empty_slots(3),
        revision=revision,
        cordoned=cordoned,
        cordons=cordons,
        second_choice=second_choice,
    )
    for i in range(busy):
        status = SlotStatus.RESERVED if i < reserved else SlotStatus.RUNNING
        p = p.with_slot(f"s{i}", Slot(status, f"{name}-t{i}", TaskType.PLAN_AND_APPLY, 1))
    return p


def steady(target: int) -> Decision:
    return Decision(Direction.NONE, target, "steady", None)


def test_a_pod_from_before_revisions_is_current_and_an_adopted_one_is_not():
    assert not pod("a", None).outdated(NEW)
    assert pod("a", "adopted").outdated(NEW)
    assert pod("a", OLD).outdated(NEW)


def test_the_first_step_of_a_rollout_creates_within_the_surge_and_retires_nothing():
    # Given two outdated pods in service and a target of 2, max_surge 1
    pods = [pod("o1", OLD, busy=1), pod("o2", OLD)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    # Then one current pod is created (2 + 1 = 3 live at most), and no old pod is retired yet
    assert (step.rolling, step.create, step.retire, step.drain) == (True, 1, [], [])
    # And both old pods become a second choice for allocation
    assert sorted((p.name, second) for p, second in step.rank) == [("o1", True), ("o2", True)]


def test_each_ready_current_pod_retires_one_outdated_pod_the_idle_first():
    pods = [pod("o1", OLD, busy=2), pod("o2", OLD), pod("n1", NEW)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert [p.name for p in step.retire] == ["o2"]
    assert [p.name for p in step.drain] == ["o2"]
    # o2 goes now, so one more current pod fits: 3 live - 1 + 1 = 3
    assert step.create == 1


def test_a_starting_current_pod_does_not_yet_retire_an_outdated_one():
    pods = [pod("o1", OLD), pod("o2", OLD), pod("n1", NEW, state=PodState.STARTING)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert step.retire == []
    assert step.create == 0  # 3 live pods = target + surge


def test_a_reserved_slot_keeps_its_retired_pod_which_still_counts_against_the_surge():
    # Given an old pod retired with a reservation, and two current pods carrying the pool
    pods = [pod("o1", OLD, busy=1, reserved=1, cordoned=Cordon.OUTDATED.value), pod("n1"), pod("n2")]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    # Then it is not drained (busy), nothing more is created, and the roll-out goes on
    assert (step.rolling, step.drain, step.create) == (True, [], 0)


@pytest.mark.parametrize(
    ("pods", "target", "surge", "expected"),
    [
        ([pod("o1", OLD), pod("o2", OLD)], 2, 1, 1),
        ([pod("o1", OLD), pod("o2", OLD)], 2, 2, 2),
        ([pod("o1", OLD), pod("o2", OLD)], 4, 1, 3),  # the load wants more: up to target + surge
        ([pod("o1", OLD), pod("n1"), pod("n2")], 2, 1, 0),  # enough current pods
        ([pod("o1", OLD, state=PodState.DRAINING), pod("n1")], 2, 1, 1),  # a draining pod counts for nothing
        ([pod(f"o{i}", OLD) for i in range(4)], 2, 1, 0),  # already above target + surge: nothing more
    ],
)
def test_to_create_stays_within_target_plus_surge(pods: list[Pod], target: int, surge: int, expected: int):
    assert rollout.to_create(pods, NEW, target, surge) == expected
    # a step never takes the pool above target + surge, nor above the size it already has
    live = rollout.live(pods)
    assert len(live) + expected <= max(target + surge, len(live))


def test_without_outdated_pods_an_operators_cordoned_idle_pod_is_drained_and_a_step_up_replaces_it():
    pods = [pod("a", busy=3), pod("b", cordoned=Cordon.OPERATOR.value)]
    step = plan(pods, Decision(Direction.UP, 2, "utilization 100% above 80%", None), NEW, 1, steady_size=1)
    assert (step.rolling, [p.name for p in step.drain], step.create) == (False, ["b"], 1)


def test_a_plain_step_down_drains_idle_pods_in_service_and_counts_what_it_wants_gone():
    pods = [pod("a", busy=1), pod("b"), pod("c")]
    step = plan(pods, Decision(Direction.DOWN, 1, "low", 0), NEW, 1, steady_size=3)
    assert (sorted(p.name for p in step.drain), step.scale_down) == (["b", "c"], 2)


def test_a_current_pod_left_in_the_second_choice_partition_is_ranked_first_again():
    # (the template went back to the revision these pods were made from)
    pods = [pod("n1", second_choice=True), pod("o1", OLD)]
    step = plan(pods, steady(2), NEW, 1, steady_size=2)
    assert sorted((p.name, second) for p, second in step.rank) == [("n1", False), ("o1", True)]


def test_the_note_of_an_observed_step_names_what_it_would_do_and_not_the_moving_figures():
    step = plan([pod("a"), pod("b")], Decision(Direction.DOWN, 1, "utilization 0% below 20% for 61s", 0), NEW, 1, 2)
    assert step.note() == "down to 1; delete a"
    later = plan([pod("a"), pod("b")], Decision(Direction.DOWN, 1, "utilization 0% below 20% for 121s", 0), NEW, 1, 2)
    assert later.note() == step.note()


def test_the_view_shows_pods_per_revision_and_what_holds_the_old_ones():
    pods = [pod("o1", OLD, busy=2, reserved=1, cordoned=Cordon.OUTDATED.value), pod("n1"), pod("n2")]
    view = rollout.view(pods, NEW).as_dict()
    assert view["pods_by_revision"] == {OLD: 1, NEW: 2}
    assert view["rolling"] is True
    assert view["outdated"] == [
        {
            "pod": "o1",
            "revision": OLD,
            "state": "ready",
            "cordoned": "outdated revision",
            "cordon_reasons": ["outdated revision"],
            "running": 1,
            "reserved": 1,
        }
    ]


def test_an_outdated_pod_an_operator_cordoned_is_retired_at_once_whatever_the_current_pods():
    # Given an outdated busy pod under an operator's cordon, and no current pod ready yet
    pods = [pod("o1", OLD, busy=1, cordoned=Cordon.OPERATOR.value), pod("o2", OLD), pod("n1", state=PodState.STARTING)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    # Then the roll-out marks it retired now (it serves nothing), and keeps the old pod that serves
    assert [p.name for p in step.retire] == ["o1"]
    # And nothing is drained while it is busy
    assert step.drain == []


def test_an_idle_outdated_pod_already_cordoned_is_drained_once_and_retired():
    pods = [pod("o1", OLD, cordoned=Cordon.OPERATOR.value), pod("n1"), pod("n2")]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert [p.name for p in step.retire] == ["o1"]
    assert [p.name for p in step.drain] == ["o1"]


def test_an_outdated_pod_already_retired_is_not_retired_again():
    both = frozenset({Cordon.OPERATOR.value, Cordon.OUTDATED.value})
    pods = [pod("o1", OLD, busy=1, cordoned=Cordon.OUTDATED.value, cordons=both), pod("n1")]
    assert rollout.to_retire(pods, NEW, 1) == []


def test_removal_order_takes_sick_then_idle_pods_and_never_one_with_a_reserved_slot():
    # Given a pod whose only marked slot is reserved, an idle pod, a starting pod and an unhealthy one
    reserved = Pod("tf", "r", PodState.READY, empty_slots(3)).with_slot(
        "s1", Slot(SlotStatus.RESERVED, "x", TaskType.PLAN_AND_APPLY, 1, 99)
    )
    idle = Pod("tf", "i", PodState.READY, empty_slots(3))
    starting = Pod("tf", "s", PodState.STARTING, empty_slots(3))
    sick = Pod("tf", "u", PodState.UNHEALTHY, empty_slots(3))
    # Then the unhealthy one goes first, then the idle one; the reserved one counts as busy
    assert [p.name for p in removal_order([reserved, idle, starting, sick])] == ["u", "i"]
