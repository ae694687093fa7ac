"""DynamoDB's answers written straight from moto's dicts, for the simulation: the same JSON, a
fraction of the cost.

Why: moto (5.2) turns every answer into JSON with a generic serializer that, for each member of
each output shape, tries up to a dozen aliases of its name on the result (`AttributePicker`).
An item is a map of `AttributeValue` structures of ten members each, so a Query of a few items
makes tens of thousands of lookups: profiled over a simulated busy morning, that serializer was
about 40 % of podslots' whole cost, more than the handlers, PynamoDB and moto's tables together.

moto's DynamoDB answers are already dicts keyed by the wire's member names. `direct_json` walks
the same output shape over them, taking each key as it is; it gives up (`Unsure`) on anything
where moto's alias search could pick something else: a key that is not a member of its shape,
a value that is not a dict where a structure is expected, a blob or a timestamp, an error. Then
moto's own serializer runs, unchanged. `tests/integration/test_sim_wire.py` serializes every answer of
a pool's life both ways and requires the same JSON, and counts how often this gave up.

Installed by the simulation alone (`bench.day.podslots_policy`), never by the tests or the local
stack, like `sim_table.keyed_queries`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from enum import Enum
from typing import Any

from botocore.model import Shape
from moto.core.responses import ActionContext, ActionResult

from bench.day.sim_patch import swapped

_ORIGINAL: list[Callable[..., Any]] = []


class Unsure(Exception):
    """moto's alias search might read this value differently: let moto serialize it."""


def direct_json(value: Any, shape: Shape) -> Any:
    """`value` as moto's JSON serializer writes it for `shape`, when that is sure (else `Unsure`)."""
    kind = shape.type_name
    if kind == "structure":
        return _structure(value, shape)
    if kind == "list" and isinstance(value, (list, tuple)):
        return [direct_json(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: direct_json(v, shape.value) for k, v in value.items()}
    scalar = _SCALARS.get(kind)
    if scalar is None or value is None:
        raise Unsure  # blobs, timestamps and anything unexpected: moto's way
    return scalar(value)


def _structure(value: Any, shape: Shape) -> dict[str, Any]:
    if not isinstance(value, dict) or getattr(shape, "is_document_type", False):
        raise Unsure
    members = shape.members
    out = {}
    for key, member_value in value.items():
        member = members.get(key)
        if member is None or (member.name in value and member.name != key):
            raise Unsure  # moto would also look the member up under another name
        if member_value is not None:
            out[member.serialization.get("name", key)] = direct_json(member_value, member)
    return out


def _string(value: Any) -> Any:
    if isinstance(value, Enum):
        value = value.value
    return str(value) if value not in ({}, []) else value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Unsure
    return value


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "integer": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": _boolean,
}


def _execute_result(self: ActionResult, context: ActionContext) -> Any:
    service = context.service_model
    operation = context.operation_model
    shape = operation.output_shape
    if service.service_name == "dynamodb" and shape is not None and not isinstance(self.result, Exception):
        try:
            body = json.dumps(direct_json(self.result, shape))
        except Unsure:
            pass
        else:
            version = service.metadata.get("jsonVersion", "1.0")
            headers = {"Content-Type": f"application/x-amz-json-{version}"}
            return operation.http.get("responseCode", 200), headers, body
    return _ORIGINAL[0](self, context)


def direct_answers() -> AbstractContextManager[None]:
    """Within the block, DynamoDB's answers are written by `direct_json` where it is sure."""
    return swapped(ActionResult, "execute_result", _execute_result, _ORIGINAL)
