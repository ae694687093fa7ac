"""The simulated table read and written the way DynamoDB does it: a Query from its key, a
transaction's undo from the items it names, not the whole table.

Why the day simulation's cost grew faster than its traffic: moto answers every Query (a key
lookup in a partition, or in an index) by sorting every item of the table (`Table.all_items()`)
and walking them. The table only grows over a run: each task's item (kept 30 days after it
ends) and the pool's history (kept 14 days) are never expired within a simulated week, so each
Query costs more every hour, and the run's cost grows with the square of its length. Expiring
TTL items as DynamoDB does would change nothing within a week (the TTLs are 14 and 30 days). A
Query in DynamoDB reads its partition, or its index's items; this patch makes moto do the same
for the simulation: a table Query walks only its partition, and of it only the items within
its sort-key condition (when it has no `Limit`: see `_narrowable`); an index Query on a global
index's hash key reads the items that carry that key's value (`_IndexKeys`: built from the table
at its first index Query, then kept by every put, update and delete, which re-reads the item it
wrote; the three indexes are sparse, so a pool's waiting tasks are a handful among a week's tens
of thousands of items), any other index Query walks the table unsorted (the index's own sort
follows, as before). Every answer is the same (moto's own ordering, filtering and paging then
run unchanged on the candidates, its key test again included; `tests/unit/test_sim_table.py`
asks every Query shape podslots uses both ways); only the cost differs. The sort-key condition matters because a
pool's partition keeps its history (14 days of events) beside its pods, and moto sizes every item
it walks before it tests the key: a pool's pods Query, run by every scheduled step, cost more
with every event the pool had recorded, so a week's run cost more each day.

The same growth came from transactions: moto keeps an undo copy of a transaction's table by
deep-copying the whole table, once per item of the transaction (`transact_write_items`), so an
allocation (a two-item transaction) copied every task and history item twice: at a few hundred
items, a third of its cost; over a week of ten pools (tens of thousands of items, tens of
thousands of transactions) more than the rest of the run together. `scoped_transactions`
keeps the undo copy of the items the transaction names only: a transaction writes nothing else,
so the table after a cancelled one is the same (`tests/unit/test_sim_table.py` runs the same
transactions both ways and compares the tables).

Both are installed by the simulation alone (`bench.day.podslots_policy`), never by the tests or
the local stack.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.comparisons import get_comparison_func
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

from bench.day.sim_patch import swapped

_ORIGINAL: list[Callable[..., Any]] = []
_QUERY_SIGNATURE = inspect.signature(Table.query)


def _scoped_query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    call = _QUERY_SIGNATURE.bind(self, hash_key, *args, **kwargs).arguments
    if call.get("index_name"):
        candidates = _INDEX_KEYS.carrying(self, call["index_name"], call.get("hash_key_conditions") or [])
        if candidates is None:  # not a global index's hash key: walk the table, as before
            candidates = _every_item(self)
    else:
        candidates = list(self.items.get(hash_key, {}).values())
        if _narrowable(call):
            candidates = list(filter(_in_key_range(call), candidates))
    self.all_items = lambda: candidates  # type: ignore[method-assign]  # seen by this call only
    try:
        return _ORIGINAL[0](self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


def _narrowable(call: dict[str, Any]) -> bool:
    """A sort-key condition the walk can be narrowed to without changing moto's answer. Not with a
    `Limit` (moto ends a full page at the next item it walks, matching or not, and answers a
    LastEvaluatedKey only when there is one) nor with a legacy QueryFilter (moto then counts every
    item walked as scanned). The pods Query of every scheduled step has neither."""
    return bool(call.get("range_comparison")) and call.get("limit") is None and not call.get("filter_kwargs")


def _in_key_range(call: dict[str, Any]) -> Callable[[Item], bool]:
    """The sort-key condition of a table Query, tested as moto's walk tests it (`Table.query`,
    `DynamoType.compare`), its comparison looked up once for the Query rather than once an item."""
    conditions = call.get("range_key_conditions")
    attribute = conditions[-1][0] if conditions else None
    test = get_comparison_func(call["range_comparison"])
    values = [obj.cast_value for obj in call["range_objs"]]

    def matches(item: Item) -> bool:
        key = (item.attrs.get(attribute) if attribute else None) or item.range_key
        return bool(test(key.cast_value, *values))  # type: ignore[union-attr]

    return matches


class _IndexKeys:
    """For each table, which items carry each global index's hash key, by its value: the items an
    index Query reads in DynamoDB. Built from the table at its first index Query, then kept by
    every write that can change an item (a put, a delete, an update in place, a transaction,
    whose undo is a put or a delete), which re-reads the item it wrote. A key kept too long (an
    item since gone) costs a look-up and nothing else: moto's own test of the index's key runs
    on every candidate; a key missing would lose an answer, and is what the test looks for. A
    table replaced by a copy (moto's own undo of a cancelled transaction) is read again."""

    def __init__(self) -> None:
        # id(table) -> (the table, kept alive; its indexes' hash attributes when read; attr -> value ->
        # item keys; item key -> {attr: value})
        self.tables: dict[int, tuple[Table, Any, dict[str, dict[Any, dict[Any, None]]], dict[Any, dict[str, Any]]]] = {}

    def carrying(self, table: Table, index_name: str, conditions: list[tuple[str, Any]]) -> list[Item] | None:
        hash_attrs = _global_hash_attrs(table).get(index_name)
        if not hash_attrs or not conditions:
            return None
        attr, value = next(((a, v) for a, v in conditions if a in hash_attrs), (None, None))
        if attr is None or not _hashable(value):
            return None  # a list or map as the key's value: moto's walk, which matches nothing
        members, _ = self._state(table)
        keys = members.get(attr, {}).get(value, {})
        return [item for item in (_item_at(table, key) for key in keys) if item is not None]

    def refresh(self, table: Table, hash_value: Any, range_value: Any) -> None:
        state = self.tables.get(id(table))
        if state is None or state[0] is not table or state[1] != _global_hash_attrs(table):
            self.tables.pop(id(table), None)  # none yet, or the indexes changed: the next Query reads the table
            return
        _, _, members, where = state
        key = (hash_value, range_value if table.range_key_attr else None)
        try:
            for attr, value in where.pop(key, {}).items():
                members[attr][value].pop(key, None)
                if not members[attr][value]:
                    del members[attr][value]
            item = _item_at(table, key)
            if item is not None:
                self._add(state[1], members, where, key, item)
        except Exception:  # anything unforeseen: forget the table's keys rather than answer from them
            self.tables.pop(id(table), None)

    def _state(self, table: Table) -> tuple[dict[str, dict[Any, dict[Any, None]]], dict[Any, dict[str, Any]]]:
        state = self.tables.get(id(table))
        hash_attrs = _global_hash_attrs(table)
        if state is None or state[0] is not table or state[1] != hash_attrs:  # new, or its indexes changed
            members: dict[str, dict[Any, dict[Any, None]]] = {}
            where: dict[Any, dict[str, Any]] = {}
            for item in _every_item(table):
                self._add(hash_attrs, members, where, (item.hash_key, item.range_key), item)
            state = self.tables[id(table)] = (table, hash_attrs, members, where)
        return state[2], state[3]

    @staticmethod
    def _add(hash_attrs: dict[str, list[str]], members: Any, where: Any, key: Any, item: Item) -> None:
        carried = {}
        for attrs in hash_attrs.values():
            for attr in attrs:
                value = item.attrs.get(attr)
                if value is not None and _hashable(value):  # a list or map never equals a key's value
                    members.setdefault(attr, {}).setdefault(value, {})[key] = None
                    carried[attr] = value
        if carried:
            where[key] = carried


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _every_item(table: Table) -> list[Item]:
    """The table's items in moto's walk order, unsorted (a table without a range key keeps each
    item in place of a partition)."""
    if table.range_key_attr:
        return [item for partition in table.items.values() for item in partition.values()]
    return list(table.items.values())  # type: ignore[arg-type]


def _global_hash_attrs(table: Table) -> dict[str, list[str]]:
    return {
        index.name: [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        for index in table.global_indexes
    }


def _item_at(table: Table, key: tuple[Any, Any]) -> Item | None:
    hash_value, range_value = key
    partition = table.items.get(hash_value)
    if partition is None:
        return None
    if table.range_key_attr:
        return partition.get(range_value)
    return partition  # type: ignore[return-value]  # a table without a range key keeps the item itself


_INDEX_KEYS = _IndexKeys()
_ORIGINAL_PUT: list[Callable[..., Any]] = []
_ORIGINAL_DELETE: list[Callable[..., Any]] = []
_ORIGINAL_UPDATE: list[Callable[..., Any]] = []


def _key_of(table: Table, attrs: dict[str, Any]) -> tuple[Any, Any] | None:
    try:
        hash_value = DynamoType(attrs[table.hash_key_attr])
        range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    except (KeyError, TypeError, IndexError):
        return None
    return hash_value, range_value


def _tracked_put(self: Table, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _ORIGINAL_PUT[0](self, item_attrs, *args, **kwargs)
    finally:
        key = _key_of(self, item_attrs)
        if key is not None:
            _INDEX_KEYS.refresh(self, *key)


def _tracked_delete(self: Table, hash_key: Any, range_key: Any) -> Any:
    try:
        return _ORIGINAL_DELETE[0](self, hash_key, range_key)
    finally:
        _INDEX_KEYS.refresh(self, hash_key, range_key)


def _tracked_update(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _ORIGINAL_UPDATE[0](self, table_name, key, *args, **kwargs)
    finally:
        try:
            table = self.get_table(table_name)  # a name or an ARN, as moto's update_item takes it
        except Exception:
            table = None
        named = _key_of(table, key) if table is not None else None
        if table is not None and named is not None:
            _INDEX_KEYS.refresh(table, *named)


@contextmanager
def keyed_queries() -> Iterator[None]:
    """Within the block, moto's Query reads from the key, and an index Query the items that carry
    the index's hash key (see the module's docstring)."""
    _INDEX_KEYS.tables.clear()
    try:
        with (
            swapped(Table, "query", _scoped_query, _ORIGINAL),
            swapped(Table, "put_item", _tracked_put, _ORIGINAL_PUT),
            swapped(Table, "delete_item", _tracked_delete, _ORIGINAL_DELETE),
            swapped(DynamoDBBackend, "update_item", _tracked_update, _ORIGINAL_UPDATE),
        ):
            yield
    finally:
        _INDEX_KEYS.tables.clear()


_ORIGINAL_TRANSACT: list[Callable[..., Any]] = []


def _no_table_copies(value: Any, memo: Any = None) -> Any:
    """moto's `copy.deepcopy`, but a whole table is not copied (its undo is kept per item instead)."""
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _keys_named(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    named = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName", ""))
        if table is None:
            continue
        if "Key" in op:
            named.append((table.name, op["Key"]))
        elif "Item" in op:
            attrs = (table.hash_key_attr, table.range_key_attr)
            named.append((table.name, {a: op["Item"][a] for a in attrs if a and a in op["Item"]}))
    return named


def _scoped_transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    undo = []
    for table_name, key in _keys_named(self, transact_items):
        try:
            item = self.get_item(table_name, key)
        except Exception:  # a malformed key: moto's own call below raises its error
            continue
        undo.append((table_name, key, copy.deepcopy(item.to_json()["Attributes"]) if item else None))
    try:
        _ORIGINAL_TRANSACT[0](self, transact_items)
    except Exception:
        for table_name, key, attributes in reversed(undo):
            if attributes is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attributes)
        raise


@contextmanager
def scoped_transactions() -> Iterator[None]:
    """Within the block, a transaction's undo copy is of the items it names (see the docstring)."""
    no_table_copies = SimpleNamespace(deepcopy=_no_table_copies)
    with (
        swapped(DynamoDBBackend, "transact_write_items", _scoped_transact, _ORIGINAL_TRANSACT),
        swapped(dynamodb_models, "copy", no_table_copies, []),
    ):
        yield
