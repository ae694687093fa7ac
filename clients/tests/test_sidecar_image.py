"""The sidecar image: what its Dockerfile promises (there is no Docker engine here, so it is read, not
built), and its entrypoint run as a process against `make local`'s server, following the held-task
file protocol (docs/agent-protocol.md) as the agent container would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import LocalApi, eventually, first_line_with
from packaging.requirements import Requirement

from podslots_client import NoCapacity

CLIENTS = Path(__file__).resolve().parents[1]
SIDECAR = CLIENTS / "sidecar"
DOCKERFILE = SIDECAR / "Dockerfile"


# ---- the Dockerfile, read ------------------------------------------------------------------------


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            found.append([])
        if found:
            found[-1].append((instruction.upper(), rest.strip()))
    return found


def runtime() -> list[tuple[str, str]]:
    return stages()[-1]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    (user,) = [arguments for instruction, arguments in runtime() if instruction == "USER"]
    uid, _, gid = user.partition(":")
    # numeric, so the kubelet can check runAsNonRoot without the image's /etc/passwd
    assert uid.isdigit(), user
    assert int(uid) > 0, user
    assert gid == "" or (gid.isdigit() and int(gid) > 0), user
    # and nothing after it switches back
    instructions = [instruction for instruction, _ in runtime()]
    assert instructions.index("USER") > max(i for i, name in enumerate(instructions) if name in ("RUN", "COPY"))


def test_the_entrypoint_is_the_agent_module_in_exec_form() -> None:
    (entrypoint,) = [arguments for instruction, arguments in runtime() if instruction == "ENTRYPOINT"]
    command = json.loads(entrypoint)  # exec form: no shell between Kubernetes' signal and the agent
    assert command[1:] == ["-m", "podslots_client.agent"]
    assert command[0] == "/opt/venv/bin/python"
    assert not [arguments for instruction, arguments in runtime() if instruction == "CMD"]


def test_the_runtime_stage_gets_the_clients_venv_and_nothing_else() -> None:
    # The runtime stage: the base image, and the build stage's venv; no RUN, no ADD, no other COPY
    copies = [arguments for instruction, arguments in runtime() if instruction in ("COPY", "ADD", "RUN")]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    # The build stage puts into that venv the locked requirements (hash-checked, wheels only) and
    # the client's own wheel without dependencies; it copies from the context the client alone
    build = " ".join(f"{i} {a}" for i, a in stages()[0])
    assert re.findall(r"COPY (?!--from)(.+?) \./", build) == [
        "sidecar/build.txt sidecar/requirements.txt",
        "pyproject.toml README.md",
        "src",
    ]
    installs = re.findall(r"install [^&]*", build)
    assert all("--require-hashes" in i or "--no-deps /wheels/podslots_client-" in i for i in installs), installs
    assert "venv --without-pip /opt/venv" in build  # no pip in what runs


def test_the_lock_pins_the_clients_dependencies_each_with_its_hashes() -> None:
    # Given the client's declared dependencies
    declared = {
        Requirement(r).name.lower(): Requirement(r)
        for r in tomllib.loads((CLIENTS / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    # Then the lock's input names them, exactly
    wanted = [line for line in (SIDECAR / "requirements.in").read_text().splitlines() if line and line[0] != "#"]
    assert {Requirement(r).name.lower(): str(Requirement(r)) for r in wanted} == {
        name: str(r) for name, r in declared.items()
    }
    # And every pin of the lock carries its hashes, and satisfies what the client declares
    for lock in ("requirements.txt", "build.txt"):
        pins = {}
        for block in re.split(r"\n(?=\S)", (SIDECAR / lock).read_text()):
            if block.startswith("#") or not block.strip():
                continue
            name, _, version = block.split()[0].partition("==")
            assert version, block
            assert "--hash=sha256:" in block, block
            pins[name.lower()] = version
        if lock == "requirements.txt":
            for name, requirement in declared.items():
                assert requirement.specifier.contains(pins[name]), (name, pins[name])


# ---- the entrypoint, run as a process ----------------------------------------------------------


def entrypoint_command() -> list[str]:
    """The Dockerfile's ENTRYPOINT, with this interpreter for the image's."""
    (entrypoint,) = [arguments for instruction, arguments in runtime() if instruction == "ENTRYPOINT"]
    return [sys.executable, *json.loads(entrypoint)[1:]]


def hold(tasks: Path, task_id: str) -> None:
    """The agent container's side of the protocol: write the file under a dot name, then rename it."""
    temporary = tasks / f".{task_id}.tmp"
    temporary.write_text("")
    temporary.rename(tasks / task_id)


def test_the_sidecar_process_beats_the_tasks_its_files_name_and_exits_when_told_to_go(
    local_api: LocalApi, tmp_path: Path
) -> None:
    from local.stack import NAMESPACE
    from podslots.store import SlotStore

    # Given a new pod of a pool, running at an IP podslots has not recorded yet, and the shared
    # directory of the held-task files (an emptyDir in the pod)
    pool = "imaged"
    local_api.pools().put(pool, {"pod_template": {"image": "tf-agent:1.9"}, "headroom_pods": 0})
    with contextlib.suppress(NoCapacity):  # the refusal wakes autoscale, which creates the pod
        local_api.queue().allocate(pool, "waker", "plan", deadline_s=0)
    local_api.queue().set_status("waker", "cancelled")
    (pod,) = [p.pod for p in local_api.pools().get(pool).pods]
    local_api.stack.kube.set_phase(NAMESPACE, pod, "Running")
    local_api.stack.kube.set_pod_ip(NAMESPACE, pod, "10.42.0.9")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    store = SlotStore()

    def held() -> tuple[str, ...]:
        item = store.get_pod(pool, pod)
        return item.held_tasks if item is not None else ()

    # When the image's entrypoint starts with the environment the pod's manifest gives it
    env = {**os.environ, **local_api.manifest_env(pod), "PODSLOTS_HELD_TASKS_DIR": str(tasks)}
    env["PODSLOTS_HEARTBEAT_INTERVAL_S"] = "0.05"
    started = time.monotonic()
    process = subprocess.Popen([*entrypoint_command(), "--no-sign"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Then it registers the pod, whose IP reconcile records at once (PodRegistered)
        assert "registered" in first_line_with(process, "registered")
        eventually(lambda: local_api.pools().get(pool).pods[0].pod_ip is not None)
        took = time.monotonic() - started
        print(f"\nsidecar start to pod_ip recorded (local stack): {took * 1000:.0f} ms")
        assert local_api.pools().get(pool).pods[0].state == "ready"

        # And when two tasks are placed and the agent writes their files, its beats list them
        for task_id in ("run-a", "run-b"):
            placed = local_api.queue().allocate(pool, task_id, "plan")
            assert (placed.pod, placed.pod_ip) == (pod, "10.42.0.9")
            hold(tasks, task_id)
        (tasks / ".run-c.tmp").write_text("half written")
        eventually(lambda: held() == ("run-a", "run-b"))

        # And when one ends (the agent reports it, then removes its file), its beats drop it
        local_api.queue().set_status("run-a", "success")
        (tasks / "run-a").unlink()
        eventually(lambda: held() == ("run-b",))

        # And when the other ends too, the pool is deleted and autoscale drains the idle pod, the
        # process is told to go (410) and exits 0
        local_api.queue().set_status("run-b", "success")
        (tasks / "run-b").unlink()
        eventually(lambda: held() == ())
        local_api.pools().delete(pool)
        local_api.clock.advance(61)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait(10)
    assert process.stderr is not None
    assert "told to go" in process.stderr.read()


def test_the_entrypoint_refuses_to_start_without_the_held_tasks_directory() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSLOTS_")}
    env["PODSLOTS_HEARTBEAT_URL"] = "https://a1.execute-api.us-east-1.amazonaws.com/v1/pools/tf/pods/tf-a/heartbeat"
    done = subprocess.run(entrypoint_command(), env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2, shlex.join(entrypoint_command())
    assert "PODSLOTS_HELD_TASKS_DIR" in done.stderr
