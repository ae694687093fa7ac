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


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The template route a request path falls on, and its path parameters (as API Gateway does)."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    for route in api_routes():
        if route.method != method:
            continue
        pattern = route.path.strip("/").split("/")
        if len(pattern) != len(parts):
            continue
        params: dict[str, str] = {}
        for want, got in zip(pattern, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    break
                params[want[1:-1]] = got
            elif want != got:
                break
        else:
            return route, params
    return None
