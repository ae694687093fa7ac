"""Read `template.yaml` itself, so tests and the local stack build what the template declares."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation's short-form intrinsics (!Ref, !Sub, ...) as data."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)


def resource(name: str) -> dict[str, Any]:
    return template()["Resources"][name]


def function_ids() -> list[str]:
    """The logical ids of the template's functions, in its order."""
    return [name for name, res in template()["Resources"].items() if res.get("Type") == "AWS::Serverless::Function"]


def function_property(logical_id: str, name: str) -> Any:
    """A function's property, or the template's Globals for functions where the function sets none."""
    props = resource(logical_id)["Properties"]
    return props[name] if name in props else template().get("Globals", {}).get("Function", {}).get(name)


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments from the template's SlotTable (keys, indexes, billing)."""
    props = resource("SlotTable")["Properties"]
    return {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "GlobalSecondaryIndexes": props.get("GlobalSecondaryIndexes", []),
        "BillingMode": props["BillingMode"],
    }


def ttl_attribute() -> str:
    return str(resource("SlotTable")["Properties"]["TimeToLiveSpecification"]["AttributeName"])
