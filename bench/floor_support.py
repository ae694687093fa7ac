"""What the floor benchmarks share: a table on moto's HTTP server, and the statistics they print
(medians, percentiles, per-operation counts at the server).

moto answers a Query by going over every item of the table, so each benchmark gives each of its
phases a table of its own: what it measures is then not the size of the other phases' tables."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3

from local.moto_server import MotoServer
from local.template import table_definition
from podslots.store import bind_table
from podslots.store.items import ITEM_KINDS

READ_TIMEOUT_S = 120  # moto on a busy 2-core machine can take longer than podslots' 5 s for a 1,000-item page


def make_table(server: MotoServer, name: str) -> Any:
    """A table as the template declares it, on `server`, with every item kind bound to it (and a
    patient read timeout: a timeout here measures the machine, not podslots); the boto3 client it
    was made with is returned for the bare requests."""
    client = boto3.client("dynamodb", endpoint_url=server.url)
    client.create_table(**table_definition(name))
    for kind in ITEM_KINDS:  # before bind_table: the connections are built again with it
        kind.Meta.read_timeout_seconds = READ_TIMEOUT_S
    bind_table(name, host=server.url)
    server.table = name
    return client


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with few samples, a value that was measured."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class ServerCounts:
    """Requests, items read and bytes read at moto's server, summed over the steps measured."""

    requests: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)


class CountingWindow:
    """Adds what the server saw between `open()` and `close()` to a ServerCounts (one client at a time)."""

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self._before: tuple[Counter[str], Counter[str], Counter[str]] | None = None

    def open(self) -> None:
        d = self.server.dispatcher
        self._before = (d.operations.copy(), d.items_read.copy(), d.bytes_read.copy())

    def close(self, into: ServerCounts) -> None:
        assert self._before is not None
        d = self.server.dispatcher
        into.requests.update(d.operations - self._before[0])
        into.items.update(d.items_read - self._before[1])
        into.bytes.update(d.bytes_read - self._before[2])


def per_call(counts: Counter[str], calls: int) -> str:
    """`1 Query + 1 TransactWriteItems`, averaged over `calls` (two decimals when not whole)."""
    parts = []
    for op, n in sorted(counts.items()):
        value = n / calls
        parts.append(f"{value:g} {op}" if value == int(value) else f"{value:.2f} {op}")
    return " + ".join(parts) or "none"
