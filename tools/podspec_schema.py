"""Write the PodSpec schema podslots validates `pod_template.spec` against (podslots/podspec_schema.json).

The pools function has no kubernetes layer (its cold start stays small, tests/unit/test_cold_start.py),
so the schema is a JSON data file in the package, made here from the models of the `kubernetes`
client the kube layer pins: each model's `openapi_types` (the Python type of each field) and
`attribute_map` (its camelCase name, as a manifest writes it), for V1PodSpec and every model it
reaches. A field is required when the model (a pydantic model since client 35) requires it, as the
API server does. tests/unit/test_podspec_schema.py regenerates it and fails when the committed file
is stale (a new pin of the client without `make podspec-schema`).

The grammar is a small subset of JSON Schema, what `podslots.podspec_schema` reads:
`{"type": "string"|"integer"|"number"|"boolean"}`, `{"type": ["integer", "string"]}` (IntOrString),
`{"type": "array", "items": S}`, `{"type": "object", "additionalProperties": S}` (a map),
`{"$ref": "#/$defs/Name"}`, and each model in `$defs` as an object with `properties`, `required`
and `additionalProperties: false`.

    make podspec-schema      # or: .venv/bin/python -m tools.podspec_schema --write
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "layers/podslots/podslots/podspec_schema.json"
ROOT_MODEL = "V1PodSpec"

# Quantities ("500m", "1Gi") are strings in the client's models, but the API server takes a number as
# well (`cpu: 1` in a manifest): these fields hold quantities.
QUANTITIES = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1PodSpec", "overhead"),
    ("V1EmptyDirVolumeSource", "size_limit"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
}
QUANTITY: dict[str, Any] = {"type": ["string", "integer", "number"], "format": "quantity"}
_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
}
# `object` in the client is IntOrString for a port, and free JSON elsewhere (managedFields' fieldsV1).
INT_OR_STRING: dict[str, Any] = {"type": ["integer", "string"]}
FREE_OBJECT: dict[str, Any] = {"type": "object"}


def _type(name: str, models: Any, seen: list[str]) -> dict[str, Any]:
    """The schema of one `openapi_types` entry; a model met for the first time is queued in `seen`."""
    if name in _SCALARS:
        return dict(_SCALARS[name])
    if match := re.fullmatch(r"List\[(.+)\]", name):
        return {"type": "array", "items": _type(match.group(1), models, seen)}
    if match := re.fullmatch(r"Dict\[str, (.+)\]", name):
        return {"type": "object", "additionalProperties": _type(match.group(1), models, seen)}
    if not hasattr(models, name):
        raise SystemExit(f"podspec_schema: unknown type {name!r} in the client's models")
    if name not in seen:
        seen.append(name)
    return {"$ref": f"#/$defs/{name}"}


def _required(cls: Any, attribute: str) -> bool:
    """The client's models are pydantic models: a required field is one the API requires."""
    fields = cls.model_fields
    field = fields.get(attribute) or next(f for f in fields.values() if f.alias == attribute)  # `_exec`
    return bool(field.is_required())


def _field(model: str, attribute: str, kind: str, models: Any, seen: list[str]) -> dict[str, Any]:
    if (model, attribute) in QUANTITIES:
        is_map = kind.startswith("Dict[")
        return {"type": "object", "additionalProperties": dict(QUANTITY)} if is_map else dict(QUANTITY)
    if kind == "object":
        return dict(INT_OR_STRING if attribute == "port" else FREE_OBJECT)
    return _type(kind, models, seen)


def _model(name: str, models: Any, seen: list[str]) -> dict[str, Any]:
    cls = getattr(models, name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for attribute, kind in cls.openapi_types.items():
        field = cls.attribute_map[attribute]
        properties[field] = _field(name, attribute, kind, models, seen)
        if _required(cls, attribute):
            required.append(field)
    return {
        "type": "object",
        "properties": dict(sorted(properties.items())),
        "required": sorted(required),
        "additionalProperties": False,
    }


def build() -> dict[str, Any]:
    """V1PodSpec and every model it reaches, from the installed (pinned) client."""
    import kubernetes
    from kubernetes.client import models

    seen = [ROOT_MODEL]
    defs: dict[str, Any] = {}
    while len(defs) < len(seen):
        name = seen[len(defs)]
        defs[name] = _model(name, models, seen)
    return {
        "$comment": "Generated by tools/podspec_schema.py from the kubernetes client's models; do not edit.",
        "kubernetesClient": kubernetes.__version__,
        "$ref": f"#/$defs/{ROOT_MODEL}",
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {TARGET.relative_to(ROOT)} (else print)")
    args = parser.parse_args(argv)
    if args.write:
        TARGET.write_text(render())
        print(f"wrote {TARGET.relative_to(ROOT)}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
