"""The API routes as `template.yaml` declares them, mapped to the handler modules they run.

Tests call handlers through this table, so a route in the template without a handler (or the
other way round) fails a test instead of passing unnoticed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from local.template import template


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str  # the template's logical id
    code_uri: str

    @property
    def module_name(self) -> str:
        return self.code_uri.strip("/").replace("/", ".") + ".app"

    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)


def api_routes() -> list[Route]:
    found = []
    for name, res in template()["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "Api":
                p = event["Properties"]
                found.append(Route(p["Method"].upper(), p["Path"], name, props["CodeUri"]))
    return found


def route_for(event: dict[str, Any]) -> Route:
    for route in api_routes():
        if route.method == event["httpMethod"] and route.path == event["resource"]:
            return route
    raise LookupError(f"template.yaml has no route {event['httpMethod']} {event['resource']}")
