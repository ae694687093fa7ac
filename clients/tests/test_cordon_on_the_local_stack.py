"""The pod cordon and the roll-out view through the clients, the CLI and the agent, against
`make local`'s real HTTP server (podslots' real handlers on moto and the Kubernetes API stand-in,
on a virtual clock that moves only when a test moves it)."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import pytest
from conftest import LocalApi, eventually, first_line_with, sidecar

from podslots_client import Agent, AgentExit, Conflict, NoCapacity, NotFound, Pod, cli


def podslots(local_api: LocalApi, *argv: str) -> tuple[int, str]:
    """The CLI's exit status and what it printed on stdout."""
    out = io.StringIO()
    code = cli.main([*argv, "--url", local_api.url, "--no-sign"], env={}, out=out)
    return code, out.getvalue()


def test_given_a_busy_pod_when_an_operator_cordons_it_then_its_task_runs_on_and_no_new_task_comes_until_uncordoned(
    local_api: LocalApi,
) -> None:
    # Given a ready pod running a task, the pool's only pod
    pod, _ = local_api.ready_pod("cordon")
    queue, pools = local_api.queue(), local_api.pools()
    running = queue.allocate("cordon", "run-1", "plan")

    # When an operator cordons it, twice
    first = pools.cordon("cordon", pod)
    again = pools.cordon("cordon", pod)

    # Then the first call changed it and the second found it so; its task still runs there
    assert (first.changed, first.pod.pod, first.pod.cordoned) == (True, pod, "operator")
    assert (again.changed, again.pod.cordoned) == (False, "operator")
    assert first.pod.revision == pools.get("cordon").revision
    assert [(s.slot, s.status, s.task_id) for s in first.pod.slots if s.task_id] == [(running.slot, "running", "run-1")]
    # And no new task goes to it
    with pytest.raises(NoCapacity):
        queue.allocate("cordon", "run-2", "plan", deadline_s=0)

    # When the operator takes the cordon back, twice
    back = pools.uncordon("cordon", pod)
    back_again = pools.uncordon("cordon", pod)

    # Then the pod takes tasks again, and the history has both, newest first
    assert (back.changed, back.pod.cordoned, back_again.changed) == (True, None, False)
    assert queue.allocate("cordon", "run-2", "plan").pod == pod
    kinds = [e.kind for e in pools.events("cordon") if e.kind in ("PodCordoned", "PodUncordoned")]
    assert sorted(kinds) == ["PodCordoned", "PodUncordoned"]
    assert all(e.detail["pod"] == pod for e in pools.events("cordon") if e.kind in kinds)


def test_given_a_pool_being_deleted_when_an_operator_uncordons_its_pod_then_it_is_a_conflict_naming_the_cordon(
    local_api: LocalApi,
) -> None:
    # Given a busy pod of a pool being deleted (its pods are cordoned by the deletion)
    pod, _ = local_api.ready_pod("leaving")
    local_api.queue().allocate("leaving", "run-3", "plan")
    assert local_api.pools().delete("leaving").status == "deleting"

    # When an operator tries to put it back in service
    with pytest.raises(Conflict) as raised:
        local_api.pools().uncordon("leaving", pod)

    # Then it is a 409 that names podslots' own cordon; and cordoning it again changes nothing
    assert (raised.value.status, raised.value.code, raised.value.cordoned) == (409, "conflict", "pool deleted")
    assert "only podslots ends" in raised.value.message
    cordoned = local_api.pools().cordon("leaving", pod)
    assert (cordoned.changed, cordoned.pod.cordoned) == (False, "pool deleted")


def test_given_an_unknown_pod_or_pool_when_it_is_cordoned_or_uncordoned_then_it_is_not_found(
    local_api: LocalApi,
) -> None:
    local_api.pools().put("known", {"pod_template": {"image": "tf-agent:1.9"}})
    pools = local_api.pools()
    for call, pool, pod, says in (
        (pools.cordon, "known", "known-nope1", "pod known-nope1 of pool known does not exist"),
        (pools.uncordon, "known", "known-nope1", "pod known-nope1 of pool known does not exist"),
        (pools.cordon, "nowhere", "nowhere-x1", "pool nowhere does not exist"),
    ):
        with pytest.raises(NotFound) as raised:
            call(pool, pod)
        assert (raised.value.status, raised.value.code, raised.value.message) == (404, "not_found", says)


def test_given_a_busy_pod_when_the_cli_cordons_and_uncordons_it_then_it_says_so_in_text_and_json(
    local_api: LocalApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a ready pod running a task
    pod, _ = local_api.ready_pod("clicord")
    local_api.queue().allocate("clicord", "run-4", "plan")

    # When an operator cordons it, looks at the pool, cordons it again as JSON, and uncordons it
    cordoned = podslots(local_api, "pods", "cordon", "clicord", pod)
    table = podslots(local_api, "pools", "get", "clicord")
    again = podslots(local_api, "pods", "cordon", "clicord", pod, "--json")
    back = podslots(local_api, "--json", "pods", "uncordon", "clicord", pod)
    back_text = podslots(local_api, "pods", "uncordon", "clicord", pod)

    # Then each says what happened, and the pods table shows the cordon and the revision
    revision = local_api.pools().get("clicord").revision
    assert cordoned == (
        0,
        f"pod {pod} of pool clicord cordoned: it gets no new task, and is drained once idle (1 busy slot)\n",
    )
    header, row = table[1].splitlines()[-2:]
    assert header.split() == ["POD", "STATE", "BUSY", "IP", "HEARTBEAT", "CORDONED", "REVISION", "SLOTS"]
    assert f"operator  {revision}  s0:running(run-4)" in row
    assert f"revision  {revision}" in table[1]
    assert "mode      active" in table[1]
    assert "rollout" not in table[1]  # nothing to roll
    assert again[0] == 0
    assert (json.loads(again[1])["changed"], json.loads(again[1])["cordoned"]) == (False, "operator")
    assert (json.loads(back[1])["changed"], json.loads(back[1])["cordoned"]) == (True, None)
    assert back_text == (0, f"pod {pod} of pool clicord was not cordoned\n")

    # And a 404 and a 409 are messages on stderr and exit status 1
    assert podslots(local_api, "pods", "cordon", "clicord", "clicord-nope1")[0] == 1
    assert "404 not_found: pod clicord-nope1 of pool clicord does not exist" in capsys.readouterr().err
    local_api.pools().delete("clicord")
    assert podslots(local_api, "pods", "uncordon", "clicord", pod) == (1, "")
    assert "409 conflict: pod" in capsys.readouterr().err


def test_given_a_new_agent_image_when_the_pool_is_read_then_the_rollout_shows_the_old_pod_and_its_task(
    local_api: LocalApi,
) -> None:
    # Given a ready pod of image 1.9 running a task
    pod, _ = local_api.ready_pod("rolling")
    local_api.queue().allocate("rolling", "run-5", "plan")
    old = local_api.pools().get("rolling").revision

    # When the pool's image changes
    local_api.pools().put("rolling", {"pod_template": {"image": "tf-agent:2.0"}})
    pool = local_api.pools().get("rolling")
    code, text = podslots(local_api, "pools", "get", "rolling")

    # Then the pool is rolling to a new revision, and the old pod is held by its running task
    assert pool.revision is not None
    assert old is not None
    assert pool.revision != old
    assert pool.rollout is not None
    assert (pool.rollout.revision, pool.rollout.rolling, dict(pool.rollout.pods_by_revision)) == (
        pool.revision,
        True,
        {old: 1},
    )
    (outdated,) = pool.rollout.outdated
    assert (outdated.pod, outdated.revision, outdated.running, outdated.reserved) == (pod, old, 1, 0)
    assert pool.figures["pods_outdated"] == 1
    # And the CLI says so in one line, and marks the pod as old
    assert code == 0
    assert f"rollout   to {pool.revision}: pods {old}=1; old pods: {pod} ({old}) 1 running, 0 reserved\n" in text
    assert f"{old} (old)" in text


def test_given_a_beating_agent_when_its_pod_is_cordoned_and_uncordoned_then_it_logs_each_change_once(
    local_api: LocalApi, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an agent holding a task, beating every 20 ms
    caplog.set_level(logging.INFO, logger="podslots_client.agent")
    pod, url = local_api.ready_pod("logged")
    local_api.queue().allocate("logged", "run-6", "plan")
    beats: list[Pod] = []
    agent = Agent(url, lambda: ["run-6"], auth=None, interval_s=0.02, on_beat=beats.append)
    result: list[AgentExit] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()))
    runner.start()
    try:
        # When an operator cordons its pod for a few beats, then takes the cordon back for a few more
        eventually(lambda: len(beats) >= 2)
        local_api.pools().cordon("logged", pod)
        eventually(lambda: sum(1 for b in beats if b.cordoned) >= 3)
        local_api.pools().uncordon("logged", pod)
        after = len(beats)
        eventually(lambda: sum(1 for b in beats[after:] if b.cordoned is None) >= 3)
    finally:
        agent.stop()
        runner.join(5)

    # Then it beat on throughout, and logged the cordon once and the uncordon once
    assert result == [AgentExit.STOPPED]
    assert agent.cordoned is None
    said = [r.getMessage() for r in caplog.records if r.name == "podslots_client.agent" and "cordon" in r.getMessage()]
    assert said == [
        f"cordoned (operator): pod {pod} gets no new task, and is drained once idle (1 busy slot)",
        f"uncordoned: pod {pod} takes new tasks again",
    ]


def test_given_the_sidecar_when_its_idle_pod_is_cordoned_then_it_logs_it_beats_on_and_exits_0_once_drained(
    local_api: LocalApi, tmp_path: Path
) -> None:
    # Given the sidecar running in a new pod
    pod = local_api.starting_pod("sidecord")
    process = sidecar(local_api, pod, tmp_path / "tasks")
    try:
        first_line_with(process, "registered")

        # When an operator cordons the pod
        local_api.pools().cordon("sidecord", pod)

        # Then the sidecar says so, and keeps beating
        assert f"cordoned (operator): pod {pod}" in first_line_with(process, "cordoned")
        assert process.poll() is None

        # And when autoscale drains the idle pod at its next run, the sidecar is told to go and exits 0
        local_api.clock.advance(61)
        assert process.wait(10) == 0
    finally:
        process.kill()
    assert process.stderr is not None
    assert "told to go" in process.stderr.read()
