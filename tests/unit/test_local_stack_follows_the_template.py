"""The local stack serves exactly what template.yaml declares: routes, functions and schedules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import local.template as template_module
from local.routes import api_routes, match
from local.stack import _rate_seconds, queue_mappings, rules, schedules
from local.template import template


def test_every_template_route_is_served_by_its_function():
    declared = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"], name)
        for name, res in template()["Resources"].items()
        if res.get("Type") == "AWS::Serverless::Function"
        for e in (res["Properties"].get("Events") or {}).values()
        if e.get("Type") == "Api"
    }
    assert {(r.method, r.path, r.function) for r in api_routes()} == declared
    assert len(declared) == 11  # the cordon routes (POST, DELETE) included
    for route in api_routes():
        filled = route.path.replace("{pool}", "p").replace("{pod}", "p-1").replace("{task_id}", "t")
        found = match(route.method, filled)
        assert found is not None
        assert found[0] == route
        assert callable(route.module().lambda_handler)


def test_a_request_off_the_template_matches_no_route():
    assert match("PATCH", "/pools/p") is None
    assert match("GET", "/pools/p/pods") is None
    assert match("GET", "/pools//events") is None


def test_every_schedule_rule_and_queue_mapping_of_the_template_is_run():
    assert {(s.function, s.every_s, s.event["step"]) for s in schedules()} == {
        ("DispatchFunction", 60, "reconcile"),
        ("DispatchFunction", 60, "autoscale"),
        ("DispatchFunction", 300, "expire"),
    }
    assert [(f, p["detail-type"]) for f, p in rules()] == [
        ("DispatchFunction", ["CapacityShortage"]),
        ("DispatchFunction", ["PodRegistered"]),
    ]
    assert {(m.function, m.queue, m.reports_failures) for m in queue_mappings()} == {
        ("ReconcileFunction", "ReconcileQueue", True),
        ("AutoscaleFunction", "AutoscaleQueue", True),
        ("ExpireFunction", "ExpireQueue", True),
    }


def test_a_route_added_to_the_template_shows_up_without_touching_the_stack(monkeypatch: pytest.MonkeyPatch):
    changed: dict[str, Any] = copy.deepcopy(template())
    events = changed["Resources"]["PoolsFunction"]["Properties"]["Events"]
    events["Extra"] = {"Type": "Api", "Properties": {"Path": "/pools/{pool}/drain", "Method": "post"}}
    monkeypatch.setattr(template_module, "template", lambda: changed)
    monkeypatch.setattr("local.routes.template", lambda: changed)
    found = match("POST", "/pools/p/drain")
    assert found is not None
    assert (found[0].function, found[1]) == ("PoolsFunction", {"pool": "p"})


@pytest.mark.parametrize(
    ("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200)]
)
def test_rate_expressions(expression: str, seconds: int):
    assert _rate_seconds(expression) == seconds
