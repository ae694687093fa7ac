"""Every decision of an autoscale step, as a table of cases (pure: no table, no cluster).

The executor used to make some of these itself (the closed or plain drain, the creates counted again
after the drains, what is blocked, how the step is told, observe's arithmetic); they are the plan's
now, so these tests see all of it.
"""

from __future__ import annotations

import pytest

from podslots.model import Cordon
from podslots.pool_mode import PoolMode
from podslots.scaling import Decision, Direction
from podslots.step_plan import Done, blocked_note, plan, starting_after
from tests.unit.test_rollout_rules import NEW, OLD, pod, steady

DOWN_TO_1 = Decision(Direction.DOWN, 1, "low", 0)
UP_TO_3 = Decision(Direction.UP, 3, "high", None)


def names(pods: list) -> list[str]:
    return [p.name for p in pods]


def test_a_step_down_splits_its_drains_into_closed_and_plain():
    # Given an operator's cordoned idle pod, a busy pod and two idle ones in service
    pods = [pod("c", cordoned=Cordon.OPERATOR.value), pod("a", busy=1), pod("b"), pod("d")]
    step = plan(pods, Decision(Direction.DOWN, 2, "low", 0), NEW, 1, steady_size=3)
    # Then the cordoned pod is a closed drain (any state), one idle pod a plain one, the other a spare
    assert (names(step.closed), names(step.plain), names(step.spare), step.scale_down) == (["c"], ["b"], ["d"], 1)
    assert names(step.drain) == ["c", "b"]


def test_a_rollout_drains_its_retired_idle_pods_as_closed_and_none_as_plain():
    pods = [pod("n1"), pod("n2"), pod("o1", OLD)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert (names(step.retire), names(step.closed), step.plain) == (["o1"], ["o1"], [])


@pytest.mark.parametrize(
    ("retired", "drained"),
    [
        (["o1"], ["c", "o1"]),  # the cordon took: the retired pod is drained
        ([], ["c"]),  # the cordon did not take (the pod went): its drain is stale, dropped
    ],
)
def test_a_retired_pods_drain_holds_only_when_its_cordon_took(retired: list[str], drained: list[str]):
    pods = [pod("n1"), pod("n2"), pod("o1", OLD), pod("c", cordoned=Cordon.OPERATOR.value)]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert names(step.closed_drains(retired)) == drained


@pytest.mark.parametrize(
    ("removed", "creates"),
    [
        (["o1", "o2"], 2),  # both old idle pods drained: two current pods to reach the target of 2
        (["o1"], 1),  # one drain lost to an allocation: its pod still counts against the surge
        ([], 0),  # none drained: no room within a surge of 0
    ],
)
def test_a_rollout_creates_what_its_drains_leave_room_for(removed: list[str], creates: int):
    pods = [pod("o1", OLD, cordoned=Cordon.OUTDATED.value), pod("o2", OLD, cordoned=Cordon.OUTDATED.value)]
    step = plan(pods, steady(2), NEW, max_surge=0, steady_size=2)
    assert step.creates_after(removed) == creates


def test_a_plain_step_up_creates_what_it_planned_whatever_the_drains_did():
    pods = [pod("a", busy=3), pod("b", cordoned=Cordon.OPERATOR.value)]
    step = plan(pods, UP_TO_3, NEW, 1, steady_size=1)
    assert (step.create, step.creates_after([]), step.creates_after(["b"])) == (2, 2, 2)


@pytest.mark.parametrize(("plain_removed", "blocked"), [(0, 2), (1, 1), (2, 0), (3, 0)])
def test_what_a_step_down_lacks_after_its_drains_is_blocked(plain_removed: int, blocked: int):
    step = plan([pod("a"), pod("b"), pod("c")], DOWN_TO_1, NEW, 1, steady_size=3)
    assert step.blocked_after(plain_removed) == blocked


@pytest.mark.parametrize(
    ("pods", "decision", "done", "told"),
    [
        # a step up that created pods: PoolScaled, 1 -> 3
        ([pod("a", busy=3)], UP_TO_3, Done(created=["x", "y"]), ("PoolScaled", Direction.UP, 1, 3)),
        # a step down that drained one pod: PoolScaled, 3 -> 2
        (
            [pod("a"), pod("b"), pod("c")],
            DOWN_TO_1,
            Done(removed=["a"], blocked=1),
            ("PoolScaled", Direction.DOWN, 3, 2),
        ),
        # a step down that met only busy pods: ScaleBlocked, not PoolScaled 3 -> 3
        ([pod("a", busy=1), pod("b", busy=1)], DOWN_TO_1, Done(blocked=1), ("ScaleBlocked", Direction.DOWN, 2, 2)),
        # a step that drained only a cordoned pod (not in service): PodsDrained, 1 -> 1
        (
            [pod("a", busy=1), pod("c", cordoned=Cordon.OPERATOR.value)],
            steady(1),
            Done(removed=["c"]),
            ("PodsDrained", Direction.DOWN, 1, 1),
        ),
        # a roll-out step that retired one pod and created one: PoolRolled, 2 -> 2
        (
            [pod("n1"), pod("o1", OLD, busy=1)],
            steady(1),
            Done(created=["n2"], retired=["o1"]),
            ("PoolRolled", Direction.UP, 2, 2),
        ),
        # a step that did nothing: nothing to tell
        ([pod("a", busy=1)], steady(1), Done(), (None, Direction.NONE, 1, 1)),
    ],
)
def test_how_a_step_is_told_follows_from_what_it_changed(pods, decision, done, told):
    outcome = plan(pods, decision, NEW, 1, steady_size=len(pods)).outcome(done)
    assert (outcome.kind, outcome.direction, outcome.before, outcome.after) == told


def test_a_rollout_step_says_which_pod_replaced_which_and_how_many_old_pods_are_left():
    # Given two current ready pods (the newer made last) and two outdated pods in service
    pods = [pod("n1"), pod("n2"), pod("o1", OLD), pod("o2", OLD, busy=1)]
    pods = [p if p.name != "n2" else type(p)(**{**p.__dict__, "created_at": 100}) for p in pods]
    step = plan(pods, steady(2), NEW, max_surge=1, steady_size=2)
    assert names(step.retire) == ["o1", "o2"]
    # When both are retired and the idle one drained
    outcome = step.outcome(Done(removed=["o1"], retired=["o1", "o2"]))
    # Then each retired pod is paired with a current pod, the newest first
    assert outcome.replaced == [{"pod": "o1", "by": "n2"}, {"pod": "o2", "by": "n1"}]
    assert outcome.reason.startswith(f"roll-out to {NEW}, 1 old pod(s) left")


def test_what_an_observed_step_would_do_counts_the_planned_drains_and_the_blocked_rest():
    # Given a step down by 2 with one cordoned idle pod, one idle pod and one busy pod in service
    pods = [pod("c", cordoned=Cordon.OPERATOR.value), pod("a", busy=1), pod("b")]
    step = plan(pods, Decision(Direction.DOWN, 0, "low", 0), NEW, 1, steady_size=2)
    would = step.would("observe", "p")
    assert would is not None
    # Then it would remove the two it drains and the busy one it wants gone: 3
    assert (would.note, would.scale_up, would.scale_down) == ("down to 0; delete c, b", 0, 3)
    assert (would.detail["mode"], would.detail["delete"], would.detail["cordon"]) == ("observe", ["c", "b"], [])
    # And a step that does nothing records nothing
    assert plan([pod("a", busy=1)], steady(1), NEW, 1, 1).would("observe", "p") is None


@pytest.mark.parametrize(
    ("direction", "changed", "note"),
    [
        (Direction.DOWN, False, "blocked: down from 3 by 1"),
        (Direction.DOWN, True, None),
        (Direction.UP, False, None),
        (Direction.NONE, False, None),
    ],
)
def test_only_a_step_down_that_changed_nothing_is_noted_as_blocked(
    direction: Direction, changed: bool, note: str | None
):
    assert blocked_note(direction, 3, 1, changed=changed) == note


def test_the_starting_pods_after_a_step_are_those_read_less_the_removed_plus_the_created():
    from podslots.model import PodState

    pods = [pod("s1", state=PodState.STARTING), pod("s2", state=PodState.STARTING), pod("r")]
    assert starting_after(pods, ["s1"], ["x", "y"]) == 3


@pytest.mark.parametrize(
    ("mode", "allows"),
    [
        (PoolMode.ACTIVE, (True, True, True, True, True, False)),
        (PoolMode.OBSERVE, (False, False, False, False, True, True)),
        (PoolMode.PAUSED, (False, False, True, True, True, True)),
    ],
)
def test_each_mode_allows_what_its_table_says(mode: PoolMode, allows: tuple[bool, ...]):
    rules = (
        mode.may_scale,
        mode.may_delete,
        mode.may_empty_deleted_pool,
        mode.may_patch,
        mode.may_rank,
        mode.records_would,
    )
    assert rules == allows
