"""The API fuzzed from its own OpenAPI document (schemathesis) against the local stack over HTTP:
no 5xx (bar the contract's 503 no_capacity), and no answer that breaks the document.

The document is the one `make openapi` writes (Powertools derives it from the handlers), the
server is `make local`'s, on an ephemeral port. 9 operations x 40 examples: a few hundred requests.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tools.openapi import document

pytestmark = pytest.mark.slow
# CI replays one fixed set of examples; FUZZ_RANDOM=1 FUZZ_EXAMPLES=500 explores further.
FIXED = os.environ.get("FUZZ_RANDOM") != "1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
schema = schemathesis.openapi.from_dict(json.loads(document()))
SESSION = requests.Session()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    from local.serve import ScaledClock, serve
    from local.stack import Stack

    with Stack(ScaledClock(1.0)) as stack:
        stack.call("PUT", "/pools/{pool}", {"pod_template": {"image": "x"}}, pool="terraform")
        server = serve(stack, "127.0.0.1", 0, "v1", agents=False)
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/v1"
        server.shutdown()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=FIXED, suppress_health_check=list(HealthCheck))
def test_no_answer_is_a_5xx_or_breaks_the_document(case: Any, base_url: str) -> None:
    response = case.call(base_url=base_url, session=SESSION)
    if response.status_code == 503:
        # The contract's one 5xx: no capacity, with Retry-After; anything else is a server error.
        assert response.json()["error"] == "no_capacity"
        (retry_after,) = response.headers["retry-after"]  # schemathesis: lower-case names, lists of values
        assert int(retry_after) > 0
    else:
        assert response.status_code < 500, response.text
    case.validate_response(
        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
    )


HOSTILE = [
    pytest.param("application/json", "[" * 10_000 + "]" * 10_000, {400}, id="10,000 nested arrays"),
    pytest.param("application/json", '{"task_id": ' + "7" * 5000 + "}", {400}, id="a 5,000-digit integer"),
    # Accepted as JSON: the pool has no pod, so the documented answer is the 503 of no capacity.
    pytest.param("APPLICATION/JSON", '{"task_id": "upper", "task_type": "plan"}', {503}, id="media type in capitals"),
]


@pytest.mark.parametrize(("content_type", "body", "statuses"), HOSTILE)
def test_the_cases_the_fuzzer_does_not_generate_answer_as_documented(
    base_url: str, content_type: str, body: str, statuses: set[int]
) -> None:
    response = SESSION.post(
        f"{base_url}/pools/terraform/allocations", data=body.encode(), headers={"Content-Type": content_type}
    )
    assert response.status_code in statuses, response.text
    assert response.json()["error"]


def test_a_content_length_that_is_not_a_number_is_a_400(base_url: str) -> None:
    host_port = base_url.split("//", 1)[1].split("/", 1)[0]
    connection = http.client.HTTPConnection(host_port, timeout=10)
    connection.putrequest("POST", "/v1/pools/terraform/allocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", "ten")
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 400
    assert json.loads(answer.read())["error"]


def test_an_unmatched_route_answers_as_api_gateway_does_with_an_error_code(base_url: str) -> None:
    response = SESSION.get(f"{base_url}/no/such/route")
    assert response.status_code == 403
    assert response.json() == {"error": "MISSING_AUTHENTICATION_TOKEN", "message": "Missing Authentication Token"}
