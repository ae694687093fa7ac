"""`podslots`: the operators' command line. Tables for people, `-o json|yaml` for scripts.

    podslots pools apply -f FILE|DIR [--dry-run] [--prune]   (pools as files: pool_files.py)
    podslots pools put POOL -f settings.yaml          (YAML or JSON; -f - for stdin)
    podslots pools get POOL | pools list | pools delete POOL   (-o wide: more columns)
    podslots pods cordon POOL POD | pods uncordon POOL POD
    podslots events POOL [--limit N]
    podslots task TASK_ID

The API is `--url` or PODSLOTS_URL; requests are SigV4-signed with the AWS credentials botocore
finds (`--no-sign` for `make local`; PODSLOTS_API_KEY for an `AuthMode=API_KEY` stack, never an
argument, so it stays out of shell history and `ps`). Exit 1 on an error answer (for `apply`: if
any pool was refused), 2 on bad usage or a file that cannot be read as pools.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any, TextIO

import yaml

from podslots_client import apply
from podslots_client.auth import ApiKey, Auth, SigV4
from podslots_client.client import PoolsClient, QueueClient
from podslots_client.errors import CannotSign, NotFound, PodSlotsError
from podslots_client.models import Pool
from podslots_client.pool_files import PoolFileError, declared_pools, read_settings
from podslots_client.text import (
    apply_text,
    cordon_text,
    deletion_text,
    events_text,
    pool_text,
    pools_table,
    task_text,
)

NO_SIGN_HINT = (
    "podslots: hint: for `make local`'s stack (http://127.0.0.1:3000/v1) add --no-sign; "
    "a deployed stack needs AWS credentials (AWS_PROFILE, environment variables, a role)"
)


def version() -> str:
    """The installed client package's version (`unknown` when run from a source tree not installed)."""
    try:
        return metadata.version("podslots-client")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    # The common options are accepted before or after the command (`podslots pools list --json`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the API's base URL, stage included (PODSLOTS_URL)")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region for SigV4 (default: from the URL)")
    common.add_argument("--no-sign", action="store_true", default=argparse.SUPPRESS, help="unsigned (make local)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the same as -o json")
    common.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml", "wide"),
        default=argparse.SUPPRESS,
        help="json or yaml: the API's answer; wide: tables with more columns (pools get, pools list)",
    )

    parser = argparse.ArgumentParser(prog="podslots", description="Operate podslots pools.", parents=[common])
    parser.add_argument("--version", action="version", version=f"podslots {version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    pools = commands.add_parser("pools", help="pool settings, figures and pods", parents=[common])
    actions = pools.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="create or replace a pool's settings", parents=[common])
    put.add_argument("pool")
    put.add_argument("-f", "--file", required=True, help="the settings document (YAML or JSON); - reads stdin")
    declare = actions.add_parser(
        "apply", help="create and update the pools files declare, writing only what changed", parents=[common]
    )
    declare.add_argument(
        "-f",
        "--file",
        dest="files",
        metavar="FILE|DIR",
        action="append",
        required=True,
        help="a pool file (YAML or JSON: name and settings), a directory of them (*.yaml, *.yml, *.json), "
        "or - for stdin; may be given more than once",
    )
    declare.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    declare.add_argument("--prune", action="store_true", help="delete the pools no file declares")
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
    output = getattr(args, "output", None) or ("json" if getattr(args, "json", False) else None)
    try:
        if args.command == "task":
            task = QueueClient(url, auth=auth).get_task(args.task_id)
            _print(out, output, dict(task.raw), lambda: task_text(task))
            return 0
        pools = PoolsClient(url, auth=auth)
        if args.command == "events":
            events = pools.events(args.pool, args.limit)
            _print(out, output, [dict(e.raw) for e in events], lambda: events_text(events))
        elif args.command == "pods":
            call = pools.cordon if args.action == "cordon" else pools.uncordon
            change = call(args.pool, args.pod)
            _print(out, output, dict(change.pod.raw), lambda: cordon_text(change, args.action))
        elif args.action == "apply":
            return _apply(pools, args, output, out)
        else:
            _pools(pools, args, output, out)
    except PoolFileError as exc:
        parser.error(str(exc))
    except PodSlotsError as exc:
        print(f"podslots: {exc}", file=sys.stderr)
        if isinstance(exc, CannotSign):
            print(NO_SIGN_HINT, file=sys.stderr)
        return 1
    return 0


def _pools(pools: PoolsClient, args: argparse.Namespace, output: str | None, out: TextIO) -> None:
    """`pools put`, `get`, `list` and `delete`."""
    if args.action == "put":
        put = pools.put(args.pool, read_settings(args.file))
        text = f"pool {put.pool} {'created' if put.created else 'replaced'}"
        _print(out, output, dict(put.raw), lambda: text)
    elif args.action == "get":
        pool = pools.get(args.pool)
        _print(out, output, dict(pool.raw), lambda: pool_text(pool, wide=output == "wide"))
    elif args.action == "list":
        names = pools.names()
        if output == "wide":  # a row a pool: one read of each
            print(pools_table(_each_pool(pools, names)), file=out)
        else:
            _print(out, output, {"pools": names}, lambda: "\n".join(names))
    else:
        gone = pools.delete(args.pool)
        _print(out, output, dict(gone.raw), lambda: deletion_text(gone.pool, gone.status, gone.pods_remaining))


def _each_pool(pools: PoolsClient, names: Sequence[str]) -> list[Pool]:
    """Each pool listed, read; one gone since the list is left out."""
    found = []
    for name in names:
        try:
            found.append(pools.get(name))
        except NotFound:
            continue
    return found


def _apply(pools: PoolsClient, args: argparse.Namespace, output: str | None, out: TextIO) -> int:
    """`pools apply`: 1 when any pool was refused, the others applied all the same."""
    planned = apply.plan(pools, declared_pools(args.files), prune=args.prune)
    done = planned if args.dry_run else apply.carry_out(pools, planned)
    data = apply.as_json(done, dry_run=args.dry_run)
    _print(out, output, data, lambda: apply_text(done, dry_run=args.dry_run))
    return 1 if done.failed else 0


def _print(out: TextIO, output: str | None, data: Any, text: Callable[[], str]) -> None:
    """The API's answer as JSON or YAML, or the text `text()` makes for people (`wide` included)."""
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True), file=out)
    elif output == "yaml":
        print(yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip("\n"), file=out)
    else:
        print(text(), file=out)


if __name__ == "__main__":
    sys.exit(main())
