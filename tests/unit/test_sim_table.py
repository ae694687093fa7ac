"""The simulation's scoped transaction undo leaves the table moto's whole-table undo leaves
(`bench/day/sim_table.py`): the same transactions, committed and cancelled, run both ways."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from unittest.mock import patch

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.dynamo_type import Item

from bench.day.sim_table import scoped_transactions
from local.template import table_definition

TABLE = "sim-table-check"


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _update(pk: str, sk: str, status: str, expect: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": TABLE,
        "Key": _key(pk, sk),
        "UpdateExpression": "SET #s = :s, n = if_not_exists(n, :zero) + :one",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": status}, ":zero": {"N": "0"}, ":one": {"N": "1"}},
    }
    if expect is not None:
        update["ConditionExpression"] = "#s = :e"
        update["ExpressionAttributeValues"][":e"] = {"S": expect}
    return {"Update": update}


def _put(pk: str, sk: str, absent: bool = True) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": TABLE, "Item": {**_key(pk, sk), "status": {"S": "new"}}}
    if absent:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    return {"Put": put}


def _delete(pk: str, sk: str) -> dict[str, Any]:
    return {"Delete": {"TableName": TABLE, "Key": _key(pk, sk)}}


TRANSACTIONS: list[list[dict[str, Any]]] = [
    [_put("pool#a", "pod#1"), _put("task#1", "task")],  # committed
    [_update("pool#a", "pod#1", "busy", expect="new"), _put("task#2", "task")],  # committed
    [_update("pool#a", "pod#1", "idle", expect="new"), _put("task#3", "task")],  # cancelled: the first's condition
    [_put("task#4", "task"), _delete("task#1", "task"), _put("task#2", "task")],  # cancelled: the last exists
    [_delete("task#1", "task"), _update("pool#a", "pod#1", "idle", expect="busy")],  # committed
    [_update("pool#b", "pod#9", "busy", expect="idle"), _put("task#5", "task")],  # cancelled: no such pod
    [_update("pool#a", "pod#1", "busy", expect="idle"), _put("task#2", "task")],  # cancelled after an update
    [_update("pool#c", "pod#7", "new"), _put("task#2", "task")],  # cancelled after an update made an item
    [_put("task#6", "task"), _put("task#6", "task", absent=False)],  # refused: the same key twice
    [_update("pool#c", "pod#7", "busy"), _put("task#7", "task")],  # committed: an update makes an item
]


EXPECTED = [
    "committed",
    "committed",
    "cancelled",
    "cancelled",
    "committed",
    "cancelled",
    "cancelled",
    "cancelled",
    "ValidationException",
    "committed",
]


def _play(
    context: Callable[[], AbstractContextManager[None]], transactions: list[list[dict[str, Any]]]
) -> tuple[list[Any], list[str]]:
    with mock_aws(), context():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        client.put_item(TableName=TABLE, Item={**_key("pool#a", "settings"), "status": {"S": "kept"}})
        outcomes: list[str] = []
        details: list[list[str]] = []
        for items in transactions:
            try:
                client.transact_write_items(TransactItems=items)
                outcomes.append("committed")
            except ClientError as error:
                reasons = [r.get("Code", "") for r in error.response.get("CancellationReasons", [])]
                cancelled = error.response["Error"]["Code"] == "TransactionCanceledException"
                outcomes.append("cancelled" if cancelled else error.response["Error"]["Code"])
                details.append(reasons)
        items = client.scan(TableName=TABLE)["Items"]
        return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])), [*outcomes, str(details)]


@pytest.mark.parametrize("upto", range(1, len(TRANSACTIONS) + 1))
def test_a_scoped_undo_leaves_the_table_moto_leaves(upto: int) -> None:
    # Given the same table and the first `upto` transactions, committed and cancelled
    transactions = TRANSACTIONS[:upto]

    # When they run on moto's whole-table undo, and on the simulation's scoped one
    moto_table, moto_outcomes = _play(nullcontext, transactions)
    scoped_table, scoped_outcomes = _play(scoped_transactions, transactions)

    # Then each answers the same, and leaves the same items
    assert scoped_outcomes == moto_outcomes
    assert scoped_table == moto_table
    assert moto_outcomes[:-1] == EXPECTED[:upto]


# --- keyed_queries: every Query shape podslots uses, answered the same with and without the shortcut


def _seeded_items() -> list[dict[str, Any]]:
    """Two pools' partitions (pods, history events, notices, settings) and tasks in the indexes."""
    items: list[dict[str, Any]] = []
    for pool in ("a", "b"):
        pk = f"POOL#{pool}"
        items.append({**_key(pk, "#CONFIG"), "status": {"S": "kept"}})
        for n in range(7):
            pod = {**_key(pk, f"POD#{pool}-{n}"), "open_pool": {"S": pool}, "idle": {"N": str(n % 4)}}
            items.append(pod)
        for at in range(40):
            items.append({**_key(pk, f"EVENT#{1000 + at * 7:012d}#e{at}"), "kind": {"S": "PoolScaled"}})
        items.append({**_key(pk, f"EVENT#{1049:012d}"), "kind": {"S": "bound"}})  # exactly on a BETWEEN bound
        items.append({**_key(pk, f"EVENT#{1203:012d}"), "kind": {"S": "bound"}})  # and on the other
        items.append({**_key(pk, f"NOTICE#cordon#{pool}-1#u1"), "at": {"N": "5"}})
    for n in range(12):
        task = {**_key(f"TASK#t{n}", "#TASK"), "status": {"S": "reserved" if n % 3 else "running"}}
        if n % 3:
            task |= {"rsv_pool": {"S": "a" if n % 2 else "b"}, "rsv_until": {"N": str(5000 + n)}}
        items.append(task)
    return items


QUERIES: list[dict[str, Any]] = [
    {  # a pool's pods: the Query whose walk over the pool's history the shortcut skips
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": "POOL#a"}, ":prefix": {"S": "POD#"}},
        "ConsistentRead": True,
    },
    {  # paged: a page of three, then the next from its LastEvaluatedKey
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": "POOL#b"}, ":prefix": {"S": "POD#"}},
        "Limit": 3,
    },
    {  # the history, newest first, in a window
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": "POOL#a"},
            ":lo": {"S": f"EVENT#{1049:012d}"},
            ":hi": {"S": f"EVENT#{1203:012d}"},
        },
        "ScanIndexForward": False,
        "Limit": 5,
    },
    {  # a full last page: its matches end on a multiple of the limit, other items after them
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": "POOL#a"}, ":prefix": {"S": "NOTICE#"}},
        "Limit": 1,
    },
    {  # after a key, filtered
        "KeyConditionExpression": "pk = :pk AND sk > :after",
        "ExpressionAttributeValues": {
            ":pk": {"S": "POOL#a"},
            ":after": {"S": f"EVENT#{1049:012d}"},  # the item on the bound is not after it
            ":k": {"S": "bound"},
        },
        "FilterExpression": "kind = :k",
    },
    {  # one key, and a whole partition
        "KeyConditionExpression": "pk = :pk AND sk = :sk",
        "ExpressionAttributeValues": {":pk": {"S": "POOL#b"}, ":sk": {"S": "#CONFIG"}},
    },
    {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": "POOL#b"}}, "Limit": 20},
    {  # the indexes: open slots and reservations
        "IndexName": "open_slots",
        "KeyConditionExpression": "open_pool = :p AND idle > :zero",
        "ExpressionAttributeValues": {":p": {"S": "a"}, ":zero": {"N": "0"}},
        "ScanIndexForward": False,
    },
    {
        "IndexName": "reservations",
        "KeyConditionExpression": "rsv_pool = :p AND rsv_until < :t",
        "ExpressionAttributeValues": {":p": {"S": "a"}, ":t": {"N": "5008"}},
    },
]


def _pages(client: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of one Query, followed from each LastEvaluatedKey to the last."""
    pages, start = [], None
    while True:
        page = client.query(TableName=TABLE, **query, **({"ExclusiveStartKey": start} if start else {}))
        page.pop("ResponseMetadata")
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def _ask(context: Callable[[], AbstractContextManager[None]]) -> tuple[list[list[dict[str, Any]]], int]:
    """Every page of every query, and how many items moto walked (sized) for the first, the pods Query."""
    walked = 0
    size = Item.size

    def counted(item: Item) -> int:
        nonlocal walked
        walked += 1
        return size(item)

    with mock_aws(), context():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        for item in _seeded_items():
            client.put_item(TableName=TABLE, Item=item)
        answers, walked_by_pods_query = [], 0
        for number, query in enumerate(QUERIES):
            walked = 0
            with patch.object(Item, "size", counted):
                pages = _pages(client, query)
            walked_by_pods_query = walked if number == 0 else walked_by_pods_query
            answers.append(pages)
        return answers, walked_by_pods_query


def test_keyed_queries_answer_every_query_as_moto_does() -> None:
    """Given two pools' pods, history and tasks, when each Query shape podslots uses is asked with the
    simulation's keyed Query and with moto's own walk, then every page (items, counts, the key to go
    on from) is the same."""
    from bench.day.sim_table import keyed_queries

    moto_answers, moto_walked = _ask(nullcontext)
    keyed_answers, keyed_walked = _ask(keyed_queries)

    assert keyed_answers == moto_answers
    # moto sizes every item it walks, and each it keeps once more: the partition (51 items) against the pods (7)
    assert (moto_walked, keyed_walked) == (51 + 7, 7 + 7)
    counts = [sum(page["Count"] for page in pages) for pages in moto_answers]
    assert counts == [7, 7, 24, 1, 1, 1, 51, 5, 3]  # every query has something to answer; both bounds in BETWEEN
    assert [len(pages) for pages in moto_answers] == [1, 3, 5, 2, 1, 1, 3, 1, 1]  # paging, an empty last page too


# --- keyed_queries: an index Query reads the items carrying the index's hash key, kept by every write


def _task(task: str, **attrs: dict[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": f"task#{task}"}, "sk": {"S": "task"}, **attrs}


WAITING = {"wait_pool": {"S": "a"}, "wait_since": {"N": "10"}}
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("put_item", {"Item": _task("1", **WAITING)}),
    ("put_item", {"Item": _task("2", wait_pool={"S": "b"}, wait_since={"N": "11"})}),
    ("put_item", {"Item": {"pk": {"S": "pool#a"}, "sk": {"S": "pod#1"}, "open_pool": {"S": "a"}, "idle": {"N": "3"}}}),
    ("put_item", {"Item": _task("3", **WAITING)}),
    (
        "update_item",
        {
            "Key": _key("task#1", "task"),
            "UpdateExpression": "REMOVE wait_pool, wait_since SET rsv_pool = :p, rsv_until = :u",
            "ExpressionAttributeValues": {":p": {"S": "a"}, ":u": {"N": "99"}},
        },
    ),
    (
        "update_item",
        {
            "Key": _key("task#2", "task"),
            "UpdateExpression": "SET wait_pool = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}},
        },
    ),  # moves to pool a's wait
    (
        "update_item",
        {
            "Key": _key("task#9", "task"),
            "UpdateExpression": "SET wait_pool = :p, wait_since = :s",
            "ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"N": "12"}},
        },
    ),  # an update makes the item
    (
        "update_item",
        {
            "Key": _key("task#3", "task"),
            "UpdateExpression": "SET wait_pool = :p",
            "ConditionExpression": "attribute_not_exists(pk)",
            "ExpressionAttributeValues": {":p": {"S": "b"}},
        },
    ),  # refused: nothing moves
    ("put_item", {"Item": _task("3")}),  # overwritten without the index's key
    ("delete_item", {"Key": _key("task#9", "task")}),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": _task("4", **WAITING)}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key("pool#a", "pod#1"),
                        "UpdateExpression": "REMOVE open_pool",
                    }
                },
            ]
        },
    ),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": _task("5", **WAITING)}},
                {
                    "Delete": {
                        "TableName": TABLE,
                        "Key": _key("task#4", "task"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        },
    ),  # cancelled
    (
        "batch_write_item",
        {
            "RequestItems": {
                TABLE: [
                    {"PutRequest": {"Item": _task("6", **WAITING)}},
                    {"DeleteRequest": {"Key": _key("task#2", "task")}},
                ]
            }
        },
    ),
    (
        "update_item",
        {
            "Key": _key("pool#a", "pod#1"),
            "UpdateExpression": "SET open_pool = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}},
        },
    ),
    (
        "update_item",
        {
            "TableName": "ARN",
            "Key": _key("task#6", "task"),
            "UpdateExpression": "SET wait_pool = :p",
            "ExpressionAttributeValues": {":p": {"S": "b"}},
        },
    ),  # the table named by its ARN
    (
        "put_item",
        {"Item": _task("7", wait_pool={"L": [{"S": "a"}]}, wait_since={"N": "1"})},
    ),  # a list where the key's value goes
    (
        "update_table",
        {
            "AttributeDefinitions": [{"AttributeName": "note", "AttributeType": "S"}],
            "GlobalSecondaryIndexUpdates": [
                {
                    "Create": {
                        "IndexName": "by_note",
                        "KeySchema": [{"AttributeName": "note", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                }
            ],
        },
    ),
    (
        "update_item",
        {
            "Key": _key("task#1", "task"),
            "UpdateExpression": "SET note = :p",
            "ExpressionAttributeValues": {":p": {"S": "a"}},
        },
    ),
]
SEEDED = [  # in the table before the first index Query: a map on one, the index's key on some
    {
        "PutRequest": {
            "Item": _task(
                f"s{i}", **({"wait_pool": {"S": "ab"[i % 2]}, "wait_since": {"N": str(i)}} if i % 3 == 0 else {})
            )
        }
    }
    for i in range(24)
] + [{"PutRequest": {"Item": _task("s99", wait_pool={"M": {"x": {"S": "a"}}}, wait_since={"N": "5"})}}]
INDEX_QUERIES: list[dict[str, Any]] = [
    {"IndexName": index, "KeyConditionExpression": f"{attr} = :p", "ExpressionAttributeValues": {":p": {"S": pool}}}
    for index, attr in (
        ("waiting", "wait_pool"),
        ("reservations", "rsv_pool"),
        ("open_slots", "open_pool"),
        ("by_note", "note"),
    )
    for pool in ("a", "b")
] + [
    {
        "IndexName": "waiting",
        "KeyConditionExpression": "wait_pool = :p",
        "ExpressionAttributeValues": {":p": {"S": "a"}},
        "Limit": 2,
        "ScanIndexForward": False,
    },
    {
        "IndexName": "waiting",
        "KeyConditionExpression": "wait_pool = :p",
        "ExpressionAttributeValues": {":p": {"L": [{"S": "a"}]}},
    },
]


def _index_answers(context: Callable[[], AbstractContextManager[None]]) -> tuple[list[Any], int]:
    """Every index Query's answer after each write, and how often the index keys were built from the whole table."""
    from bench.day import sim_table

    walks = 0
    every_item = sim_table._every_item

    def counted(table: Any) -> Any:
        nonlocal walks
        walks += inspect.stack()[1].function == "_state"  # a build of the keys (not a Query they cannot answer)
        return every_item(table)

    with mock_aws(), context(), patch.object(sim_table, "_every_item", counted):
        client = boto3.client("dynamodb", region_name="eu-west-1")
        arn = client.create_table(**table_definition(TABLE))["TableDescription"]["TableArn"]
        client.batch_write_item(RequestItems={TABLE: SEEDED})
        answers: list[Any] = []
        for operation, arguments in WRITES:
            try:
                batched = operation in ("transact_write_items", "batch_write_item")
                call = arguments if batched else {"TableName": TABLE, **arguments}
                getattr(client, operation)(**{**call, **({"TableName": arn} if call.get("TableName") == "ARN" else {})})
                answers.append("ok")
            except ClientError as error:
                answers.append(error.response["Error"]["Code"])
            for query in INDEX_QUERIES:
                try:
                    answers.append(_pages(client, query))
                except ClientError as error:
                    answers.append([error.response["Error"]["Code"]])  # an index not made yet
        return answers, walks


def test_an_index_query_reads_the_items_carrying_its_key_as_moto_finds_them() -> None:
    """Given writes that give items an index's key, move it, take it away, make and delete items
    (puts, updates, a refused update, transactions committed and cancelled, a batch), when each
    index Query is asked after every write, with the simulation's kept index keys and with moto's
    walk of the whole table, then every answer is the same, and the table is walked once, to build them."""
    from bench.day.sim_table import keyed_queries

    @contextmanager
    def as_the_simulation_runs() -> Iterator[None]:
        with keyed_queries(), scoped_transactions():
            yield

    moto_answers, _ = _index_answers(nullcontext)
    keyed_answers, keyed_walks = _index_answers(as_the_simulation_runs)
    alone_answers, alone_walks = _index_answers(keyed_queries)

    assert keyed_answers == moto_answers
    assert keyed_walks == 2  # the table, then again once a new index was made
    # without the scoped undo, moto restores a cancelled transaction's table as a new copy: its keys are read again
    assert alone_answers == moto_answers
    assert alone_walks == 3
    outcomes = [a for a in moto_answers if isinstance(a, str)]
    assert outcomes.count("ok") == len(WRITES) - 2  # but the refused update and the cancelled transaction
    assert "ConditionalCheckFailedException" in outcomes
    assert "TransactionCanceledException" in outcomes
    counts = [
        sum(p["Count"] for p in pages if isinstance(p, dict)) for pages in moto_answers if isinstance(pages, list)
    ]
    assert max(counts) >= 3  # pool a's wait held three tasks at once: not a run of empty answers
    assert any(len(pages) > 1 for pages in moto_answers if isinstance(pages, list))  # a Limit paged
