"""The clients against `make local`'s real HTTP server: podslots' real handlers on moto and the
Kubernetes API stand-in, on a virtual clock that moves only when a test moves it.

Pods become ready the way they do in a cluster: their agent's first beat, to the heartbeat URL their
manifest carries.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import LocalApi, eventually, first_line_with, sidecar

from podslots_client import Agent, AgentExit, Forbidden, Gone, Pod, QueueClient, cli


def test_the_queue_client_allocates_reserves_resumes_and_ends_a_task(local_api: LocalApi) -> None:
    # Given a pool with one registered pod
    pod, _ = local_api.ready_pod("life")
    queue = local_api.queue()

    # When a plan_and_apply task is dispatched, waits for approval, is approved and ends
    first = queue.allocate("life", "run-42", "plan_and_apply")
    reserved = queue.set_status("run-42", "apply_pending")
    again = queue.set_status("run-42", "apply_pending")
    resumed = queue.allocate("life", "run-42", "plan_and_apply")
    ended = queue.set_status("run-42", "applied")

    # Then the apply resumed on the plan's own pod and slot, and the slot is free at the end
    assert (first.pod, first.created) == (pod, True)
    assert (reserved.task.status, reserved.changed, reserved.task.reserved_until is not None) == (
        "apply_pending",
        True,
        True,
    )
    assert again.changed is False
    assert (resumed.pod, resumed.slot, resumed.created) == (first.pod, first.slot, False)
    assert (ended.task.status, ended.changed) == ("applied", True)
    assert queue.get_task("run-42").status == "applied"
    assert local_api.pools().get("life").pods[0].busy == 0


def test_the_queue_client_rides_out_a_storm_of_503s(local_api: LocalApi) -> None:
    # Given a cold pool (no pod at all), and a world where the pod autoscale starts registers
    # while the queue waits for the third time
    local_api.pools().put("storm", {"pod_template": {"image": "tf-agent:1.9"}, "headroom_pods": 0})
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        local_api.clock.advance(seconds)
        if len(sleeps) == 3:
            (pod,) = local_api.pools().get("storm").pods
            Agent(local_api.manifest_env(pod.pod)["PODSLOTS_HEARTBEAT_URL"], list, auth=None).beat()

    queue = local_api.queue(sleep=sleep, clock=local_api.clock.now, rand=lambda: 0.0)

    # When the queue dispatches a task
    allocation = queue.allocate("storm", "run-1", "plan")

    # Then it waited what each 503 asked (cold: 30 s, then a pod starting: 10 s) and got the new pod
    assert sleeps == [30, 10, 10]
    assert allocation.created
    assert allocation.pod == local_api.pools().get("storm").pods[0].pod


def test_an_agent_registers_beats_its_held_tasks_and_is_told_to_go_when_its_pool_drains_it(
    local_api: LocalApi,
) -> None:
    # Given a pod whose agent holds one task, beating every 20 ms
    pod = local_api.starting_pod("drain")
    local_api.stack.kube.set_phase("agents", pod, "Running")
    held: list[str] = []
    beats: list[Pod] = []
    told: list[Gone] = []
    agent = Agent(
        local_api.manifest_env(pod)["PODSLOTS_HEARTBEAT_URL"],
        lambda: list(held),
        auth=None,
        interval_s=0.02,
        on_beat=beats.append,
        on_gone=told.append,
    )
    result: list[AgentExit] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()))
    runner.start()
    eventually(lambda: agent.registered)
    allocation = local_api.queue().allocate("drain", "run-7", "plan")
    held.append("run-7")
    eventually(lambda: beats[-1].busy == 1)

    # When the task ends, the agent forgets it, and the pool is deleted (autoscale drains idle pods
    # at its next run, a minute later)
    local_api.queue().set_status("run-7", "success")
    held.clear()
    assert local_api.pools().delete("drain").status == "deleting"
    local_api.clock.advance(61)
    runner.join(10)

    # Then the agent registered the pod, its beats showed the task in its slot, and it was told to go
    assert beats[0].state == "ready"
    assert (allocation.pod, allocation.slot) == (pod, "s0")
    assert any(s.task_id == "run-7" and s.status == "running" for b in beats for s in b.slots)
    assert result == [AgentExit.GONE]
    assert [(g.status, g.code) for g in told] == [(410, "gone")]
    assert "drain" not in local_api.pools().names()


def test_an_agent_of_an_unknown_pod_is_told_to_go_at_its_first_beat(local_api: LocalApi) -> None:
    agent = Agent(f"{local_api.url}/pools/nowhere/pods/nowhere-x1/heartbeat", list, auth=None)
    assert agent.run() is AgentExit.GONE
    assert not agent.registered
    assert agent.gone is not None
    assert "draining or unknown" in agent.gone.message


def test_the_sidecar_registers_its_pod_and_exits_0_when_told_to_go(local_api: LocalApi, tmp_path: Path) -> None:
    # Given the sidecar started in a new pod, with only its manifest's environment and a task directory
    pod = local_api.starting_pod("sidecar")
    process = sidecar(local_api, pod, tmp_path / "tasks")
    try:
        assert "registered" in first_line_with(process, "registered")
        assert local_api.pools().get("sidecar").pods[0].state == "ready"

        # When the pool is deleted and autoscale drains the pod
        local_api.pools().delete("sidecar")
        local_api.clock.advance(61)

        # Then the sidecar exits 0, saying why
        assert process.wait(10) == 0
    finally:
        process.kill()
    assert process.stderr is not None
    assert "told to go" in process.stderr.read()


def test_a_queue_client_pointed_at_the_wrong_stage_gets_forbidden_as_api_gateway_says(local_api: LocalApi) -> None:
    wrong = QueueClient(local_api.url.replace("/v1", "/v2"), auth=None)
    with pytest.raises(Forbidden) as raised:
        wrong.get_task("run-1")
    assert (raised.value.status, raised.value.message) == (403, "Missing Authentication Token")


def test_the_cli_puts_gets_lists_and_deletes_a_pool_in_json_and_in_tables(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a settings file and the API's URL in PODSLOTS_URL
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"max_pods": 4, "pod_template": {"image": "tf-agent:1.9"}}))
    env = {"PODSLOTS_URL": local_api.url}

    def podslots(*argv: str) -> str:
        out = io.StringIO()
        assert cli.main([*argv, "--no-sign"], env=env, out=out) == 0
        return out.getvalue()

    # When an operator creates, replaces, reads, lists and deletes a pool
    created = podslots("pools", "put", "ops", "--file", str(settings))
    replaced = json.loads(podslots("pools", "put", "ops", "--file", str(settings), "--json"))
    view = json.loads(podslots("--json", "pools", "get", "ops"))
    table = podslots("pools", "get", "ops")
    names = json.loads(podslots("pools", "list", "--json"))
    listed = podslots("pools", "list")
    events = json.loads(podslots("events", "ops", "--limit", "5", "--json"))
    deleted = podslots("pools", "delete", "ops")

    # Then each answer is the API's, as JSON for scripts and as text for people
    assert created == "pool ops created\n"
    assert replaced["settings"]["max_pods"] == 4
    assert replaced["settings"]["slots_per_pod"] == 3  # the server's default, filled in
    assert (view["pool"], view["deleting"], view["pods"]) == ("ops", False, [])
    assert "pods      0-4 of 3 slots" in table
    assert "image     tf-agent:1.9" in table
    assert "ops" in names["pools"]
    assert "ops" in listed.splitlines()
    assert events == []
    assert deleted == "pool ops deleting: no pod to drain; it goes once the cluster shows none of its pods\n"

    # And once autoscale's LIST shows no pod of it, the pool is gone, and an error answer is a
    # message on stderr and exit status 1
    local_api.stack.invoke("AutoscaleFunction", {"pool": "ops"})
    assert cli.main(["pools", "get", "ops", "--no-sign"], env=env, out=io.StringIO()) == 1
    assert "404 not_found: pool ops does not exist" in capsys.readouterr().err


def test_the_cli_shows_a_pools_pods_and_a_tasks_place(local_api: LocalApi) -> None:
    pod, _ = local_api.ready_pod("shown")
    local_api.queue().allocate("shown", "run-9", "plan")
    out = io.StringIO()
    assert cli.main(["--url", local_api.url, "--no-sign", "pools", "get", "shown"], env={}, out=out) == 0
    assert f"{pod}  ready" in out.getvalue()
    assert "s0:running(run-9) s1:idle s2:idle" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["--url", local_api.url, "--no-sign", "task", "run-9"], env={}, out=out) == 0
    assert f"pod       {pod}" in out.getvalue()
    assert "status    running" in out.getvalue()


def test_python_m_podslots_client_is_the_cli(local_api: LocalApi) -> None:
    command = [sys.executable, "-m", "podslots_client", "pools", "list", "--url", local_api.url, "--no-sign"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == local_api.pools().names()
