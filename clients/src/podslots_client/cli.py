"""`podslots`: the operators' command line. Tables for people, `--json` for scripts.

    podslots pools put POOL --file settings.json     (or --file - for stdin)
    podslots pools get POOL | pools list | pools delete POOL
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
from datetime import UTC, datetime
from typing import Any, TextIO

from podslots_client.auth import ApiKey, Auth, SigV4
from podslots_client.client import PoolsClient, QueueClient
from podslots_client.errors import PodSlotsError
from podslots_client.models import Pod, Pool, PoolEvent, Task


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
            _print(out, as_json, dict(task.raw), lambda: _task_text(task))
            return 0
        pools = PoolsClient(url, auth=auth)
        if args.command == "events":
            events = pools.events(args.pool, args.limit)
            _print(out, as_json, [dict(e.raw) for e in events], lambda: _events_text(events))
        elif args.action == "put":
            settings = _read_settings(args.file, parser)
            put = pools.put(args.pool, settings)
            text = f"pool {put.pool} {'created' if put.created else 'replaced'}"
            _print(out, as_json, dict(put.raw), lambda: text)
        elif args.action == "get":
            pool = pools.get(args.pool)
            _print(out, as_json, dict(pool.raw), lambda: _pool_text(pool))
        elif args.action == "list":
            names = pools.names()
            _print(out, as_json, {"pools": names}, lambda: "\n".join(names))
        else:
            gone = pools.delete(args.pool)
            _print(out, as_json, dict(gone.raw), lambda: _deletion_text(gone.pool, gone.status, gone.pods_remaining))
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


def _when(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if epoch is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _slots(pod: Pod) -> str:
    return " ".join(f"{s.slot}:{s.status}" + (f"({s.task_id})" if s.task_id else "") for s in pod.slots)


def _pool_text(pool: Pool) -> str:
    s, f = pool.settings, pool.figures
    template = s.get("pod_template") or {}
    lines = [
        f"pool      {pool.pool}{'  (deleting)' if pool.deleting else ''}",
        f"pods      {s.get('min_pods')}-{s.get('max_pods')} of {s.get('slots_per_pod')} slots",
        f"image     {template.get('image')}",
        "figures   " + "  ".join(f"{k}={v}" for k, v in sorted(f.items())),
    ]
    if pool.pods:
        rows = [[p.pod, p.state, str(p.busy), p.pod_ip or "-", _when(p.heartbeat_at), _slots(p)] for p in pool.pods]
        lines += ["", _table(["POD", "STATE", "BUSY", "IP", "HEARTBEAT", "SLOTS"], rows)]
    return "\n".join(lines)


def _events_text(events: Sequence[PoolEvent]) -> str:
    rows = [[_when(e.at), e.kind, " ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))] for e in events]
    return _table(["AT", "KIND", "DETAIL"], rows) if rows else "no events"


def _task_text(task: Task) -> str:
    rows = [
        ("task", task.task_id),
        ("pool", task.pool),
        ("type", task.task_type),
        ("status", task.status),
        ("pod", task.pod or "-"),
        ("slot", task.slot or "-"),
        ("reserved", _when(task.reserved_until)),
    ]
    return "\n".join(f"{k:<9} {v}" for k, v in rows)


def _deletion_text(pool: str, status: str, remaining: int) -> str:
    if status == "deleted":
        return f"pool {pool} deleted"
    return f"pool {pool} deleting: {remaining} pods to drain; new allocations are refused"


if __name__ == "__main__":
    sys.exit(main())
