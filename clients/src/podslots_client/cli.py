"""`podslots`: the operators' command line. Tables for people, `--json` for scripts.

    podslots pools put POOL --file settings.json     (or --file - for stdin)
    podslots pools get POOL | pools list | pools delete POOL
    podslots pods cordon POOL POD | pods uncordon POOL POD
    podslots events POOL [--limit N]
    podslots task TASK_ID

The API is `--url` or PODSLOTS_URL; requests are SigV4-signed with the AWS credentials botocore
finds (`--no-sign` for `make local`; PODSLOTS_API_KEY for an `AuthMode=API_KEY` stack, never an
argument, so it stays out of shell history and `ps`). Exit 1 on an error answer, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from podslots_client.auth import ApiKey, Auth, SigV4
from podslots_client.client import PoolsClient, QueueClient
from podslots_client.errors import PodSlotsError
from podslots_client.text import cordon_text, deletion_text, events_text, pool_text, task_text


def _parser() -> argparse.ArgumentParser:
    # The common options are accepted before or after the command (`podslots pools list --json`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the API's base URL, stage included (PODSLOTS_URL)")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region for SigV4 (default: from the URL)")
    common.add_argument("--no-sign", action="store_true", default=argparse.SUPPRESS, help="unsigned (make local)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the answer as JSON")

    parser = argparse.ArgumentParser(prog="podslots", description="Operate podslots pools.", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    pools = commands.add_parser("pools", help="pool settings, figures and pods", parents=[common])
    actions = pools.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="create or replace a pool's settings", parents=[common])
    put.add_argument("pool")
    put.add_argument("--file", required=True, help="the settings document (JSON); - reads stdin")
    for name, text in (("get", "settings, figures and pods"), ("delete", "drain and delete")):
        actions.add_parser(name, help=text, parents=[common]).add_argument("pool")
    actions.add_parser("list", help="every pool's name", parents=[common])

    pods = commands.add_parser("pods", help="take a pod out of service, or back", parents=[common])
    pod_actions = pods.add_subparsers(dest="action", required=True)
    for name, text in (
        ("cordon", "no new task for the pod; its tasks finish, then it is drained"),
        ("uncordon", "put an operator's cordoned pod back in service"),
    ):
        action = pod_actions.add_parser(name, help=text, parents=[common])
        action.add_argument("pool")
        action.add_argument("pod")

    events = commands.add_parser("events", help="a pool's history, newest first", parents=[common])
    events.add_argument("pool")
    events.add_argument("--limit", type=int, default=50, help="how many (1-500, default 50)")

    task = commands.add_parser("task", help="where a task is", parents=[common])
    task.add_argument("task_id")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    url = getattr(args, "url", None) or env.get("PODSLOTS_URL")
    if not url:
        parser.error("the API's URL: --url or PODSLOTS_URL")
    auth: Auth | None
    if getattr(args, "no_sign", False):
        auth = None
    elif env.get("PODSLOTS_API_KEY"):
        auth = ApiKey(env["PODSLOTS_API_KEY"])
    else:
        auth = SigV4(getattr(args, "region", None))
    as_json = getattr(args, "json", False)
    try:
        if args.command == "task":
            task = QueueClient(url, auth=auth).get_task(args.task_id)
            _print(out, as_json, dict(task.raw), lambda: task_text(task))
            return 0
        pools = PoolsClient(url, auth=auth)
        if args.command == "events":
            events = pools.events(args.pool, args.limit)
            _print(out, as_json, [dict(e.raw) for e in events], lambda: events_text(events))
        elif args.command == "pods":
            call = pools.cordon if args.action == "cordon" else pools.uncordon
            change = call(args.pool, args.pod)
            _print(out, as_json, dict(change.pod.raw), lambda: cordon_text(change, args.action))
        elif args.action == "put":
            settings = _read_settings(args.file, parser)
            put = pools.put(args.pool, settings)
            text = f"pool {put.pool} {'created' if put.created else 'replaced'}"
            _print(out, as_json, dict(put.raw), lambda: text)
        elif args.action == "get":
            pool = pools.get(args.pool)
            _print(out, as_json, dict(pool.raw), lambda: pool_text(pool))
        elif args.action == "list":
            names = pools.names()
            _print(out, as_json, {"pools": names}, lambda: "\n".join(names))
        else:
            gone = pools.delete(args.pool)
            _print(out, as_json, dict(gone.raw), lambda: deletion_text(gone.pool, gone.status, gone.pods_remaining))
    except PodSlotsError as exc:
        print(f"podslots: {exc}", file=sys.stderr)
        return 1
    return 0


def _read_settings(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115 (read at once)
        settings = json.loads(text)
    except (OSError, ValueError) as exc:
        parser.error(f"--file {path}: {exc}")
    if not isinstance(settings, dict):
        parser.error(f"--file {path}: the settings document is a JSON object")
    return settings


def _print(out: TextIO, as_json: bool, data: Any, text: Callable[[], str]) -> None:
    """JSON as the API answered it, or the text `text()` makes for people."""
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text(), file=out)


if __name__ == "__main__":
    sys.exit(main())
