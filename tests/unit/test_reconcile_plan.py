"""Reconcile's verdicts on one pod, as a table of cases (pure: no table, no cluster)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from podslots.cluster_pods import AgentState, AgentStatus
from podslots.model import Pod, PodState, Slot, SlotStatus, TaskType, empty_slots
from podslots.reconcile_plan import (
    Orphan,
    Protection,
    ended,
    gone,
    leaked_slots,
    never_came_up,
    orphan,
    protection,
    silent,
)
from podslots.settings import PoolSettings

SETTINGS = PoolSettings.model_validate(
    {"pod_template": {"image": "agent:1"}}
)  # startup 600 s, heartbeat 120 s, leak grace 600 s
POOL = "p"


@dataclass(frozen=True)
class Listed:
    """A listed pod as the verdicts read it (the fields a `ClusterPod` has)."""

    uid: str = "u1"
    phase: str = "Running"
    deleting: bool = False
    protected: bool = False
    unprotected: bool = True
    busy_label: str | None = None
    managed: bool = True
    created_at: float = 0.0
    agent: AgentStatus | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Failed", "Succeeded")


def item(state: PodState = PodState.READY, *, created_at: int = 0, uid: str | None = "u1", **more) -> Pod:
    return Pod(POOL, "a", state, empty_slots(2), uid=uid, created_at=created_at, **more)


def busy(p: Pod, key: str = "s0", since: int = 100, task: str = "t1") -> Pod:
    return p.with_slot(key, Slot(SlotStatus.RUNNING, task, TaskType.PLAN, since))


@pytest.mark.parametrize(
    ("pod", "listed", "now", "reason"),
    [
        (item(), Listed(), 1000, None),
        (item(), None, 1000, "vanished"),
        (item(PodState.STARTING, created_at=990), None, 1000, None),  # its create may be in flight
        (item(PodState.STARTING, created_at=900), None, 1000, "vanished"),
        (item(), Listed(uid="u2"), 1000, "replaced"),
        (item(), Listed(phase="Failed"), 1000, "pod failed"),
        (item(), Listed(deleting=True), 1000, "deleted"),
    ],
)
def test_a_pod_is_gone_for_good_only_for_a_reason(pod: Pod, listed: Listed | None, now: int, reason: str | None):
    assert gone(pod, listed, SETTINGS, now) == reason


EXITED = AgentStatus(AgentState.TERMINATED, exit_code=137)
WAITING = AgentStatus(AgentState.WAITING, reason="ImagePullBackOff")
RUNNING = AgentStatus(AgentState.RUNNING)


@pytest.mark.parametrize(
    ("listed", "now", "reason"),
    [
        (Listed(created_at=1, agent=RUNNING), 1000, None),
        (Listed(created_at=1), 1000, None),  # the kubelet said nothing of the agent: unknown, not dead
        (Listed(created_at=1, agent=EXITED), 1000, "agent exited (137)"),  # the sidecar keeps it Running
        (Listed(created_at=1, agent=AgentStatus(AgentState.TERMINATED)), 1000, "agent exited"),
        (Listed(created_at=1, agent=WAITING), 1000, "agent never started"),  # past the 600 s startup timeout
        (Listed(created_at=500, agent=WAITING), 1000, None),  # still within it
        (Listed(created_at=0, agent=WAITING), 1000, None),  # no creation time: not known to be late
        (Listed(created_at=1, agent=EXITED, managed=False), 1000, None),  # adopted: not our restart policy
        (Listed(created_at=1, agent=WAITING, managed=False), 1000, None),
        (Listed(phase="Failed", agent=RUNNING), 1000, "pod failed"),
    ],
)
def test_a_pod_has_ended_when_its_phase_or_its_agent_says_so(listed: Listed, now: int, reason: str | None):
    assert ended(listed, SETTINGS, now) == reason


def test_a_ready_pod_whose_agent_exited_is_gone_though_its_sidecar_keeps_it_running():
    assert (
        gone(busy(item(heartbeat_at=990)), Listed(created_at=1, agent=EXITED), SETTINGS, 1000) == "agent exited (137)"
    )


@pytest.mark.parametrize(
    ("pod", "late"),
    [
        (item(PodState.STARTING, created_at=0), True),
        (item(PodState.STARTING, created_at=500), False),
        (item(PodState.READY, created_at=0), False),
        (item(PodState.STARTING, created_at=0, revision="adopted"), False),  # adopted: it was running already
    ],
)
def test_a_pod_never_came_up_when_still_starting_past_its_timeout(pod: Pod, late: bool):
    assert never_came_up(pod, SETTINGS, now=1000) is late


@pytest.mark.parametrize(
    ("pod", "quiet"),
    [
        (item(heartbeat_at=900), False),
        (item(heartbeat_at=800), True),
        (item(PodState.UNHEALTHY, heartbeat_at=0), False),
    ],
)
def test_a_ready_pod_without_a_beat_for_the_timeout_is_silent(pod: Pod, quiet: bool):
    assert silent(pod, SETTINGS, now=1000) is quiet


@pytest.mark.parametrize(
    ("pod", "leaked"),
    [
        (busy(item(held_at=990, held_tasks=())), ["s0"]),  # a recent listing without it
        (busy(item(held_at=990, held_tasks=("t1",))), []),  # still listed
        (busy(item(held_at=None)), []),  # no listing beat: silence says nothing
        (busy(item(held_at=800)), []),  # the listing is too old
        (busy(item(held_at=990), since=800), []),  # within the leak grace
        (busy(item(held_at=990), since=995), []),  # taken after the listing
    ],
)
def test_a_slot_leaks_only_when_a_recent_listing_left_its_task_out(pod: Pod, leaked: list[str]):
    assert leaked_slots(pod, SETTINGS, now=1000) == leaked


@pytest.mark.parametrize(
    ("pod", "listed", "patch"),
    [
        (busy(item()), Listed(), Protection.PROTECT),
        (busy(item()), Listed(protected=True, unprotected=False, busy_label=POOL), None),
        (busy(item()), Listed(protected=True, unprotected=False, busy_label="other"), Protection.PROTECT),
        (item(), Listed(protected=True, unprotected=False, busy_label=POOL), Protection.UNPROTECT),
        (item(), Listed(busy_label=POOL), Protection.UNPROTECT),
        (item(), Listed(), None),
    ],
)
def test_busy_pods_are_protected_and_idle_ones_not(pod: Pod, listed: Listed, patch: Protection | None):
    assert protection(pod, listed, POOL) is patch


@pytest.mark.parametrize(
    ("listed", "owner", "deleting_pool", "verdict"),
    [
        (Listed(), None, False, Orphan.ADOPT),
        (Listed(), POOL, False, Orphan.ADOPT),
        (Listed(), "other", False, Orphan.REFUSE),
        (Listed(), None, True, Orphan.IGNORE),  # a deleting pool adopts nothing
        (Listed(deleting=True), None, False, Orphan.IGNORE),
        (Listed(phase="Succeeded"), POOL, False, Orphan.DELETE_FINISHED),
        (Listed(phase="Succeeded", managed=False), POOL, False, Orphan.IGNORE),  # another controller's
        (Listed(phase="Failed"), "other", False, Orphan.IGNORE),
        (Listed(agent=EXITED), POOL, False, Orphan.DELETE_FINISHED),  # never adopted: its sidecar would beat
        (Listed(created_at=1, agent=WAITING), POOL, False, Orphan.DELETE_FINISHED),
        (Listed(created_at=900, agent=WAITING), POOL, False, Orphan.ADOPT),  # still starting
    ],
)
def test_what_becomes_of_a_listed_pod_without_an_item(listed: Listed, owner: str | None, deleting_pool: bool, verdict):
    assert orphan(POOL, listed, owner, SETTINGS, 1000, deleting_pool=deleting_pool) is verdict
