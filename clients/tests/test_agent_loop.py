"""The agent's heartbeat loop against a scripted server, and the sidecar command's configuration.

Backoff and intervals are milliseconds here, so the loop runs for real and quickly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DROP, Scripted

from podslots_client import Agent, AgentExit, Backoff, Gone, InvalidRequest, Pod
from podslots_client.agent import main
from podslots_client.heartbeat import TASK_ID as HELD_TASK_ID
from podslots_client.heartbeat import held_in

FAST = Backoff(base_s=0.001, cap_s=0.004)


def pod(busy: int = 0, **extra: Any) -> dict[str, Any]:
    return {"pool": "tf", "pod": "tf-a", "state": "ready", "busy": busy, "pod_ip": None, "heartbeat_at": 1} | extra


def gone() -> tuple[int, dict[str, Any], dict[str, str]]:
    return 410, {"error": "gone", "message": "pod tf-a of pool tf is draining or unknown"}, {}


def test_the_agent_backs_off_on_errors_beats_again_and_stops_when_told_to_go(scripted: Scripted) -> None:
    # Given a server that fails twice, answers once (with a field this client does not know), then says go
    scripted.script(DROP, (502, {"message": "Internal server error"}, {}), (200, pod(cordoned=False), {}), gone())
    told: list[Gone] = []
    beats: list[Pod] = []
    agent = Agent(
        f"{scripted.url}/pools/tf/pods/tf-a/heartbeat",
        lambda: ["run-2", "run-1", "run-2"],
        auth=None,
        interval_s=0.001,
        backoff=FAST,
        on_gone=told.append,
        on_beat=beats.append,
    )

    # When it runs
    ended = agent.run()

    # Then it beat four times with its tasks, registered once, and ended on the 410, saying so
    assert ended is AgentExit.GONE
    assert [r.body for r in scripted.received] == [b'{"held_tasks": ["run-1", "run-2"]}'] * 4
    assert agent.registered
    assert [b.state for b in beats] == ["ready"]
    assert told == [agent.gone]
    assert agent.gone is not None
    assert (agent.gone.status, agent.gone.code) == (410, "gone")


def test_a_beat_is_skipped_never_sent_empty_when_the_held_tasks_are_unknown(scripted: Scripted) -> None:
    # Given an agent whose list of held tasks fails once
    scripted.script((200, pod(busy=1), {}), gone())
    answers: Iterator[OSError | list[str]] = iter([OSError("the task directory is gone"), ["run-1"], ["run-1"]])

    def held() -> list[str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    agent = Agent(f"{scripted.url}/pools/tf/pods/tf-a/heartbeat", held, auth=None, interval_s=0.001, backoff=FAST)

    # When it runs
    assert agent.run() is AgentExit.GONE

    # Then the failed read sent nothing (the server has not shown it reads a beat without the list
    # as unknown; an older one would free the slots): every beat that went out listed the task
    assert [r.body for r in scripted.received] == [b'{"held_tasks": ["run-1"]}'] * 2


def test_a_beat_goes_without_held_tasks_when_they_are_unknown_once_the_server_reads_that_as_unknown(
    scripted: Scripted,
) -> None:
    # Given a server whose answers carry `held_at` (it reads a beat without `held_tasks` as unknown)
    scripted.script((200, pod(busy=1, held_at=1), {}), (200, pod(busy=1, held_at=1), {}), gone())
    answers: Iterator[OSError | list[str]] = iter([["run-1"], OSError("the task directory is gone"), ["run-1"]])

    def held() -> list[str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    agent = Agent(f"{scripted.url}/pools/tf/pods/tf-a/heartbeat", held, auth=None, interval_s=0.001, backoff=FAST)

    # When its list of held tasks fails once, after the first answer
    assert agent.run() is AgentExit.GONE

    # Then that beat went out without the field (alive, holdings unknown), never with an empty list
    assert [r.body for r in scripted.received] == [b'{"held_tasks": ["run-1"]}', b"{}", b'{"held_tasks": ["run-1"]}']


def test_stop_ends_the_loop_at_once_even_mid_interval(scripted: Scripted) -> None:
    # Given an agent beating every minute
    scripted.script((200, pod(), {}))
    agent = Agent(f"{scripted.url}/pools/tf/pods/tf-a/heartbeat", list, auth=None, interval_s=60)
    result: list[AgentExit] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()))
    runner.start()
    assert scripted.wait_for_requests(1), "the agent never beat"

    # When it is stopped (SIGTERM, in the command), a minute before its next beat is due
    agent.stop()
    runner.join(10)

    # Then it has ended (well inside the minute it was waiting), after one beat and no further one
    assert not runner.is_alive()
    assert result == [AgentExit.STOPPED]
    assert len(scripted.received) == 1


def test_a_beat_the_api_rejects_as_malformed_is_raised_not_retried(scripted: Scripted) -> None:
    scripted.script((400, {"error": "invalid_request", "message": "pod: bad name", "problems": []}, {}))
    agent = Agent(f"{scripted.url}/pools/tf/pods/BAD/heartbeat", list, auth=None, backoff=FAST)
    with pytest.raises(InvalidRequest):
        agent.run()
    assert len(scripted.received) == 1


def test_the_held_tasks_directory_lists_its_files_but_not_dot_files(tmp_path: Path) -> None:
    for name in ("run-2", "run-1", ".run-3"):
        (tmp_path / name).touch()
    (tmp_path / "sub").mkdir()
    assert held_in(tmp_path)() == ["run-1", "run-2"]
    with pytest.raises(FileNotFoundError):
        held_in(tmp_path / "missing")()


def test_the_held_tasks_directory_lists_only_names_that_are_task_ids_of_regular_files(tmp_path: Path) -> None:
    # Given the files of the protocol next to what else a directory may hold: a temp file being
    # written, an editor's backup, a name with a space, a directory named like a task, a dangling link
    for name in ("tf.run:42", "run-1", ".run-2.tmp", "run-1~", "run 3", "x" * 129):
        (tmp_path / name).write_text("")
    (tmp_path / "run-4").mkdir()
    (tmp_path / "run-5").symlink_to(tmp_path / "gone")
    # Then only the task ids are listed: anything else would make every beat a 400 (the agent exits)
    assert held_in(tmp_path)() == ["run-1", "tf.run:42"]


def test_the_clients_task_id_syntax_is_the_servers() -> None:
    from podslots.names import TASK_ID

    assert f"^{HELD_TASK_ID.pattern}$" == TASK_ID


def test_the_sidecar_stops_cleanly_on_sigterm(scripted: Scripted, tmp_path: Path) -> None:
    # Given the sidecar command running in this process, beating every 10 ms
    scripted.script(*[(200, pod(), {})] * 1000)
    env = {**MANIFEST_ENV, "PODSLOTS_HEARTBEAT_URL": f"{scripted.url}/pools/tf/pods/tf-a/heartbeat"}
    env["PODSLOTS_HELD_TASKS_DIR"] = str(tmp_path / "tasks")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def terminate_after_two_beats() -> None:
        scripted.wait_for_requests(2)  # bounded: on a timeout the SIGTERM still ends the command
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_after_two_beats, daemon=True).start()
    try:
        # When the pod is deleted and Kubernetes sends SIGTERM
        code = main(["--no-sign", "--interval", "0.01"], env=env)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    # Then the command ends with 0, and beats no more
    assert code == 0
    sent = len(scripted.received)
    time.sleep(0.05)
    assert len(scripted.received) == sent


MANIFEST_ENV = {
    "PODSLOTS_POOL": "tf",
    "PODSLOTS_POD_NAME": "tf-a",
    "PODSLOTS_SLOTS": "3",
    "PODSLOTS_HEARTBEAT_URL": "https://a1.execute-api.us-east-1.amazonaws.com/v1/pools/tf/pods/tf-a/heartbeat",
    "PODSLOTS_HELD_TASKS_DIR": "/tmp/podslots-tasks",
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"PODSLOTS_HEARTBEAT_URL": ""}, "PODSLOTS_HEARTBEAT_URL is not set"),
        ({"PODSLOTS_HEARTBEAT_URL": "ftp://x/heartbeat"}, "http:// or https://"),
        ({"PODSLOTS_POD_NAME": "tf-b"}, "is not the heartbeat of pod tf-b of pool tf"),
        ({"PODSLOTS_SLOTS": "three"}, "PODSLOTS_SLOTS must be a positive whole number"),
        ({"PODSLOTS_SLOTS": "0"}, "PODSLOTS_SLOTS must be a positive whole number"),
        ({"PODSLOTS_HELD_TASKS_DIR": ""}, "PODSLOTS_HELD_TASKS_DIR (or --held-tasks-dir) is not set"),
        ({"PODSLOTS_HEARTBEAT_INTERVAL_S": "-1"}, "the heartbeat interval must be positive"),
    ],
)
def test_the_sidecar_exits_2_on_a_configuration_error_before_any_beat(
    change: dict[str, str], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["--no-sign"], env={**MANIFEST_ENV, **change}) == 2
    assert says in caplog.text
