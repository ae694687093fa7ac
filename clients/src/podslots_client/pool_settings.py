"""A pool's settings as the API stores them, from what a file says: `pools apply` compares the two.

A file names only the fields its author sets; `GET /pools/{pool}` answers the whole document, every
default filled in. Comparing those as they are would call every file changed, and comparing only
the file's fields would miss a field taken out of the file (the next PUT resets it to its
default). So the file's document is normalised first, the way the server does it: each field it
leaves out takes its default, from the settings' JSON schema that ships with the client
(`pool_settings.schema.json`, made from the server's model; a test fails when it is stale).

A field the server answers that this client's schema does not know (a newer server's) is left out
of the comparison when the file does not set it: its default is unknown here. Set it in the file
to manage it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""What a side of a `Change` holds when the field is not there."""


@dataclass(frozen=True)
class Change:
    """One field that differs: `before` is the API's value, `after` the file's (either may be ABSENT)."""

    field: str  # dotted: pod_template.env.TF_LOG
    before: Any
    after: Any


@cache
def schema() -> dict[str, Any]:
    """The settings document's JSON schema (pydantic's, with `$defs`)."""
    text = resources.files("podslots_client").joinpath("pool_settings.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def normalised(document: Mapping[str, Any]) -> dict[str, Any]:
    """The settings document as the API would store it: the file's fields, the defaults of the rest."""
    result = _normalised(dict(document), schema())
    assert isinstance(result, dict)
    return result


def differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Change]:
    """Each field where the stored settings (`current`) differ from the normalised file (`wanted`)."""
    return list(_walk("", current, wanted, schema()))


def _resolved(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a `$ref`, and of an `anyOf` (`X | None`) take the branch that is not null."""
    while True:
        if "$ref" in node:
            node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            if len(branches) != 1:
                return {}
            node = branches[0]
        else:
            return node


def _normalised(value: Any, node: Mapping[str, Any]) -> Any:
    node = _resolved(node)
    if isinstance(value, list) and "items" in node:
        return [_normalised(item, node["items"]) for item in value]
    if not isinstance(value, dict) or "properties" not in node:
        return value  # a scalar, a map (env, labels: compared whole), or what the schema does not know
    result = dict(value)
    required = set(node.get("required") or ())
    for name, field in node["properties"].items():
        if name in result:
            result[name] = _normalised(result[name], field)
        elif name not in required:
            default = _default(field)
            if default is not ABSENT:
                result[name] = default
    return result


def _default(field: Mapping[str, Any]) -> Any:
    """A field's default: the schema's, else (a `default_factory`) the empty value of its type."""
    if "default" in field:
        return copy.deepcopy(field["default"])
    node = _resolved(field)
    if "properties" in node:
        return _normalised({}, node)
    if node.get("type") == "object":
        return {}
    if node.get("type") == "array":
        return []
    return ABSENT


def _walk(path: str, current: Any, wanted: Any, node: Mapping[str, Any]) -> Iterator[Change]:
    node = _resolved(node)
    if current is ABSENT and isinstance(wanted, Mapping):  # a new mapping: each of its fields is new
        current = {}
    elif wanted is ABSENT and isinstance(current, Mapping):
        wanted = {}
    if not (isinstance(current, Mapping) and isinstance(wanted, Mapping)):
        if current != wanted:
            yield Change(path, current, wanted)
        return
    known = node.get("properties")
    for key in sorted(current.keys() | wanted.keys()):
        if key not in wanted and known is not None and key not in known:
            continue  # a newer server's field, not in the file: its default is unknown here
        child = known.get(key, {}) if known is not None else node.get("additionalProperties") or {}
        where = f"{path}.{key}" if path else key
        yield from _walk(where, current.get(key, ABSENT), wanted.get(key, ABSENT), child)
