"""Errors are data: no token, file or server's words reach a log line, a run's answer or the history.

Reconcile and autoscale run through their real handlers, reading the kubeconfig from (moto's) Secrets
Manager and talking real HTTP to the Kubernetes API stand-in. Everything a person or a program could
read afterwards is gathered: every log line the functions write (Powertools' JSON, at DEBUG), stdout
(metrics), the handlers' answers, the pool's history as `GET /pools/{pool}/events` serves it, and the
events on the bus. The secret must be in none of it.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from local.apigw import load_event
from local.kube_api import KubeApiStandIn
from podslots.bus import EventBridgePublisher
from podslots.clock import ManualClock
from podslots.kubeconfig import ClusterConnections
from podslots.names import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL
from podslots.observability import logger
from podslots.store import SlotStore
from tests.conftest import BusTap, LambdaContext
from tests.integration.conftest import Api
from tests.support.pods import given_pool

NS = "agents"
POOL = "terraform"
SECRET = "podslots/dev/kubeconfig"  # under the environment's prefix, the only secrets the roles may read
TOKEN = "s3cret-TOKEN-value-42"
STEPS = ("reconcile", "autoscale")


@dataclass
class Seen:
    """Everything readable after the runs, as one text to search."""

    text: str
    history: list[dict[str, Any]]
    log: list[dict[str, Any]]


class Stack:
    """The cluster functions, wired to moto, the stand-in and the test's clock; every word they say kept."""

    def __init__(self, kube: KubeApiStandIn, api: Api, bus: BusTap, clock: ManualClock, log: io.StringIO) -> None:
        self.kube, self.api, self.bus, self.clock, self.log = kube, api, bus, clock, log
        self.answers: list[Any] = []

    def handler(self, step: str) -> ModuleType:
        return importlib.import_module(f"functions.{step}.app")

    def run(self, step: str) -> dict[str, Any]:
        event = load_event(f"{step}_schedule.json")
        answer: dict[str, Any] = self.handler(step).lambda_handler(event, LambdaContext())
        self.answers.append(answer)
        return next(p for p in answer["pools"] if p["pool"] == POOL)

    def seen(self, capsys: pytest.CaptureFixture[str]) -> Seen:
        events = self.api.call("GET", "/pools/{pool}/events", pool=POOL)
        assert events.status == 200
        history = list(events.body["events"])
        log = [json.loads(line) for line in self.log.getvalue().splitlines() if line.startswith("{")]
        out = capsys.readouterr()
        text = "\n".join(
            [
                self.log.getvalue(),
                out.out,
                out.err,
                json.dumps(self.answers),
                json.dumps(events.body),
                json.dumps(self.bus.events()),
            ]
        )
        return Seen(text, history, log)


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """The functions' log lines, as Lambda would receive them, at every level."""
    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream, level = handler.stream, logger.log_level
    handler.setStream(buffer)
    logger.setLevel("DEBUG")
    try:
        yield buffer
    finally:
        handler.setStream(stream)
        logger.setLevel(level)


@pytest.fixture
def kube(clock: ManualClock) -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(token=TOKEN, clock=lambda: datetime.fromtimestamp(clock.now(), UTC)) as k:
        yield k


@pytest.fixture
def stack(
    store: SlotStore,
    api: Api,
    bus: BusTap,
    kube: KubeApiStandIn,
    clock: ManualClock,
    log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    """An active pool that wants one pod (autoscale creates it), and both cluster functions."""
    given_pool(store, POOL, now=int(clock.now()), min_pods=1)
    monkeypatch.setenv("KUBECONFIG_SECRET", SECRET)
    monkeypatch.setenv("KUBE_READ_TIMEOUT_S", "2")
    parameters.clear_caches()
    provider = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    for step, attr in (("reconcile", "reconciler"), ("autoscale", "autoscaler")):
        handler = importlib.import_module(f"functions.{step}.app")
        monkeypatch.setattr(handler, "connections", ClusterConnections(provider=provider))
        monkeypatch.setattr(getattr(handler, attr), "clock", clock)
        monkeypatch.setattr(getattr(handler, attr), "bus", EventBridgePublisher())
    return Stack(kube, api, bus, clock, log)


def store_kubeconfig(config: dict[str, Any]) -> None:
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(config))


def with_user(kube: KubeApiStandIn, user: dict[str, Any]) -> dict[str, Any]:
    config = kube.kubeconfig(NS)
    config["users"][0]["user"] = user
    return config


def run_both(stack: Stack) -> dict[str, dict[str, Any]]:
    reports = {}
    for step in STEPS:
        reports[step] = stack.run(step)
        stack.clock.advance(60)
    return reports


# ---- a token with a line break inside ------------------------------------------------------------


def test_a_token_with_a_line_break_inside_is_refused_by_name_and_appears_in_no_log_or_event(
    stack: Stack, capsys: pytest.CaptureFixture[str]
):
    # Given a kubeconfig whose token has a line break inside it (two values pasted together)
    store_kubeconfig(with_user(stack.kube, {"token": f"{TOKEN}\nsecond-half-of-it"}))
    # When reconcile and autoscale run
    reports = run_both(stack)
    # Then each reports the kubeconfig refused, naming the field
    for step in STEPS:
        assert any("users[0].user.token is refused" in e for e in reports[step]["errors"]), reports[step]
    # And the token is in no log line, no answer, no history entry and no event
    seen = stack.seen(capsys)
    assert TOKEN not in seen.text
    assert "second-half-of-it" not in seen.text
    assert "users[0].user.token" in seen.text  # the refusal itself was logged
    # And the cluster never received it
    assert stack.kube.count() == 0


# ---- a cluster that echoes the Authorization header in its error answers -------------------------


def test_a_cluster_that_echoes_the_authorization_header_never_gets_the_token_into_a_log_or_event(
    stack: Stack, capsys: pytest.CaptureFixture[str]
):
    # Given a valid kubeconfig, and a cluster whose error answers quote the request's Authorization
    store_kubeconfig(stack.kube.kubeconfig(NS))
    stack.kube.echo_authorization_next(401, times=10)
    # When reconcile (a LIST) and autoscale (a create, for the pool's one pod) run
    reports = run_both(stack)
    # Then the cluster did echo our token, and both steps reported the failure with its status
    assert stack.kube.authorizations()[:2] == [f"Bearer {TOKEN}"] * 2
    assert any("401" in e for e in reports["reconcile"]["errors"])
    assert any("401" in e for e in reports["autoscale"]["errors"])
    # And the token is in no log line, no answer, no history entry and no event
    seen = stack.seen(capsys)
    assert TOKEN not in seen.text
    # And what the server said is kept, redacted
    (failed,) = [e for e in seen.history if e["kind"] == "PodCreateFailed"]
    assert "request refused; it carried Authorization: [redacted]" in failed["error"]


# ---- tokenFile: /proc/self/environ ---------------------------------------------------------------


def environment_entries() -> list[str]:
    """This process's environment as the kernel shows it: what `tokenFile: /proc/self/environ` sends."""
    raw = Path("/proc/self/environ").read_bytes().decode("utf-8", "replace")
    return [entry for entry in raw.split("\0") if len(entry) >= 12]


def test_a_token_file_naming_the_process_environment_is_refused_and_nothing_is_sent_or_logged(
    stack: Stack, capsys: pytest.CaptureFixture[str]
):
    # Given a kubeconfig whose user reads its token from the process's environment (in Lambda: the
    # function role's keys)
    store_kubeconfig(with_user(stack.kube, {"tokenFile": "/proc/self/environ"}))
    environment = environment_entries()
    assert environment  # the file exists and has something to leak
    # When reconcile and autoscale run
    reports = run_both(stack)
    # Then both refuse the kubeconfig, naming the field
    for step in STEPS:
        assert any("users[0].user.tokenFile is refused" in e for e in reports[step]["errors"]), reports[step]
    # And the cluster received no request at all, so none with the file's content
    assert stack.kube.count() == 0
    assert stack.kube.authorizations() == []
    # And no entry of the environment is in a log line, an answer, the history or an event
    seen = stack.seen(capsys)
    assert [entry for entry in environment if entry in seen.text] == []


# ---- the step isolation: an unexpected exception's text is never logged or stored ----------------


def test_an_unexpected_exception_quoting_the_servers_answer_is_logged_and_recorded_by_type_only(
    stack: Stack, capsys: pytest.CaptureFixture[str]
):
    # Given a cluster whose LIST answer carries text where a timestamp belongs (the parse fails, and
    # its error quotes the text)
    store_kubeconfig(stack.kube.kubeconfig(NS))
    labels = {POOL_LABEL: POOL, MANAGED_BY_LABEL: MANAGED_BY}
    stack.kube.add_pod(NS, {"metadata": {"name": "odd", "labels": labels, "creationTimestamp": f"Bearer {TOKEN}"}})
    # When reconcile runs
    report = stack.run("reconcile")
    # Then the text the server sent is in no log line, answer, history entry or event
    seen = stack.seen(capsys)
    assert TOKEN not in seen.text
    # And the pool's step failed, and the run says so by the exception's type
    (error,) = report["errors"]
    assert error.startswith("ValueError: ")
    # And the history records PoolStepFailed with the type and a fixed text
    (failed,) = [e for e in seen.history if e["kind"] == "PoolStepFailed"]
    assert (failed["step"], failed["error"]) == ("reconcile", error)
    # And the log says where it was raised, with no traceback text
    (line,) = [entry for entry in seen.log if entry.get("message") == "pool step failed; the run goes on"]
    assert line["error_type"] == "ValueError"
    assert any(place.startswith("podslots.cluster:") for place in line["where"])
    assert "exception" not in line


def test_the_refusals_and_failures_keep_the_pool_running_for_the_next_run(
    stack: Stack, capsys: pytest.CaptureFixture[str]
):
    # Given a cluster that echoed once, When the next runs meet a normal cluster
    store_kubeconfig(stack.kube.kubeconfig(NS))
    stack.kube.echo_authorization_next(401, verb="create")
    first = stack.run("autoscale")
    stack.clock.advance(60)
    second = stack.run("autoscale")
    # Then the pod is created on the next run, as after any failed create
    assert first["errors"]
    assert len(second["created"]) == 1
    assert TOKEN not in stack.seen(capsys).text
