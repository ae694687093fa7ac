"""Bad input: a clear 4xx JSON error naming the problem, never a 5xx, and nothing written.

Every test here writes nothing, and checks that it wrote nothing against the whole table, so they
share one world (moto, the table, the bus, a pool with a held slot) made once for the module: a
test that wrote would fail itself. No test here may use the function-scoped `aws` fixture: a
second moto mock starting would reset the shared one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.apigw import proxy_event
from local.template import table_definition
from podslots.clock import ManualClock
from podslots.observability import metrics
from podslots.store import SlotStore, bind_table
from tests.conftest import BUS, TABLE, BusTap
from tests.integration.conftest import Api
from tests.support.pods import given_pool, given_ready_pods

ALLOC = "/pools/{pool}/allocations"
STATUS = "/tasks/{task_id}/status"
BEAT = "/pools/{pool}/pods/{pod}/heartbeat"
POOL = "/pools/{pool}"


def _items() -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(TABLE)
    return sorted(table.scan(ConsistentRead=True)["Items"], key=lambda i: (i["pk"], i["sk"]))


@pytest.fixture(scope="module")
def world() -> Iterator[Api]:
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        bind_table(TABLE)
        BusTap(BUS)
        store, api = SlotStore(), Api(ManualClock())
        given_pool(store, "terraform")
        given_ready_pods(store, "terraform", count=3)  # room for the tests that allocate
        assert api.allocate("terraform", "held-1", "plan_and_apply").status == 201
        yield api
        metrics.clear_metrics()


BAD_REQUESTS = [
    # (name, method, resource, path params, raw body, expected status, words the message must hold)
    ("malformed json", "POST", ALLOC, {"pool": "terraform"}, '{"task_id": "a",', 400, "not valid JSON"),
    ("body is a list", "POST", ALLOC, {"pool": "terraform"}, "[1, 2]", 422, "body"),
    ("body is empty", "POST", ALLOC, {"pool": "terraform"}, "", 422, ""),
    (
        "task_type wrong",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        '{"task_id":"a","task_type":"destroy"}',
        422,
        "task_type",
    ),
    (
        "task_id a number",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        '{"task_id":5,"task_type":"plan"}',
        422,
        "task_id",
    ),
    (
        "task_id missing",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        '{"task_type":"plan"}',
        422,
        "task_id: is required",
    ),
    (
        "unknown field",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        '{"task_id":"a","task_type":"plan","prio":1}',
        422,
        "prio: is not a known field",
    ),
    (
        "bad task id chars",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        '{"task_id":"a b/c","task_type":"plan"}',
        422,
        "task_id",
    ),
    (
        "task id too long",
        "POST",
        ALLOC,
        {"pool": "terraform"},
        json.dumps({"task_id": "a" * 129, "task_type": "plan"}),
        422,
        "task_id",
    ),
    ("bad pool name", "POST", ALLOC, {"pool": "Bad_Pool"}, '{"task_id":"a","task_type":"plan"}', 400, "pool"),
    (
        "pool name too long",
        "POST",
        ALLOC,
        {"pool": "p" * 41},
        '{"task_id":"a","task_type":"plan"}',
        400,
        "pool",
    ),
    (
        "unknown pool",
        "POST",
        ALLOC,
        {"pool": "nowhere"},
        '{"task_id":"a","task_type":"plan"}',
        404,
        "nowhere",
    ),
    ("status unknown", "PUT", STATUS, {"task_id": "held-1"}, '{"status":"done"}', 422, "status"),
    ("status lost is ours", "PUT", STATUS, {"task_id": "held-1"}, '{"status":"lost"}', 422, "status"),
    ("status pending is ours", "PUT", STATUS, {"task_id": "held-1"}, '{"status":"pending"}', 422, "status"),
    ("status of unknown task", "PUT", STATUS, {"task_id": "ghost"}, '{"status":"success"}', 404, "ghost"),
    ("bad task id in path", "PUT", STATUS, {"task_id": "a%20b"}, '{"status":"success"}', 400, "task_id"),
    (
        "held_tasks not a list",
        "POST",
        BEAT,
        {"pool": "terraform", "pod": "terraform-0000"},
        '{"held_tasks":"x"}',
        422,
        "held_tasks",
    ),
    (
        "pod_ip not an ip",
        "POST",
        BEAT,
        {"pool": "terraform", "pod": "terraform-0000"},
        '{"pod_ip":"localhost"}',
        422,
        "pod_ip",
    ),
    (
        "heartbeat of unknown pod",
        "POST",
        BEAT,
        {"pool": "terraform", "pod": "terraform-9999"},
        "{}",
        410,
        "draining or unknown",
    ),
    (
        "min above max",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"min_pods": 5, "max_pods": 2, "pod_template": {"image": "x"}}),
        422,
        "min_pods",
    ),
    (
        "thresholds crossed",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"scale_up_utilization": 0.3, "scale_down_utilization": 0.5, "pod_template": {"image": "x"}}),
        422,
        "scale_down_utilization",
    ),
    (
        "threshold above 1",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"scale_up_utilization": 1.5, "pod_template": {"image": "x"}}),
        422,
        "scale_up_utilization",
    ),
    (
        "slots over 32",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"slots_per_pod": 33, "pod_template": {"image": "x"}}),
        422,
        "slots_per_pod",
    ),
    (
        "image missing",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"pod_template": {}}),
        422,
        "pod_template.image",
    ),
    (
        "template missing",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"min_pods": 1}),
        422,
        "pod_template",
    ),
    (
        "reserved env",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"pod_template": {"image": "x", "env": {"PODSLOTS_POOL": "y"}}}),
        422,
        "PODSLOTS_POOL",
    ),
    (
        "bad namespace",
        "PUT",
        POOL,
        {"pool": "terraform"},
        json.dumps({"namespace": "Agents!", "pod_template": {"image": "x"}}),
        422,
        "namespace",
    ),
]


@pytest.mark.parametrize(
    ("method", "resource", "params", "raw", "status", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_input_is_a_named_4xx_and_writes_nothing(
    world: Api, method: str, resource: str, params: dict[str, str], raw: str, status: int, words: str
):
    before = _items()
    answer = world.invoke(proxy_event(method, resource, params, raw_body=raw))
    assert answer.status == status, answer.body
    assert isinstance(answer.body["error"], str)
    assert words in answer.body["message"]
    assert _items() == before


def test_a_body_over_64_kib_is_413_and_never_parsed(world: Api):
    before = _items()
    raw = json.dumps({"task_id": "a", "task_type": "plan", "pad": "x" * 70_000})
    answer = world.invoke(proxy_event("POST", ALLOC, {"pool": "terraform"}, raw_body=raw))
    assert answer.status == 413
    assert answer.body["error"] == "body_too_large"
    assert _items() == before


def test_a_body_that_is_not_json_content_is_415(world: Api):
    before = _items()
    event = proxy_event("POST", ALLOC, {"pool": "terraform"}, raw_body="task_id=a", content_type="text/plain")
    answer = world.invoke(event)
    assert answer.status == 415
    assert _items() == before


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain; charset=utf-8", "application/xml"],
)
def test_a_body_in_another_media_type_is_415_never_a_5xx(world: Api, content_type: str):
    # Found by the fuzzer: multipart/form-data without a boundary made Powertools raise (a 5xx)
    before = _items()
    event = proxy_event(
        "POST",
        ALLOC,
        {"pool": "terraform"},
        raw_body='{"task_id": "a", "task_type": "plan"}',
        content_type=content_type,
    )
    answer = world.invoke(event)
    assert (answer.status, answer.body["error"]) == (415, "unsupported_media_type")
    assert _items() == before


BODY_ROUTES = [
    ("POST", ALLOC, {"pool": "terraform"}),
    ("PUT", "/tasks/{task_id}/status", {"task_id": "t-1"}),
    ("POST", "/pools/{pool}/pods/{pod}/heartbeat", {"pool": "terraform", "pod": "terraform-0000"}),
    ("PUT", POOL, {"pool": "terraform"}),
]
HOSTILE_BODIES = [
    pytest.param("[" * 10_000 + "]" * 10_000, "nests deeper", id="10,000 nested arrays"),
    pytest.param('{"task_id": "a", "task_type": ' + "9" * 5000 + "}", "digits", id="a 5,000-digit integer"),
    pytest.param('{"held_tasks": ' + "[" * 40 + "]" * 40 + "}", "nests deeper", id="40 levels"),
]


@pytest.mark.parametrize(("method", "resource", "params"), BODY_ROUTES)
@pytest.mark.parametrize(("raw", "words"), HOSTILE_BODIES)
def test_a_small_hostile_body_is_a_400_that_names_the_problem_on_every_body_route(
    world: Api, method: str, resource: str, params: dict[str, str], raw: str, words: str
):
    # Given a body that would crash a parser (recursion, or Python's 4,300-digit limit)
    before = _items()
    # When it is sent to a route that reads a body
    answer = world.invoke(proxy_event(method, resource, params, raw_body=raw))
    # Then it is a 400 naming the problem, and nothing is written
    assert (answer.status, answer.body["error"]) == (400, "invalid_json")
    assert words in answer.body["message"]
    assert _items() == before


def test_a_task_id_of_many_digits_is_a_string_not_a_number(world: Api):
    raw = json.dumps({"task_id": "1" * 100, "task_type": "plan"})
    answer = world.invoke(proxy_event("POST", ALLOC, {"pool": "terraform"}, raw_body=raw))
    assert answer.status == 201, answer.body


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; Charset=UTF-8"])
def test_media_types_are_compared_case_insensitively(world: Api, content_type: str):
    raw = json.dumps({"task_id": f"ci-{len(content_type)}", "task_type": "plan"})
    event = proxy_event("POST", ALLOC, {"pool": "terraform"}, raw_body=raw, content_type=content_type)
    assert world.invoke(event).status == 201
