"""moto's expressions parsed once per text, not once per request, for the simulation: the same
answers, a fraction of the cost.

Why: every UpdateItem, conditional write and transaction item makes moto parse its expressions
from the text (a tokenizer and a recursive-descent parser in Python), often twice for one request
(its request handler parses them to check the names and values used, its backend again to run
them), and then run ten tree walks over the update's syntax tree, each of which rebuilds its
table of node handlers at every node it visits. An agent's heartbeat is one such UpdateItem a
minute per pod: over a simulated week of ten pools, hundreds of thousands of them, and about a
fifth of the run's CPU was moto's expression parsing and validation.

The texts repeat: PynamoDB writes the same expression, with the same placeholders, for every
beat, allocation and release; only the values change. So:

- `UpdateExpressionParser.make` keeps the tree it parsed for each text. Every user of that tree
  only reads it (the request handler's checks) or copies it before changing it (moto's
  `Validator`), so one tree serves every request of the same text;
  `tests/unit/test_sim_expressions.py` requires that the tree is the same after use. The
  validator's copy is unpickled from the tree's pickle, kept beside it, rather than deep-copied
  (the same objects, at a quarter of the cost).
- The three checks of an update that read only its text, names and the table's key are run once
  per text, names and key (`_validate`); the seven that read its values and the item, every time.
- A condition (`ConditionExpressionParser.parse`) is kept per text and the names and values its
  placeholders stand for: its tree holds the values (parsed from a copy of them, so no item ever
  shares a list with it), and is only evaluated against an item, never changed. The names and
  values the parse found (which the request handler checks for unused ones) are given back with it.
- A tree walker (`DepthFirstTraverser`) finds the handler for a class of node once, not at every
  node of the class (moto rebuilds its table of handlers, and tests the node against each, at
  every node it visits).

Errors are not kept: a text that fails to parse fails again, each time, as moto makes it fail.
`tests/unit/test_sim_expressions.py` runs the same writes, conditions and transactions (committed,
refused, malformed) both ways and requires the same answers, errors and table.

Installed by the simulation alone (`bench.day.podslots_policy`), never by the tests or the local
stack, like `sim_table` and `sim_wire`.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]  # moto's untyped module
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.validators import (
    ActionCountValidator,
    OverlappingPathsValidator,
    UpdateExpressionValidator,
    UpdateHashRangeKeyValidator,
)

from bench.day.sim_patch import swapped

KEPT = 4096  # texts (and conditions) kept at most: then the memo starts again
PICKLED_DEPTH = 64  # an update tree this deep or less (some 60 actions) is copied by unpickling

_ORIGINAL_MAKE: list[Callable[..., Any]] = []
_ORIGINAL_PARSE: list[Callable[..., Any]] = []
_UPDATES: dict[str, Any] = {}
_CONDITIONS: dict[tuple[str, str, str], tuple[Any, list[str], list[str]]] = {}
_PICKLED: dict[int, tuple[Any, bytes]] = {}  # id of a kept tree -> (the tree, kept alive; its pickle)


def _kept(memo: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(memo) >= KEPT:
        memo.clear()
    memo[key] = value
    return value


def _make(cls: type, expression_str: str) -> Any:
    """The tree of an update expression, parsed once per text (see the module's docstring), and
    kept pickled too: a validator's private copy of it is then unpickled, not deep-copied. Not a
    tree deeper than `PICKLED_DEPTH`: pickle recurses in C, moto's deep copy in Python frames, so
    on a deep enough tree (some 160 actions) moto's copy fails where an unpickling would not."""
    tree = _UPDATES.get(expression_str)
    if tree is None:
        tree = _kept(_UPDATES, expression_str, _ORIGINAL_MAKE[0](cls, expression_str))
        if _depth(tree) <= PICKLED_DEPTH:
            _kept(_PICKLED, id(tree), (tree, pickle.dumps(tree)))
    return tree


def _depth(node: Any) -> int:
    if not isinstance(node, Node):
        return 0
    return 1 + max((_depth(child) for child in node.children or []), default=0)


def _parse(self: ConditionExpressionParser) -> Any:
    """A condition's tree, parsed once per text and the names and values it can read; the names and
    values it found are set on the parser as moto's own parse sets them.

    The key holds each name and value whose placeholder occurs in the text (as a substring: a
    superset of those the parse can look up), not the request's whole maps: PynamoDB puts an
    update's values (a beat's time) in the same map as its condition's, and those change with
    every request. The kept tree is parsed from a copy of the values: moto's tree holds the value
    lists it was given (a string set's, for one), which an update of the same request may put
    into the item, and a later ADD or DELETE then changes in place."""
    text = self.condition_expression
    if not text:
        return _ORIGINAL_PARSE[0](self)
    key = (text, _used(self.expression_attribute_names, text), _used(self.expression_attribute_values, text))
    kept = _CONDITIONS.get(key)
    if kept is not None:
        tree, names, values = kept
        self.expr_attr_names_found.extend(names)
        self.expr_attr_values_found.extend(values)
        return tree
    given = self.expression_attribute_values
    self.expression_attribute_values = copy.deepcopy(given)
    try:
        tree = _ORIGINAL_PARSE[0](self)
    finally:
        self.expression_attribute_values = given
    _kept(_CONDITIONS, key, (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found)))
    return tree


def _used(placeholders: dict[str, Any] | None, text: str) -> str:
    """The entries of a names or values map whose placeholder occurs in `text`, as a key."""
    return json.dumps({k: v for k, v in (placeholders or {}).items() if k in text}, sort_keys=True)


_IS_NODE: dict[type, bool] = {}


def _traverse(self: DepthFirstTraverser, node: Any, child_id: int = -1) -> Any:
    """moto's `DepthFirstTraverser.traverse_node_recursively`, step for step, with its two tests of
    a node's class (is it a node; which handler takes it, the first in the map's order) answered
    once per class instead of at every node: a node's class decides both."""
    kind = type(node)
    is_node = _IS_NODE.get(kind)
    if is_node is None:
        is_node = _IS_NODE[kind] = isinstance(node, Node)
    if not is_node:
        return node
    parent_node = node.parent
    if node.children is not None:
        for i, child_node in enumerate(node.children):
            self.pre_processing_of_child(node, i)
            self.traverse_node_recursively(child_node, i)
    handler = _handler(self, kind)
    if handler is not None:
        node = handler(node)
        node.parent = parent_node
        if parent_node:
            parent_node.children[child_id] = node
    return node


def _handler(self: DepthFirstTraverser, kind: type) -> Callable[[Any], Any] | None:
    """The walker's handler for nodes of `kind`: its map's first class `kind` is a subclass of."""
    handlers = self.__dict__.get("_sim_handlers")
    if handlers is None:
        handlers = self.__dict__["_sim_handlers"] = {}
    if kind not in handlers:
        handlers[kind] = next(
            (handler for key, handler in self._processing_map().items() if issubclass(kind, key)), None
        )
    return handlers[kind]


_SYNTAX_CHECKS = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)
_CHECKED: dict[tuple[int, str, tuple[str, ...]], Any] = {}  # -> the tree checked (kept alive: its id stays its own)
_ORIGINAL_VALIDATOR_INIT: list[Callable[..., Any]] = []


def _validator_init(
    self: UpdateExpressionValidator,
    expression: Any,
    expression_attribute_names: dict[str, str],
    expression_attribute_values: dict[str, dict[str, Any]],
    item: Any,
    table: Any,
) -> None:
    """moto's `Validator.__init__`; for a kept tree, its private copy (which validation changes) is
    unpickled from the tree's pickle instead of deep-copied: the same objects, a quarter of the cost."""
    pickled = _PICKLED.get(id(expression))
    if pickled is None or pickled[0] is not expression:
        _ORIGINAL_VALIDATOR_INIT[0](
            self, expression, expression_attribute_names, expression_attribute_values, item, table
        )
    else:
        self.expression_attribute_names = expression_attribute_names
        self.expression_attribute_values = expression_attribute_values
        self.item = item
        self.table = table
        self.processors = self.get_ast_processors()
        self.node_to_validate = pickle.loads(pickled[1])
    self.__dict__["_sim_source"] = expression


def _validate(self: UpdateExpressionValidator) -> Any:
    """moto's `Validator.validate`, but the three checks that read only the text, its names and
    the table's key (one update clause of each kind, no overlapping paths, no key attribute set)
    are run once per text, names and key: they return their node as it was, or raise, and the
    same inputs give the same outcome. The other seven (values, the item's attributes, functions,
    arithmetic, types) run every time, in moto's order."""
    source = self.__dict__.get("_sim_source")
    key = (id(source), json.dumps(self.expression_attribute_names, sort_keys=True), tuple(self.table.table_key_attrs))
    checked = source is not None and _CHECKED.get(key) is source
    node = self.node_to_validate
    for processor in self.processors:
        if checked and isinstance(processor, _SYNTAX_CHECKS):
            continue
        node = processor.traverse(node)
    if source is not None and not checked:
        _kept(_CHECKED, key, source)
    return node


@contextmanager
def _update_trees_kept() -> Iterator[None]:
    """`UpdateExpressionParser.make` is a classmethod: swapped as one, and put back as one."""
    original = UpdateExpressionParser.__dict__["make"]
    if original.__func__ is _make:
        yield
        return
    _ORIGINAL_MAKE[:] = [original.__func__]
    UpdateExpressionParser.make = classmethod(_make)
    try:
        yield
    finally:
        UpdateExpressionParser.make = original


@contextmanager
def parsed_once() -> Iterator[None]:
    """Within the block, moto parses each expression text once (see the module's docstring)."""
    _forget()
    try:
        with (
            _update_trees_kept(),
            swapped(ConditionExpressionParser, "parse", _parse, _ORIGINAL_PARSE),
            swapped(DepthFirstTraverser, "traverse_node_recursively", _traverse, []),
            swapped(UpdateExpressionValidator, "__init__", _validator_init, _ORIGINAL_VALIDATOR_INIT),
            swapped(UpdateExpressionValidator, "validate", _validate, []),
        ):
            yield
    finally:
        _forget()


def _forget() -> None:
    for memo in (_UPDATES, _CONDITIONS, _CHECKED, _PICKLED):
        memo.clear()
