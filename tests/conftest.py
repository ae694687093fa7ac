"""Shared fixtures: the environment every Lambda would see, moto's AWS, the table from the template.

The environment is set before any podslots module is imported, as Lambda sets it before the
handler module loads.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator

import pytest

# SWITCH_INTERVAL=1e-5 makes threads switch a thousand times more often than Python's default
# (5 ms), so the race tests interleave their threads at many more points.
if os.environ.get("SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["SWITCH_INTERVAL"]))

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "podslots-test",
        "EVENT_BUS_NAME": "podslots-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "PodSlots",
        "POWERTOOLS_METRICS_DISABLED": "false",  # tests read metrics; the local stack only sets a default
        "POWERTOOLS_SERVICE_NAME": "podslots-tests",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)

import boto3
import botocore.session
from moto import mock_aws

# Every botocore session reads and parses the service models (JSON) again: PynamoDB makes one per
# connection and thread, and each test binds the table anew, so the suite spent about a quarter of
# its CPU time re-reading the same files. One loader per data path for the whole process: the
# sessions, clients and requests are still made anew, from the same models (a Lambda instance
# makes its session once per cold start anyway).
if not hasattr(botocore.session.create_loader, "cache_info"):
    botocore.session.create_loader = functools.cache(botocore.session.create_loader)

from local.bus_tap import BusTap
from local.stack import Context
from local.template import table_definition
from podslots.clock import ManualClock
from podslots.store import SlotStore, bind_table
from tests.support import least_privilege

# Before any botocore session is made (the functions' modules make theirs when collected): every
# session made after this records the AWS calls of the functions' handlers (docs/security.md).
least_privilege.install()

TABLE = os.environ["TABLE_NAME"]
BUS = os.environ["EVENT_BUS_NAME"]


LambdaContext = Context  # the local stack's stand-in for the Lambda context object


def pytest_configure(config: pytest.Config) -> None:
    least_privilege.register(config)
    # The API fuzz's items, one per operation, share one node id (schemathesis on pytest 9), and
    # pytest-xdist's schedulers by scope key tests by node id: they would run one of the nine.
    if getattr(config.option, "dist", "no") in {"loadfile", "loadscope", "loadgroup"}:
        raise pytest.UsageError(f"--dist {config.option.dist} would drop tests here: use worksteal or load")


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_definition(TABLE))
        bind_table(TABLE)
        yield


@pytest.fixture
def bus(aws: None) -> BusTap:
    return BusTap(BUS)


@pytest.fixture
def store(aws: None) -> SlotStore:
    return SlotStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()
