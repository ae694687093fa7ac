"""Fan-out per pool, through the template's own wiring in the local stack: the dispatcher's schedules
and rule, the step queues (moto's SQS FIFO, their redrive to the dead-letter queue) and the SQS event
source mappings (BatchSize, partial batch failures) as local/stack.py emulates them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from local.apigw import load_event
from local.stack import Context, Stack, function_module
from podslots.clock import ManualClock
from podslots.fanout import FanOutFailed

POOLS = ["alpha", "beta", "gamma"]


def settings() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(load_event("pool_put.json")["body"])
    return document


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack(ManualClock(1_800_000_000)) as running:
        yield running


def given_pools(stack: Stack, names: list[str]) -> None:
    for name in names:
        assert stack.call("PUT", "/pools/{pool}", settings(), pool=name).status == 201


def queued(stack: Stack, queue: str) -> int:
    url = stack.queue_urls[queue]
    attributes = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def history(stack: Stack, pool: str) -> list[str]:
    return [e["kind"] for e in stack.call("GET", "/pools/{pool}/events", pool=pool).body["events"]]


class ExpiryWatch:
    """Which pools expiry ran, invocation by invocation; a pool in `broken` fails unexpectedly."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.broken: set[str] = set()
        self.batches: list[list[str]] = []
        expirer = function_module("ExpireFunction").expirer
        real_pool, real_handler = expirer.expire_pool, function_module("ExpireFunction").lambda_handler

        def expire_pool(pool: str) -> Any:
            self.batches[-1].append(pool)
            if pool in self.broken:
                raise RuntimeError("a bug met in this pool only")
            return real_pool(pool)

        def handler(event: dict[str, Any], context: Any) -> Any:
            self.batches.append([])
            return real_handler(event, context)

        monkeypatch.setattr(expirer, "expire_pool", expire_pool)
        monkeypatch.setattr(function_module("ExpireFunction"), "lambda_handler", handler)


def test_a_schedule_runs_each_pool_once_in_its_own_message(stack: Stack):
    # Given three pools
    given_pools(stack, POOLS)
    # When the schedules run (the dispatcher fans each step out, the mappings deliver)
    stack.run_due_schedules()
    # Then reconcile and autoscale ran once per pool, one invocation each (BatchSize 1), expiry in one
    runs = [f for _, f in stack.invocations]
    assert runs.count("DispatchFunction") == 3
    assert runs.count("ReconcileFunction") == runs.count("AutoscaleFunction") == 3
    assert runs.count("ExpireFunction") == 1  # ten pools a batch
    # and every message was deleted
    assert [queued(stack, q) for q in ("ReconcileQueue", "AutoscaleQueue", "ExpireQueue")] == [0, 0, 0]


def test_one_failing_pools_message_is_retried_alone_and_dead_letters_after_five(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    # Given three pools, and a pool whose expiry fails
    given_pools(stack, POOLS)
    watch = ExpiryWatch(stack, monkeypatch)
    watch.broken.add("beta")
    # When the 5-minute schedule fans expiry out: one batch of the three pools
    stack.run_due_schedules()
    # Then the others ran and were deleted; beta's message alone waits for its visibility timeout
    assert watch.batches == [["alpha", "beta", "gamma"]]
    assert queued(stack, "ExpireQueue") == 1
    # When a minute passes (the queue's 60 s visibility timeout): beta alone is delivered again
    stack.clock.advance(60)
    stack.run_due_schedules()
    assert watch.batches[1] == ["beta"]
    # When it keeps failing: after its fifth receive it goes to the dead-letter queue
    for _ in range(4):
        stack.clock.advance(60)
        stack.deliver_queues()
    assert queued(stack, "PoolRunDeadLetterQueue") == 1
    assert json.loads(
        stack.sqs.receive_message(QueueUrl=stack.queue_urls["PoolRunDeadLetterQueue"])["Messages"][0]["Body"]
    ) == {"pool": "beta"}


def test_a_failed_pool_run_is_delivered_again_and_then_succeeds(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    given_pools(stack, POOLS)
    watch = ExpiryWatch(stack, monkeypatch)
    watch.broken.add("gamma")
    stack.run_due_schedules()
    # When the fault is gone by the retry
    watch.broken.clear()
    stack.clock.advance(60)
    stack.deliver_queues()
    # Then gamma ran again, alone, and nothing is left
    assert watch.batches == [["alpha", "beta", "gamma"], ["gamma"]]
    assert queued(stack, "ExpireQueue") == queued(stack, "PoolRunDeadLetterQueue") == 0


def test_a_shortage_in_the_minute_of_the_schedule_is_not_dropped_as_its_duplicate(stack: Stack):
    # Given a pool, and the minute's autoscale already dispatched
    given_pools(stack, ["alpha"])
    dispatch = function_module("DispatchFunction").lambda_handler
    stack.sqs.purge_queue(QueueUrl=stack.queue_urls["AutoscaleQueue"])
    assert dispatch({"step": "autoscale"}, Context()) == {"step": "autoscale", "trigger": "minute-30000000", "sent": 1}
    # When the same schedule is delivered again (EventBridge's retry) and a shortage comes, same minute
    dispatch({"step": "autoscale"}, Context())
    shortage = load_event("capacity_shortage.json") | {"detail": {"pool": "alpha", "task_id": "t-1", "waiting": 1}}
    dispatch(shortage, Context())
    # Then the queue holds two runs of the pool: the schedule's once, and the shortage's
    bodies = []
    while messages := stack.sqs.receive_message(
        QueueUrl=stack.queue_urls["AutoscaleQueue"], MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", []):
        for message in messages:
            bodies.append((message["Body"], message["Attributes"]["MessageDeduplicationId"]))
            stack.sqs.delete_message(
                QueueUrl=stack.queue_urls["AutoscaleQueue"], ReceiptHandle=message["ReceiptHandle"]
            )
    assert sorted(bodies) == [
        ('{"pool": "alpha"}', "autoscale:alpha:event-6a7e8feb-b491-4cf7-a9f1-bf3703467718"),
        ('{"pool": "alpha"}', "autoscale:alpha:minute-30000000"),
    ]


class Countdown(Context):
    """A Lambda context with time for `reach` pools: then under the 5 s margin."""

    def __init__(self, reach: int) -> None:
        super().__init__()
        self.asked = 0
        self.reach = reach

    def get_remaining_time_in_millis(self) -> int:
        self.asked += 1
        return 50_000 if self.asked <= self.reach else 1_000


def test_a_direct_run_of_every_pool_resumes_where_the_last_one_stopped(stack: Stack):
    # Given more pools than one run can reach (N = 7, K = 3)
    names = [f"pool-{i}" for i in range(7)]
    given_pools(stack, names)
    handler = function_module("ExpireFunction").lambda_handler
    # When expiry runs directly ({}) once a minute, ceil(N/K) times
    visited: set[str] = set()
    for _ in range(math.ceil(7 / 3)):
        stack.clock.advance(60)
        result = handler({}, Countdown(reach=3))
        assert len(result["pools"]) == 3
        visited |= {r["pool"] for r in result["pools"]}
    # Then every pool was visited
    assert visited == set(names)


def test_a_dispatch_whose_messages_are_refused_fails_so_eventbridge_delivers_it_again(stack: Stack):
    # Given pools, and the reconcile queue gone (SQS refuses the sends)
    given_pools(stack, POOLS)
    stack.sqs.delete_queue(QueueUrl=stack.queue_urls["ReconcileQueue"])
    # When the schedule's event reaches the dispatcher
    # Then it fails (the Errors alarm; EventBridge retries), naming no message as sent
    with pytest.raises(FanOutFailed, match="3 of 3 reconcile messages not sent"):
        function_module("DispatchFunction").lambda_handler({"step": "reconcile"}, Context())


def test_a_message_that_names_no_pool_fails_alone_and_is_never_quoted(stack: Stack, capsys: pytest.CaptureFixture[str]):
    # Given a batch of expire's queue: a good message, and one whose body is not {"pool": name}
    given_pools(stack, ["alpha"])
    event = load_event("expire_sqs.json")
    good = event["Records"][0] | {"body": '{"pool": "alpha"}', "messageId": "good"}
    bad = event["Records"][0] | {"body": '{"pool": "Bearer s3cr3t-t0ken"}', "messageId": "bad"}
    # When the function gets it
    answer = function_module("ExpireFunction").lambda_handler({"Records": [good, bad]}, Context())
    # Then the bad message alone fails (and would end in the dead-letter queue), the good one ran
    assert answer == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    # and nothing of its body was written anywhere
    written = capsys.readouterr()
    assert "s3cr3t" not in written.out + written.err


def test_a_failing_cluster_costs_its_own_pools_run_only(stack: Stack):
    # Given two pools, one of them on a cluster whose kubeconfig cannot be read
    given_pools(stack, ["alpha"])
    broken = settings() | {"kubeconfig_secret": "podslots/dev/no-such-kubeconfig"}
    assert stack.call("PUT", "/pools/{pool}", broken, pool="beta").status == 201
    # When the minute's reconcile is fanned out
    stack.invoke("DispatchFunction", {"step": "reconcile"})
    # Then each pool ran in an invocation of its own: beta's unreadable kubeconfig ended its own run
    # (reported; the next minute tries again), and alpha's run went as ever: its figures are recorded
    assert [f for _, f in stack.invocations].count("ReconcileFunction") == 2
    assert "PoolFigures" in history(stack, "alpha")
    assert "PoolFigures" not in history(stack, "beta")
    assert queued(stack, "ReconcileQueue") == 0
