"""The simulation's alternative placements (`bench/day/podslots_policy.py`, `PLACEMENTS`), ranked
through podslots' own `placement_candidates` while swapped in."""

from __future__ import annotations

from bench.day.podslots_policy import placement_swapped
from podslots.model import IDLE_SLOT, Pod, PodState, Slot, SlotStatus, TaskType, placement_candidates


def _pod(name: str, *slots: Slot) -> Pod:
    keys = ("s0", "s1", "s2")
    return Pod(
        pool="p",
        name=name,
        state=PodState.READY,
        slots={k: slots[i] if i < len(slots) else IDLE_SLOT for i, k in enumerate(keys)},
    )


def _reserved(since: int) -> Slot:
    return Slot(SlotStatus.RESERVED, f"t{since}", TaskType.PLAN_AND_APPLY, since=since, reserved_until=since + 86400)


def _running_plan(since: int) -> Slot:
    return Slot(SlotStatus.RUNNING, f"r{since}", TaskType.PLAN, since=since)


# Given two pinned pods, the younger one fuller, a pod running a short plan, and an empty pod
PODS = [
    _pod("young-fuller", _reserved(5000), _reserved(5100)),
    _pod("old", _reserved(1000)),
    _pod("plain", _running_plan(4000)),
    _pod("empty"),
]


def _order(pins: bool) -> list[str]:
    seen: list[str] = []
    for placement in placement_candidates(PODS, pins=pins):
        if placement.pod.name not in seen:
            seen.append(placement.pod.name)
    return seen


def test_podslots_own_placement_puts_a_pinning_task_on_the_fullest_pinned_pod() -> None:
    assert _order(pins=True) == ["young-fuller", "old", "plain", "empty"]


def test_oldest_pin_puts_a_pinning_task_on_the_pod_pinned_longest() -> None:
    with placement_swapped("oldest-pin"):
        assert _order(pins=True) == ["old", "young-fuller", "plain", "empty"]
        assert _order(pins=False) == ["plain", "young-fuller", "old", "empty"]  # other tasks: as podslots'


def test_fullness_alone_ignores_pinning_and_the_swap_is_undone() -> None:
    with placement_swapped("fullness"):
        assert _order(pins=False) == ["young-fuller", "old", "plain", "empty"]  # a pinned pod first: fuller

    assert _order(pins=False) == ["plain", "young-fuller", "old", "empty"]  # podslots' own again
