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
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]  # moto's untyped module
from moto.dynamodb.parsing.expressions import ExpressionTokenizer, UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import UpdateExpressionValidator

from bench.day import sim_expressions
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


def _update(
    expression: str, names: dict[str, str], values: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    request: dict[str, Any] = {"Key": POD, "UpdateExpression": expression, "ExpressionAttributeNames": names, **more}
    if values is not None:
        request["ExpressionAttributeValues"] = values
    return request


def _noted(state_attr: str, note: str) -> dict[str, Any]:
    """A note written only while the attribute `#s` names holds "starting": one text, other names and values."""
    return _update(
        "SET #n = :v",
        {"#n": "note", "#s": state_attr},
        {":v": {"S": note}, ":s": {"S": "starting"}},
        ConditionExpression="#s = :s",
    )


SS = {"SS": ["draining"]}
SHARED = _update(  # one placeholder in the update and its condition: moto's tree holds the request's set
    "SET #t = :v", {"#t": "tags_ss"}, {":v": SS}, ConditionExpression="attribute_not_exists(#t) OR #t = :v"
)
TAKE_SLOT = (
    "SET #sl.#key = :doc, #b = if_not_exists(#b, :zero) + :one, #h = :l, #o = if_not_exists(#o, :pool) ADD #p :one"
)
SLOT_FREE = "attribute_exists(pk) AND attribute_not_exists(#sl.#key) AND (#b < :three OR attribute_not_exists(#b))"
IN_NAMESPACE = "attribute_exists(pk) AND #d = :false AND (#st.#ns = :ns OR attribute_not_exists(#st.#ns))"
SLOT = {"M": {"task": {"S": "t-1"}, "state": {"S": "running"}, "since": {"N": "5"}}}
DEEP = "SET " + ", ".join(f"#a{i} = :v" for i in range(100))  # deeper than a kept pickle: moto's deep copy

# the update and condition shapes podslots' store writes (store/*.py), and the cases where a kept
# tree or a skipped check would answer wrongly if its key missed what decides its answer
SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("update_item", SHARED),
    ("update_item", _update("ADD #t :w", {"#t": "tags_ss"}, {":w": {"SS": ["operator"]}})),
    ("update_item", SHARED),  # the set is now two reasons: refused, as on moto
    ("update_item", _update("DELETE #t :w", {"#t": "tags_ss"}, {":w": {"SS": ["operator"]}})),
    ("update_item", SHARED),  # one reason again: it holds
    ("update_item", _noted("state", "a")),
    ("update_item", _noted("status", "a")),  # names differ: refused
    ("update_item", _noted("state", "b")),
    ("update_item", _noted("state", "b")),  # the very same request
    (
        "update_item",
        _update(
            "SET #n = :v",
            {"#n": "note", "#s": "state"},
            {":v": {"S": "b"}, ":s": {"S": "starting"}, ":x": {"S": "unused"}},
            ConditionExpression="#s = :s",
        ),
    ),
    ("update_item", _update("SET #k = :v", {"#k": "id"}, {":v": {"S": "x"}})),  # not this table's key
    (
        "update_item",
        {**_update("SET #k = :v", {"#k": "id"}, {":v": {"S": "x"}}), "TableName": "other", "Key": {"id": {"S": "1"}}},
    ),  # the other table's: refused
    ("update_item", _update("SET #k = if_not_exists(#k, :v)", {"#k": "beats"}, {":v": {"N": "0"}})),
    ("update_item", _update("SET #k = #k + :v", {"#k": "beats"}, {":v": {"N": "1"}})),
    ("update_item", _update("SET #k = #k + :v", {"#k": "state"}, {":v": {"N": "1"}})),  # a string plus one: refused
    ("update_item", _update("SET #k = #k + :v", {"#k": "beats"}, {":v": {"S": "1"}})),  # plus a string: refused
    ("update_item", _update("SET #k = #k + :v", {"#k": "gone"}, {":v": {"N": "1"}})),  # no such attribute: refused
    ("update_item", _update("SET #sl = if_not_exists(#sl, :m)", {"#sl": "slots"}, {":m": {"M": {}}})),
    (
        "update_item",
        _update(
            TAKE_SLOT,
            {"#sl": "slots", "#key": "s1", "#b": "busy", "#h": "held_tasks", "#o": "open_pool", "#p": "placed"},
            ConditionExpression=SLOT_FREE,
            ExpressionAttributeValues={
                ":doc": SLOT,
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":l": {"L": [{"S": "t-1"}]},
                ":pool": {"S": "pool#b"},
                ":three": {"N": "3"},
            },
            ReturnValues="ALL_NEW",
        ),
    ),
    (
        "update_item",
        _update(
            TAKE_SLOT,
            {"#sl": "slots", "#key": "s1", "#b": "busy", "#h": "held_tasks", "#o": "open_pool", "#p": "placed"},
            ConditionExpression=SLOT_FREE,
            ExpressionAttributeValues={
                ":doc": SLOT,
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":l": {"L": []},
                ":pool": {"S": "pool#b"},
                ":three": {"N": "3"},
            },
        ),
    ),  # the slot is taken: refused
    (
        "update_item",
        _update(
            "SET #b = #b - :one REMOVE #sl.#key, #h, #n",
            {"#b": "busy", "#sl": "slots", "#key": "s1", "#h": "held_tasks", "#n": "note"},
            {":one": {"N": "1"}},
        ),
    ),
    (
        "update_item",
        _update(
            "SET #d = :false, #st = :m",
            {"#d": "deleting", "#st": "settings"},
            {":false": {"BOOL": False}, ":m": {"M": {"namespace": {"S": "ci"}}}},
        ),
    ),
    (
        "update_item",
        _update(
            "SET #n = :v",
            {"#n": "note", "#d": "deleting", "#st": "settings", "#ns": "namespace"},
            {":v": {"S": "c"}, ":false": {"BOOL": False}, ":ns": {"S": "ci"}},
            ConditionExpression=IN_NAMESPACE,
        ),
    ),
    (
        "update_item",
        _update(
            "SET #n = :v",
            {"#n": "note", "#d": "deleting", "#st": "settings", "#ns": "namespace"},
            {":v": {"S": "d"}, ":false": {"BOOL": False}, ":ns": {"S": "prod"}},
            ConditionExpression=IN_NAMESPACE,
        ),
    ),  # another namespace: refused
    (
        "update_item",
        _update(
            "SET #c = :c ADD #cs :r",
            {"#c": "cordoned", "#cs": "cordons"},
            ConditionExpression="attribute_not_exists(#cs) OR NOT contains(#cs, :rr)",
            ExpressionAttributeValues={":c": {"S": "operator"}, ":r": {"SS": ["operator"]}, ":rr": {"S": "operator"}},
        ),
    ),
    (
        "update_item",
        _update(
            "SET #c = :c ADD #cs :r",
            {"#c": "cordoned", "#cs": "cordons"},
            ConditionExpression="attribute_not_exists(#cs) OR NOT contains(#cs, :rr)",
            ExpressionAttributeValues={":c": {"S": "operator"}, ":r": {"SS": ["operator"]}, ":rr": {"S": "operator"}},
        ),
    ),  # already cordoned for that reason: refused
    (
        "update_item",
        _update("DELETE #cs :r REMOVE #c", {"#c": "cordoned", "#cs": "cordons"}, {":r": {"SS": ["operator"]}}),
    ),
    (
        "transact_write_items",
        {
            "TransactItems": [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {**POD, "state": {"S": "new"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        },
    ),  # exists: cancelled
    (
        "transact_write_items",
        {
            "TransactItems": [
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {"pk": {"S": "pool#a"}, "sk": {"S": "pod#2"}, "state": {"S": "new"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            ]
        },
    ),
    ("update_item", _update(DEEP, {f"#a{i}": f"deep{i}" for i in range(100)}, {":v": {"S": "x"}})),
    ("update_item", _update(DEEP, {f"#a{i}": f"deep{i}" for i in range(100)}, {":v": {"S": "y"}})),
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


def _play(
    context: Callable[[], AbstractContextManager[None]], requests: list[tuple[str, dict[str, Any]]] = REQUESTS
) -> tuple[list[Any], list[Any], int]:
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
        client.create_table(
            TableName="other",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        answers: list[Any] = []
        for operation, arguments in requests:
            try:
                answer = (
                    getattr(client, operation)(**{"TableName": TABLE, **arguments})
                    if operation != "transact_write_items"
                    else client.transact_write_items(**arguments)
                )
                answer.pop("ResponseMetadata")
                answers.append(answer)
            except ClientError as error:
                answers.append((error.response["Error"], error.response.get("CancellationReasons")))
        items = sorted(client.scan(TableName=TABLE)["Items"], key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
        return answers, [*items, *client.scan(TableName="other")["Items"]], tokenized


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


def _outcomes(answers: list[Any]) -> list[str]:
    named = {
        "ConditionalCheckFailedException": "refused",
        "ValidationException": "invalid",
        "TransactionCanceledException": "cancelled",
    }
    return [named[a[0]["Code"]] if isinstance(a, tuple) else "ok" for a in answers]


def test_podslots_write_shapes_answer_as_moto_parsing_each_request() -> None:
    # Given a pod item and the update and condition shapes podslots' store writes, each text asked
    # again with other names, values or table where that decides the answer
    requests = [REQUESTS[1], *SHAPES]

    # When they run on moto parsing every request, and on the simulation's once-per-text parsing
    moto_answers, moto_table, _ = _play(nullcontext, requests)
    once_answers, once_table, once_tokenized = _play(parsed_once, requests)

    # Then each request answers the same, and both tables are the same
    assert once_answers == moto_answers
    assert once_table == moto_table
    # and each request met the outcome it was written for (moto's answers, as the comments say)
    assert _outcomes(moto_answers) == [
        *["ok", "ok", "ok", "refused", "ok"],  # a set shared by an update and its condition, changed in place
        *[
            "ok",
            "ok",
            "refused",
            "ok",
            "ok",
            "invalid",
        ],  # a condition's names, then the same request, then an unused value
        *["ok", "invalid"],  # the same update text, names and values: not this table's key, then another table's
        *[
            "ok",
            "ok",
            "invalid",
            "invalid",
            "invalid",
        ],  # arithmetic: the same text on a number, a string, a missing attribute
        *["ok", "ok", "refused", "ok"],  # a slot taken, refused when taken again, freed with three REMOVEs
        *["ok", "ok", "refused"],  # a BOOL, OR and nested-path condition, met and not
        *["ok", "refused", "ok"],  # a cordon's reason added to a string set, refused again, deleted
        *["cancelled", "ok"],  # a transaction's Put of an item that exists, and of one that does not
        *["ok", "ok"],  # an update too deep to be kept pickled: moto's own deep copy
    ]
    assert once_tokenized <= 16  # each update text tokenized once


def _plain(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    """An object graph as plain data (attributes, items, leaves by repr), for comparing two."""
    if id(value) in seen:
        return "<cycle>"
    if isinstance(value, (list, tuple)):
        return [_plain(v, seen | {id(value)}) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, seen | {id(value)}) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        return (type(value).__name__, {k: _plain(v, seen | {id(value)}) for k, v in vars(value).items()})
    return repr(value)


def test_a_kept_condition_holds_values_of_its_own_that_no_item_shares() -> None:
    # Given an update whose condition and SET share one string-set placeholder, kept by the shortcut
    with mock_aws(), parsed_once():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**table_definition(TABLE))
        client.update_item(TableName=TABLE, **SHARED)
        ((kept, _, _),) = sim_expressions._CONDITIONS.values()
        before = _plain(kept)

        # When the item's set (put there by that update) is added to in place, and the request asked again
        client.update_item(TableName=TABLE, **_update("ADD #t :w", {"#t": "tags_ss"}, {":w": {"SS": ["operator"]}}))
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            client.update_item(TableName=TABLE, **SHARED)

    # Then the kept condition is as it was parsed, holding the request's one reason
    assert _plain(kept) == before
    assert "draining" in str(before)
    assert "operator" not in str(before)


def test_a_condition_reports_the_names_and_values_it_found_as_moto_does() -> None:
    # Given a condition's text, names and values (with an unused value, which the handler refuses)
    names, values = {"#s": "state", "#c": "cordoned"}, {":s": {"S": "ready"}, ":unused": {"S": "x"}}

    def found() -> tuple[list[str], list[str]]:
        parser = ConditionExpressionParser("#s = :s AND attribute_not_exists(#c)", names, values)
        parser.parse()
        return parser.expr_attr_names_found, parser.expr_attr_values_found

    # When it is parsed by moto, and twice with the shortcut (parsed, then kept)
    by_moto = found()
    with parsed_once():
        first, kept = found(), found()

    # Then each reports what moto's parse reports, no more
    assert first == kept == by_moto == (["#s", "#c"], [":s"])


def test_after_the_block_moto_is_as_it_was() -> None:
    # Given moto's classes as imported: the validator inherits `__init__` and `validate` from its base
    inherited = {name: name in vars(UpdateExpressionValidator) for name in ("__init__", "validate")}
    make = vars(UpdateExpressionParser)["make"]

    # When the shortcut is installed and removed
    with parsed_once():
        assert vars(UpdateExpressionParser)["make"] is not make

    # Then the validator inherits them again (a later change to its base reaches it), and make is moto's
    assert (
        {name: name in vars(UpdateExpressionValidator) for name in inherited}
        == inherited
        == {
            "__init__": False,
            "validate": False,
        }
    )
    assert vars(UpdateExpressionParser)["make"] is make
