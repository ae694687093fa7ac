"""`python -m podslots_client.agent`: the heartbeat as a sidecar command in the agent pod.

It reads what the pod manifest sets (PODSLOTS_POOL, PODSLOTS_POD_NAME, PODSLOTS_SLOTS,
PODSLOTS_HEARTBEAT_URL), plus PODSLOTS_HELD_TASKS_DIR: a directory where the agent keeps one file
per task it holds, named by the task id (docs/agent-protocol.md; with `pod_template.sidecar`, podslots
sets it and shares the directory between the two containers). It is the entrypoint of the sidecar
image (clients/sidecar/Dockerfile). It exits 0 when told to go or on SIGTERM, 2 on a configuration
error, 1 when the API rejects the beat itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from podslots_client.auth import ApiKey, Auth, SigV4
from podslots_client.errors import BadRequest
from podslots_client.heartbeat import Agent, held_in
from podslots_client.transport import checked_url

log = logging.getLogger("podslots_client.agent")


class ConfigurationError(Exception):
    """The command cannot start: a variable is missing or wrong."""


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, Path, int | None, float]:
    url = env.get("PODSLOTS_HEARTBEAT_URL", "")
    if not url:
        raise ConfigurationError("PODSLOTS_HEARTBEAT_URL is not set")
    try:
        url = checked_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"PODSLOTS_HEARTBEAT_URL: {exc}") from exc
    pool, pod = env.get("PODSLOTS_POOL"), env.get("PODSLOTS_POD_NAME")
    if pool and pod and not url.endswith(f"/pools/{quote(pool, safe='')}/pods/{quote(pod, safe='')}/heartbeat"):
        raise ConfigurationError(f"PODSLOTS_HEARTBEAT_URL is not the heartbeat of pod {pod} of pool {pool}")
    slots: int | None = None
    if env.get("PODSLOTS_SLOTS"):
        try:
            slots = int(env["PODSLOTS_SLOTS"])
        except ValueError:
            slots = 0
        if slots < 1:
            raise ConfigurationError(f"PODSLOTS_SLOTS must be a positive whole number, not {env['PODSLOTS_SLOTS']!r}")
    directory = args.held_tasks_dir or env.get("PODSLOTS_HELD_TASKS_DIR")
    if not directory:
        raise ConfigurationError(
            "PODSLOTS_HELD_TASKS_DIR (or --held-tasks-dir) is not set: without knowing the tasks it holds, "
            "the agent would tell podslots they ended"
        )
    interval = args.interval if args.interval is not None else float(env.get("PODSLOTS_HEARTBEAT_INTERVAL_S") or 30)
    if interval <= 0:
        raise ConfigurationError(f"the heartbeat interval must be positive, not {interval}")
    return url, Path(directory), slots, interval


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m podslots_client.agent", description="The podslots heartbeat of this agent pod."
    )
    parser.add_argument("--held-tasks-dir", help="one file per held task, named by its id (PODSLOTS_HELD_TASKS_DIR)")
    parser.add_argument("--interval", type=float, help="seconds between beats (PODSLOTS_HEARTBEAT_INTERVAL_S, 30)")
    parser.add_argument("--region", help="the API's AWS region, for SigV4 (default: from the URL or AWS_REGION)")
    parser.add_argument("--no-sign", action="store_true", help="send unsigned requests (make local)")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        url, directory, slots, interval = _settings(args, env)
        # Before the first beat the pod holds nothing, so an empty new directory is the truth.
        directory.mkdir(parents=True, exist_ok=True)
    except (ConfigurationError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    auth: Auth | None
    if args.no_sign:
        auth = None
    elif env.get("PODSLOTS_API_KEY"):
        auth = ApiKey(env["PODSLOTS_API_KEY"])
    else:
        auth = SigV4(args.region)
    agent = Agent(url, held_in(directory), auth=auth, interval_s=interval, slots=slots)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ended = agent.run()
    except BadRequest as exc:
        log.error("the API rejects this pod's beat: %s", exc)
        return 1
    log.info("agent %s", ended.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
