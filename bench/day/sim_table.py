"""The simulated table's Query, read the way DynamoDB reads it: from the key, not the whole table.

Why the day simulation's cost grew faster than its traffic: moto answers every Query (a key
lookup in a partition, or in an index) by sorting every item of the table (`Table.all_items()`)
and walking them. The table only grows over a run: each task's item (kept 30 days after it
ends) and the pool's history (kept 14 days) are never expired within a simulated week, so each
Query costs more every hour, and the run's cost grows with the square of its length. Expiring
TTL items as DynamoDB does would change nothing within a week (the TTLs are 14 and 30 days). A
Query in DynamoDB reads its partition, or its index's items; this patch makes moto do the same
for the simulation: a table Query walks only its partition, an index Query walks the table
unsorted (the index's own sort follows, as before). Every answer is the same (moto's own
ordering, filtering and paging then run unchanged on the candidates); only the cost differs. It
is installed by the simulation alone (`bench.day.sim_stack`), never by the tests or the local
stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models.table import Table

_ORIGINAL: list[Callable[..., Any]] = []


def _scoped_query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")  # query()'s 8th parameter
    if index_name:
        candidates = [item for partition in self.items.values() for item in partition.values()]
    else:
        candidates = list(self.items.get(hash_key, {}).values())
    self.all_items = lambda: candidates  # type: ignore[method-assign]  # seen by this call only
    try:
        return _ORIGINAL[0](self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


@contextmanager
def keyed_queries() -> Iterator[None]:
    """Within the block, moto's Query reads from the key (see the module's docstring)."""
    _ORIGINAL[:] = [Table.query]
    Table.query = _scoped_query  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query = _ORIGINAL[0]  # type: ignore[method-assign]
