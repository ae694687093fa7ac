"""The fan-out's wiring in template.yaml: what the local stack emulates (tests/integration/test_fanout.py)
rests on these properties, which only a deploy would otherwise show."""

from __future__ import annotations

from typing import Any

from local.stack import queue_mappings
from local.template import resource, template

STEP_QUEUES = {
    "ReconcileFunction": "ReconcileQueue",
    "AutoscaleFunction": "AutoscaleQueue",
    "ExpireFunction": "ExpireQueue",
}


def sqs_event(function: str) -> dict[str, Any]:
    (event,) = [e for e in resource(function)["Properties"]["Events"].values() if e["Type"] == "SQS"]
    props: dict[str, Any] = event["Properties"]
    return props


def test_each_step_consumes_its_own_fifo_queue_with_partial_failures_and_bounded_concurrency():
    parameter = template()["Parameters"]["PoolRunConcurrency"]
    assert parameter["MinValue"] == 2  # the least MaximumConcurrency takes
    for function, queue in STEP_QUEUES.items():
        props = sqs_event(function)
        assert props["Queue"] == {"Fn::GetAtt": f"{queue}.Arn"}
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "PoolRunConcurrency"}}
        queue_props = resource(queue)["Properties"]
        assert queue_props["FifoQueue"] is True
        assert str(queue_props["QueueName"]["Fn::Sub"]).endswith(".fifo")
        # Lambda refuses a mapping whose queue hides a message for less than the function's timeout
        assert queue_props["VisibilityTimeout"] >= resource(function)["Properties"]["Timeout"]
        assert queue_props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": "PoolRunDeadLetterQueue.Arn"}


def test_a_cluster_facing_step_runs_one_pool_per_invocation():
    assert {m.function: m.batch_size for m in queue_mappings()} == {
        "ReconcileFunction": 1,
        "AutoscaleFunction": 1,
        "ExpireFunction": 10,
    }


def test_the_dead_letters_wake_someone_and_the_queues_take_tls_only():
    dead_letters = resource("PoolRunDeadLetterQueue")["Properties"]
    assert dead_letters["FifoQueue"] is True  # a FIFO queue's dead-letter queue must be FIFO
    alarm = resource("PoolRunDeadLetterAlarm")["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": "PoolRunDeadLetterQueue.QueueName"}}]
    policy = resource("PoolRunQueuesPolicy")["Properties"]
    assert policy["Queues"] == [{"Ref": q} for q in [*STEP_QUEUES.values(), "PoolRunDeadLetterQueue"]]
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_the_dispatcher_s_schedules_name_the_step_they_fan_out():
    events = resource("DispatchFunction")["Properties"]["Events"]
    inputs = {name: e["Properties"].get("Input") for name, e in events.items() if e["Type"] == "Schedule"}
    assert inputs == {
        "ReconcileEveryMinute": '{"step": "reconcile"}',
        "AutoscaleEveryMinute": '{"step": "autoscale"}',
        "ExpireEveryFiveMinutes": '{"step": "expire"}',
    }
