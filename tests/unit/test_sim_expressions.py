"""The simulation's once-per-text expression parsing answers as moto's parse per request does
(`bench/day/sim_expressions.py`): the same writes, conditions, transactions and queries, good and
bad, run both ways, with the same answers, errors and table."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest.mock import patch

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]  # moto's untyped module
from moto.dynamodb.parsing.expressions import ExpressionTokenizer, UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import UpdateExpressionValidator

from bench.day.sim_expressions import parsed_once
from local.template import table_definition

TABLE = "sim-expressions-check"
POD = {"pk": {"S": "pool#a"}, "sk": {"S": "pod#1"}}
BEAT = "SET #h = :now, #s = :ready, #r = if_not_exists(#r, :now), #n = #n + :one REMOVE #c"
BEAT_NAMES = {"#h": "heartbeat_at", "#s": "state", "#r": "registered_at", "#n": "beats", "#c": "cordoned"}
BEATING = "#s IN (:starting, :ready) AND attribute_not_exists(#c)"


def _beat(now: int, *, state: str = "ready", returns: str = "ALL_NEW") -> dict[str, Any]:
    return {
        "Key": POD,
        "UpdateExpression": BEAT,
        "ConditionExpression": BEATING,
        "ExpressionAttributeNames": BEAT_NAMES,
        "ExpressionAttributeValues": {
            ":now": {"N": str(now)},
            ":ready": {"S": state},
            ":starting": {"S": "starting"},
            ":one": {"N": "1"},
        },
        "ReturnValues": returns,
    }


def _set(names: dict[str, str], value: str = "x", expression: str = "SET #k = :v") -> dict[str, Any]:
    return {
        "Key": POD,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {":v": {"S": value}},
    }


def _transaction(now: int, expect: str) -> list[dict[str, Any]]:
    return [
        {"Update": {"TableName": TABLE, **{k: v for k, v in _beat(now).items() if k != "ReturnValues"}}},
        {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": {"pk": {"S": "pool#a"}, "sk": {"S": "settings"}},
                "ConditionExpression": "#s = :s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":s": {"S": expect}},
            }
        },
    ]


# (operation, its arguments): each text is asked more than once, with the same and other names and
# values, so the kept trees and checks are used, and each refusal and error is met again
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("update_item", _beat(100, state="starting")),  # a beat finds the pod starting: refused
    ("put_item", {"Item": {**POD, "state": {"S": "starting"}, "beats": {"N": "0"}}}),
    ("update_item", _beat(110)),  # registers it
    ("update_item", _beat(120)),  # the same text, other values: kept tree, checks skipped
    ("update_item", _beat(130, returns="UPDATED_OLD")),
    ("update_item", _set({"#k": "note"})),
    ("update_item", _set({"#k": "sk"})),  # the same text, names pointing at the key: refused
    ("update_item", _set({"#k": "note"}, "y")),
    ("update_item", _set({"#k": "note"}, expression="SET #k = :v, #k = :v")),  # overlapping paths
    ("update_item", _set({"#k": "note"}, expression="SET #k = :v, #k = :v")),  # refused again
    ("update_item", _set({"#k": "note"}, expression="SET #k = = :v")),  # does not parse
    ("update_item", _set({"#k": "note"}, expression="SET #k = = :v")),  # nor the second time
    ("update_item", {**_set({"#k": "note"}), "ExpressionAttributeValues": {":v": {"S": "x"}, ":w": {"S": "y"}}}),
    ("update_item", _set({"#k": "beats"}, expression="ADD #k :v")),  # a string added to a number: refused
    (
        "update_item",
        {**_beat(140), "ExpressionAttributeValues": {**_beat(140)["ExpressionAttributeValues"], ":x": {"S": "unused"}}},
    ),
    ("update_item", _beat(150)),
    (
        "update_item",
        {
            **_set({"#k": "tags"}, expression="SET #k = list_append(if_not_exists(#k, :e), :v)"),
            "ExpressionAttributeValues": {":e": {"L": []}, ":v": {"L": [{"S": "a"}]}},
        },
    ),
    (
        "update_item",
        {
            **_set({"#k": "tags"}, expression="SET #k = list_append(if_not_exists(#k, :e), :v)"),
            "ExpressionAttributeValues": {":e": {"L": []}, ":v": {"L": [{"S": "b"}]}},
        },
    ),
    ("put_item", {"Item": {"pk": {"S": "pool#a"}, "sk": {"S": "settings"}, "status": {"S": "open"}}}),
    ("transact_write_items", {"TransactItems": _transaction(160, "open")}),
    ("transact_write_items", {"TransactItems": _transaction(170, "closed")}),  # the check refuses: cancelled
    ("transact_write_items", {"TransactItems": _transaction(180, "open")}),
    ("update_item", _set({"#k": "cordoned"}, "operator")),
    ("update_item", _beat(190)),  # cordoned: refused
    (
        "delete_item",
        {
            "Key": POD,
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":s": {"S": "draining"}},
        },
    ),
    (
        "query",
        {
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":p": {"S": "pool#a"}, ":s": {"S": "ready"}},
        },
    ),
    (
        "query",
        {
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":p": {"S": "pool#a"}, ":s": {"S": "open"}},
        },
    ),
    (
        "delete_item",
        {
            "Key": POD,
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {":s": {"S": "ready"}},
        },
    ),
    ("update_item", _beat(200)),  # the pod is gone: refused
]


def _play(context: Callable[[], AbstractContextManager[None]]) -> tuple[list[Any], list[Any], int]:
    """Every request's answer (or error code and message), the table after them, and how many
    expression texts moto tokenized."""
    tokenized = 0
    tokenize = ExpressionTokenizer.make_list

    def counted(text: str) -> Any:
        nonlocal tokenized
        tokenized += 1
        return tokenize(text)

    with mock_aws(), context(), patch.object(ExpressionTokenizer, "make_list", staticmethod(counted)):
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        answers: list[Any] = []
        for operation, arguments in REQUESTS:
            try:
                answer = (
                    getattr(client, operation)(TableName=TABLE, **arguments)
                    if operation != "transact_write_items"
                    else client.transact_write_items(**arguments)
                )
                answer.pop("ResponseMetadata")
                answers.append(answer)
            except ClientError as error:
                answers.append((error.response["Error"], error.response.get("CancellationReasons")))
        items = client.scan(TableName=TABLE)["Items"]
        return answers, sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])), tokenized


def test_expressions_parsed_once_answer_as_moto_parsing_each_request() -> None:
    # Given the same table and requests, good and bad, most of their texts asked more than once
    # When they run on moto parsing every request, and on the simulation's once-per-text parsing
    moto_answers, moto_table, moto_tokenized = _play(nullcontext)
    once_answers, once_table, once_tokenized = _play(parsed_once)

    # Then each request answers the same (items, errors and their messages), and the table is the same
    assert once_answers == moto_answers
    assert once_table == moto_table
    # and the requests met every outcome they were written for: not a run of refusals
    codes = [a[0]["Code"] if isinstance(a, tuple) else "ok" for a in moto_answers]
    assert codes.count("ok") == 16
    assert codes.count("ConditionalCheckFailedException") == 4
    assert codes.count("ValidationException") == 8
    assert codes.count("TransactionCanceledException") == 1
    # and the shortcut was taken: the update texts were tokenized once each, not once or twice a request
    assert once_tokenized < moto_tokenized / 3


def _shape(node: Any) -> Any:
    """A syntax tree as plain data: each node's class and every attribute, its children's too (a
    child's `parent` as whether it is the node holding it), leaves as they are."""
    if isinstance(node, Node):
        attributes = {k: _shape(v) for k, v in vars(node).items() if k != "parent"}
        parents = [child.parent is node for child in node.children or [] if isinstance(child, Node)]
        return (type(node).__name__, attributes, parents)
    if isinstance(node, list):
        return [_shape(item) for item in node]
    return repr(node)


def test_a_kept_tree_is_never_changed_by_the_requests_that_use_it() -> None:
    # Given the beat's tree as moto parses it
    fresh = _shape(UpdateExpressionParser.make(BEAT))

    # When the kept tree has served beats, through moto's checks, validation and updates
    with mock_aws(), parsed_once():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        client.put_item(TableName=TABLE, Item={**POD, "state": {"S": "ready"}, "beats": {"N": "0"}})
        for now in (1, 2, 3):
            client.update_item(TableName=TABLE, **_beat(now))
        kept = UpdateExpressionParser.make(BEAT)
        assert kept is UpdateExpressionParser.make(BEAT)  # the one tree every beat used

        # Then it is still the tree moto parses from the text
        assert _shape(kept) == fresh
    # and after the block, moto parses every request again
    assert UpdateExpressionParser.make(BEAT) is not UpdateExpressionParser.make(BEAT)


def test_a_validators_unpickled_copy_is_the_deep_copy_moto_makes() -> None:
    # Given the beat's tree, kept by the shortcut
    with mock_aws(), parsed_once():
        kept = UpdateExpressionParser.make(BEAT)
        table = type("Table", (), {"table_key_attrs": ["pk", "sk"], "attr": [], "attribute_keys": ["pk", "sk"]})()

        # When a validator is made for it
        validator = UpdateExpressionValidator(kept, BEAT_NAMES, {}, item=None, table=table)  # type: ignore[arg-type]  # not read until validate()

    # Then its private copy is moto's deep copy: the same classes, attributes and links, other objects
    assert _shape(validator.node_to_validate) == _shape(copy.deepcopy(kept))
    assert validator.node_to_validate is not kept
    assert validator.node_to_validate.children[0] is not kept.children[0]
