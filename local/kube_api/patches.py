"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on plain dicts.

A strategic merge patch is applied as a JSON merge patch: right for maps such
as metadata.labels/annotations and for scalars, but lists are replaced whole
rather than merged by key.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import KubeError

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KubeError.invalid(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise KubeError.invalid(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise KubeError.invalid(f"array index {index} out of range")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise KubeError.invalid(f"doc is missing path: {path!r}")
    return node


def _on_map(parent: dict[str, Any], key: str, op: dict[str, Any], path: str) -> None:
    kind = op["op"]
    if kind != "add" and key not in parent:
        raise KubeError.invalid(f"doc is missing key: {path!r}")
    if kind in ("add", "replace"):
        parent[key] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[key]
    elif parent[key] != op.get("value"):  # "test"
        raise KubeError.invalid(f"testing value {path!r} failed")


def _on_list(parent: list[Any], token: str, op: dict[str, Any], path: str) -> None:
    kind = op["op"]
    index = _index(parent, token, allow_end=kind == "add")
    if kind == "add":
        parent.insert(index, copy.deepcopy(op["value"]))
    elif kind == "replace":
        parent[index] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[index]
    elif parent[index] != op.get("value"):  # "test"
        raise KubeError.invalid(f"testing value {path!r} failed")


def _apply_op(doc: Any, op: dict[str, Any]) -> None:
    kind, path = op.get("op"), op.get("path")
    if kind not in ("add", "replace", "remove", "test"):
        raise KubeError.invalid(f"unsupported JSON patch operation {kind!r}")
    if not isinstance(path, str):
        raise KubeError.invalid(f"JSON patch operation without a path: {op!r}")
    if kind in ("add", "replace", "test") and "value" not in op:
        raise KubeError.invalid(f"JSON patch {kind} without a value: {op!r}")
    tokens = _pointer(path)
    if not tokens:
        raise KubeError.invalid("JSON patch on the whole document is not supported")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        _on_map(parent, tokens[-1], op, path)
    elif isinstance(parent, list):
        _on_list(parent, tokens[-1], op, path)
    else:
        raise KubeError.invalid(f"doc is missing path: {path!r}")


def json_patch(target: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 add / replace / remove / test; all or nothing."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise KubeError.bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        _apply_op(doc, op)
    return doc


def apply_patch(target: dict[str, Any], content_type: str, patch: Any) -> dict[str, Any]:
    """Apply `patch` of the given Content-Type to a copy of `target`."""
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media_type == JSON_PATCH:
        return json_patch(target, patch)
    if media_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise KubeError.bad_request("a merge patch must be a JSON object")
        result: dict[str, Any] = merge_patch(target, patch)
        return result
    raise KubeError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}",
    )
