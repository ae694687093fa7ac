"""`make invoke`: one function of template.yaml on one event file, in the embedded stack, as
`sam local invoke FUNCTION -e EVENT` runs it where Docker does.

    python -m local.invoke AllocateFunction events/allocate.json [--empty] [--pool NAME]

- The function is the template's: found by its logical id, through its CodeUri and Handler, and run
  with its environment (the Globals' variables and its own; the table, bus, secret and URL the
  template computes at deploy time are the local stack's, local/stack.py), POWERTOOLS_LOG_LEVEL INFO
  so that its logs show. It runs in a fresh embedded stack (moto, the Kubernetes API stand-in), and
  it alone: what it puts on the bus wakes no other function, as with sam local invoke.
- The world: a fresh stack holds nothing, and most events would meet a 404. So by default it holds
  what the event speaks of, made through the real handlers (local/seed.py says how): the pool the
  event names (else `--pool`, `terraform`) with default settings, one ready pod (the event's pod if
  it names one), and for a `/tasks/{task_id}` event that task allocated on the pod. `--empty` runs
  on the empty world. The seeding's own logs are not shown (only if it fails).
- Output as sam local invoke's: what the function writes (Powertools JSON log lines) on stderr, then
  a REPORT line, and its return value as JSON on stdout. Exit status 0 when it returned (a 4xx
  answer too), 1 when it raised or the seeding failed, 2 when FUNCTION or EVENT is missing or unknown.

After seeding, the logs say `cold_start: false`: the seeding's handlers ran first, in this process.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import IO, Any

from local.apigw import EVENTS
from local.routes import route_for
from local.stack import ENV, Context, function_environment, function_handler
from local.template import function_ids, function_property

DEFAULT_POOL = "terraform"
USAGE = "usage: make invoke FUNCTION=AllocateFunction EVENT=events/allocate.json [ARGS='--empty --pool NAME']"


class UsageError(Exception):
    """FUNCTION or EVENT is missing or unknown."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.invoke", description="sam local invoke -e, on the embedded stack (no Docker)"
    )
    parser.add_argument("function", nargs="?", default="", help="the function's logical id in template.yaml")
    parser.add_argument("event", nargs="?", default="", help="an event file (events/allocate.json, or allocate)")
    parser.add_argument("--empty", action="store_true", help="run on an empty world: seed nothing")
    parser.add_argument("--pool", default=DEFAULT_POOL, help="the pool to seed when the event names none")
    args = parser.parse_args(argv)
    try:
        function = known_function(args.function)
        event = load_event_file(args.event)
    except UsageError as exc:
        print(f"invoke: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        env = function_environment(function) | {"POWERTOOLS_LOG_LEVEL": "INFO"}
    except LookupError as exc:  # the template gives it a variable the local stack has no value for
        print(f"invoke: {exc}", file=sys.stderr)
        return 1
    with environment(env):  # before podslots loads: its logger reads the service name and level once
        return run(function, event, env, seed_pool=None if args.empty else args.pool)


def known_function(name: str) -> str:
    ids = function_ids()
    if name not in ids:
        problem = f"unknown FUNCTION {name!r}" if name else "FUNCTION is missing"
        raise UsageError(f"{problem}; the functions of template.yaml: {', '.join(ids)}")
    return name


def load_event_file(name: str) -> dict[str, Any]:
    candidates = [Path(name), EVENTS / name, EVENTS / f"{name}.json"] if name else []
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        problem = f"no event file {name!r}" if name else "EVENT is missing"
        files = ", ".join(f"events/{p.name}" for p in sorted(EVENTS.glob("*.json")))
        raise UsageError(f"{problem}; events/ holds: {files}")
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise UsageError(f"{path} holds no JSON object")
    return event


def run(function: str, event: dict[str, Any], env: Mapping[str, str], seed_pool: str | None) -> int:
    from local.seed import SeedError, seed
    from local.stack import Stack
    from podslots.clock import SystemClock

    out, err = sys.stdout, sys.stderr
    with warnings.catch_warnings(), Stack(SystemClock()) as stack:
        warnings.filterwarnings("ignore", "No application metrics to publish")
        if seed_pool is not None:
            seeding = io.StringIO()
            try:
                with function_output(seeding):
                    world = seed(stack, event, seed_pool)
            except Exception as exc:
                err.write(seeding.getvalue())  # shown only now: why it failed
                if not isinstance(exc, SeedError):
                    raise
                print(f"invoke: seeding failed: {exc} (--empty runs on an empty world)", file=err)
                return 1
            print(f"seeded: {world}", file=err)
        if note := route_note(function, event):
            print(f"note: {note}", file=err)
        # The function sees its own environment only, not the stack's variables it is not given.
        with environment({}, hide=ENV.keys() - env.keys()):
            return invoke(function, event, out, err)


def invoke(function: str, event: dict[str, Any], out: IO[str], err: IO[str]) -> int:
    """Call the handler as Lambda does; its output to `err`, its answer (or error) as JSON to `out`."""
    request_id = str(uuid.uuid4())
    memory = int(function_property(function, "MemorySize") or 128)
    context = Context(
        function_name=function,
        memory_limit_in_mb=memory,
        invoked_function_arn=f"arn:aws:lambda:{ENV['AWS_REGION']}:123456789012:function:{function}",
        aws_request_id=request_id,
        remaining_ms=int(function_property(function, "Timeout") or 3) * 1000,
    )
    handler = function_handler(function)
    started = time.perf_counter()
    failed: BaseException | None = None
    with function_output(err):
        try:
            result = handler(event, context)
        except Exception as exc:
            failed = exc
            traceback.print_exc()
    ms = (time.perf_counter() - started) * 1000
    print(
        f"REPORT RequestId: {request_id}\tFunction: {function}\tDuration: {ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(ms)} ms\tMemory Size: {memory} MB",
        file=err,
    )
    err.flush()  # the logs first, then the answer, as sam local invoke prints them
    if failed is not None:
        error = {"errorMessage": str(failed), "errorType": type(failed).__name__, "requestId": request_id}
        print(json.dumps(error), file=out)
        return 1
    print(json.dumps(result), file=out)
    return 0


def route_note(function: str, event: dict[str, Any]) -> str | None:
    """What sam local invoke would not say: the template sends this API event to another function."""
    if "httpMethod" not in event or "resource" not in event:
        return None
    try:
        route = route_for(event)
    except LookupError as exc:
        return str(exc)
    if route.function != function:
        return f"template.yaml routes {route.method} {route.path} to {route.function}, not {function}"
    return None


@contextmanager
def function_output(sink: IO[str]) -> Iterator[None]:
    """What the function writes goes to `sink`: podslots' logger (at POWERTOOLS_LOG_LEVEL), whose
    handler keeps the stream it was made with, and stdout (prints, metrics), as Lambda logs both."""
    from podslots.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream, level = handler.stream, logger.log_level
    handler.stream = sink  # not setStream: it would flush the old stream, which may be closed by now
    logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"))
    try:
        with redirect_stdout(sink):
            yield
    finally:
        handler.stream = stream
        logger.setLevel(level)


@contextmanager
def environment(values: Mapping[str, str], hide: Iterable[str] = ()) -> Iterator[None]:
    """os.environ with `values` set and `hide` unset; all of it as it was afterwards."""
    saved = dict(os.environ)
    os.environ.update(values)
    for name in hide:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())
