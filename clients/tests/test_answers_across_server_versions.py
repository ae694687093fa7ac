"""The answer models against a server that sends the roll-out fields and one from before them
(commit c86171e added `cordoned` and `revision` to pods, `revision` and `rollout` to pools), over
real HTTP from a scripted server; and the client's independence from the server's code."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from typing import Any

import pytest
from conftest import Scripted

from podslots_client import Agent, PoolsClient, cli

OLD, NEW = "d1342d4d7a", "594e66207e"


def slot(n: int, task: str | None = None) -> dict[str, Any]:
    return {
        "slot": f"s{n}",
        "status": "running" if task else "idle",
        "task_id": task,
        "task_type": "plan" if task else None,
        "since": 1800000000 if task else None,
        "reserved_until": None,
    }


def pod(name: str, revision: str, cordoned: str | None, task: str | None) -> dict[str, Any]:
    return {
        "pool": "tf",
        "pod": name,
        "state": "ready",
        "busy": 1 if task else 0,
        "pod_ip": "10.0.0.7",
        "heartbeat_at": 1800000000,
        "slots": [slot(0, task), slot(1), slot(2)],
        "cordoned": cordoned,
        "revision": revision,
    }


# GET /pools/tf as today's server answers it, mid-roll-out (settings cut to what the client reads).
POOL_NOW: dict[str, Any] = {
    "pool": "tf",
    "deleting": False,
    "settings": {
        "slots_per_pod": 3,
        "min_pods": 1,
        "max_pods": 4,
        "pod_template": {"image": "tf-agent:2.0"},
        "max_surge": 1,
        "mode": "active",
        "adopt_selector": None,
    },
    "revision": NEW,
    "rollout": {
        "revision": NEW,
        "rolling": True,
        "pods_by_revision": {NEW: 1, OLD: 1},
        "outdated": [
            {
                "pod": "tf-old1",
                "revision": OLD,
                "state": "ready",
                "cordoned": "outdated revision",
                "running": 1,
                "reserved": 0,
            }
        ],
    },
    "figures": {"pods_total": 2, "pods_cordoned": 1, "pods_outdated": 1, "utilization": 0.1667},
    "pods": [pod("tf-new1", NEW, None, None), pod("tf-old1", OLD, "outdated revision", "run-1")],
}


def before_rollouts(answer: dict[str, Any]) -> dict[str, Any]:
    """The same answer as a server before c86171e sent it: none of the fields that commit added."""
    settings = {k: v for k, v in answer["settings"].items() if k not in ("max_surge", "mode", "adopt_selector")}
    figures = {k: v for k, v in answer["figures"].items() if k not in ("pods_cordoned", "pods_outdated")}
    pods = [{k: v for k, v in p.items() if k not in ("cordoned", "revision")} for p in answer["pods"]]
    kept = {k: v for k, v in answer.items() if k not in ("revision", "rollout")}
    return kept | {"settings": settings, "figures": figures, "pods": pods}


def test_given_a_pool_mid_rollout_when_it_is_read_then_its_revision_rollout_and_pods_cordons_are_typed(
    scripted: Scripted,
) -> None:
    scripted.script((200, POOL_NOW, {}))
    pool = PoolsClient(scripted.url, auth=None).get("tf")
    assert pool.revision == NEW
    assert pool.rollout is not None
    assert (pool.rollout.revision, pool.rollout.rolling, dict(pool.rollout.pods_by_revision)) == (
        NEW,
        True,
        {NEW: 1, OLD: 1},
    )
    (old,) = pool.rollout.outdated
    assert (old.pod, old.revision, old.state, old.cordoned, old.running, old.reserved) == (
        "tf-old1",
        OLD,
        "ready",
        "outdated revision",
        1,
        0,
    )
    assert [(p.pod, p.cordoned, p.revision) for p in pool.pods] == [
        ("tf-new1", None, NEW),
        ("tf-old1", "outdated revision", OLD),
    ]
    assert pool.settings["mode"] == "active"


def test_given_a_server_from_before_rollouts_when_a_pool_is_read_then_the_new_fields_are_none_and_the_cli_guesses_none(
    scripted: Scripted,
) -> None:
    # Given a server that sends none of the roll-out fields
    scripted.script((200, before_rollouts(POOL_NOW), {}), (200, before_rollouts(POOL_NOW), {}))

    # When the client and the CLI read the pool
    pool = PoolsClient(scripted.url, auth=None).get("tf")
    out = io.StringIO()
    assert cli.main(["pools", "get", "tf", "--url", scripted.url, "--no-sign"], env={}, out=out) == 0

    # Then every old field is there, the new ones are None, and the text shows no revision, mode or roll-out
    assert (pool.pool, pool.deleting, pool.revision, pool.rollout) == ("tf", False, None, None)
    assert [(p.pod, p.state, p.busy, p.cordoned, p.revision) for p in pool.pods] == [
        ("tf-new1", "ready", 0, None, None),
        ("tf-old1", "ready", 1, None, None),
    ]
    text = out.getvalue()
    assert not any(line.startswith(("revision", "mode", "rollout")) for line in text.splitlines())
    assert "tf-old1  ready  1     10.0.0.7  2027-01-15 08:00:00Z  -         -         s0:running(run-1)" in text


def test_given_a_server_from_before_rollouts_when_the_agent_beats_then_its_pod_is_not_taken_as_cordoned(
    scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="podslots_client.agent")
    (old_pod,) = [p for p in before_rollouts(POOL_NOW)["pods"] if p["pod"] == "tf-old1"]
    scripted.script((200, old_pod, {}), (200, old_pod, {}))
    agent = Agent(f"{scripted.url}/pools/tf/pods/tf-old1/heartbeat", lambda: ["run-1"], auth=None)
    beats = [agent.beat(), agent.beat()]
    assert [(b.pod, b.busy, b.cordoned, b.revision) for b in beats] == [("tf-old1", 1, None, None)] * 2
    assert agent.cordoned is None
    assert not [r for r in caplog.records if "cordon" in r.getMessage()]


def test_given_the_client_package_when_every_module_is_imported_then_no_server_code_is_loaded() -> None:
    # The venv puts the server's layer on sys.path, so only a fresh interpreter can tell.
    probe = (
        "import importlib, pkgutil, sys, podslots_client\n"
        "for m in pkgutil.iter_modules(podslots_client.__path__):\n"
        "    if m.name != '__main__':\n"
        "        importlib.import_module('podslots_client.' + m.name)\n"
        "server = ('podslots', 'functions', 'local')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in server))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
