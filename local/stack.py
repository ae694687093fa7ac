"""The embedded stack: podslots' real handlers on an embedded AWS (moto) and an embedded cluster
(the Kubernetes API stand-in), driven by `template.yaml` itself and a virtual clock.

- the table is created from the template's SlotTable, the bus and the kubeconfig secret exist;
- API calls become API Gateway proxy events for the template's routes, sent to the real handlers;
- the template's schedules run on the virtual clock, and bus events reach the functions whose
  EventBridgeRule patterns match them (a CapacityShortage wakes the dispatcher), as EventBridge would;
- the template's SQS queues exist in moto (FIFO, redrive), and its SQS event source mappings are
  emulated: a poller delivers batches (BatchSize, the real record shape) to the function, deletes
  what succeeded and lets each `batchItemFailures` message come back after the queue's visibility
  timeout on the virtual clock (moto moves it to the dead-letter queue after maxReceiveCount).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from local.apigw import proxy_event
from local.routes import api_routes, route_for
from local.template import function_ids, function_property, resource, table_definition, template

ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "TABLE_NAME": "podslots-local",
    "EVENT_BUS_NAME": "podslots-local",
    "KUBECONFIG_SECRET": "podslots/dev/kubeconfig",
    "PODSLOTS_ENVIRONMENT": "dev",
    "PODSLOTS_AGENT_NAMESPACES": "agents",  # the AgentNamespaces parameter's default
    "API_BASE_URL": "http://127.0.0.1:3000/v1",
    # OperatorRoleArns: the local stack's callers are all the task queue's role (local/apigw.py).
    "PODSLOTS_OPERATOR_ROLE_ARNS": "arn:aws:iam::123456789012:role/podslots-operator",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "PodSlots",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
SQS_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/"  # moto's queue URLs
ENV.update(
    {
        f"{step.upper()}_QUEUE_URL": f"{SQS_URL}podslots-{ENV['PODSLOTS_ENVIRONMENT']}-{step}.fifo"
        for step in ("reconcile", "autoscale", "expire")
    }
)
NAMESPACE = "agents"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Schedule:
    function: str
    every_s: int
    event: dict[str, Any]
    next_at: float = 0.0


@dataclass
class Context:
    """What Powertools and the scheduled steps read from the Lambda context object."""

    function_name: str = "podslots-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:podslots-local"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_ms: int = 55_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _rate_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not match:
        raise ValueError(f"unsupported schedule {expression!r} (only rate() expressions)")
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def _function_events(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(function, event properties) of every event of type `kind` on the template's functions."""
    for name, res in template()["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (res["Properties"].get("Events") or {}).values():
            if event.get("Type") == kind:
                yield name, event["Properties"]


def schedules() -> list[Schedule]:
    """Every Schedule event of the template's functions."""
    return [
        Schedule(name, _rate_seconds(props["Schedule"]), json.loads(props.get("Input", "{}")))
        for name, props in _function_events("Schedule")
    ]


def rules() -> list[tuple[str, dict[str, Any]]]:
    """(function, pattern) of every EventBridgeRule event of the template's functions."""
    return [(name, props["Pattern"]) for name, props in _function_events("EventBridgeRule")]


@dataclass
class QueueMapping:
    """An SQS event source mapping of the template: which function consumes which queue, how."""

    function: str
    queue: str  # the queue's logical id
    batch_size: int
    reports_failures: bool


def queue_mappings() -> list[QueueMapping]:
    """Every SQS event of the template's functions."""
    found = []
    for name, props in _function_events("SQS"):
        queue = str(props["Queue"]["Fn::GetAtt"]).split(".")[0]
        reports = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
        found.append(QueueMapping(name, queue, int(props.get("BatchSize", 10)), reports))
    return found


def queue_name(logical_id: str) -> str:
    """The queue's name as the template gives it (`${Environment}` the local stack's)."""
    name = resource(logical_id)["Properties"]["QueueName"]
    text = name["Fn::Sub"] if isinstance(name, dict) else name
    return str(text).replace("${Environment}", ENV["PODSLOTS_ENVIRONMENT"])


def queue_attributes(logical_id: str, arns: dict[str, str]) -> dict[str, str]:
    """CreateQueue attributes from the template's queue (its dead-letter queue's ARN from `arns`)."""
    props = resource(logical_id)["Properties"]
    attributes = {
        key: str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
        for key in (
            "FifoQueue",
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DeduplicationScope",
            "FifoThroughputLimit",
        )
        if key in props
    }
    if "RedrivePolicy" in props:
        redrive = props["RedrivePolicy"]
        target = str(redrive["deadLetterTargetArn"]["Fn::GetAtt"]).split(".")[0]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": arns[target], "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return attributes


def queue_ids() -> list[str]:
    """The template's queues, dead-letter targets first (a redrive policy names an existing queue)."""
    ids = [n for n, r in template()["Resources"].items() if r.get("Type") == "AWS::SQS::Queue"]
    return sorted(ids, key=lambda n: "RedrivePolicy" in resource(n)["Properties"])


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of an SQS event as Lambda's event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": ENV["AWS_REGION"],
    }


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching for the flat patterns the template uses (field -> allowed values)."""
    return all(event.get(field) in allowed for field, allowed in pattern.items())


def function_module(logical_id: str) -> ModuleType:
    """The module of the function's Handler (`app.lambda_handler`) under its CodeUri."""
    code_uri = function_property(logical_id, "CodeUri")
    module = str(function_property(logical_id, "Handler")).rpartition(".")[0]
    return importlib.import_module(code_uri.strip("/").replace("/", ".") + "." + module)


def function_handler(logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
    handler: Callable[[dict[str, Any], Any], Any] = getattr(
        function_module(logical_id), str(function_property(logical_id, "Handler")).rpartition(".")[2]
    )
    return handler


def declared_environment(logical_id: str) -> dict[str, Any]:
    """The variables the template gives the function: the Globals', then its own (values as written)."""
    declared: dict[str, Any] = {}
    for properties in (template().get("Globals", {}).get("Function", {}), resource(logical_id)["Properties"]):
        declared.update((properties.get("Environment") or {}).get("Variables") or {})
    return declared


def function_environment(logical_id: str) -> dict[str, str]:
    """The function's environment in the local stack: what the template gives it, as Lambda would.

    A value the template computes at deploy time (!Ref, !Sub, !If: the table, the bus, the secret,
    the API's URL, the log level) is the local stack's (ENV); a computed one ENV lacks is an error,
    not a variable gone missing. ENV's entries no function declares (credentials, region, tracing
    and metrics off) come with it; those of other functions do not.
    """
    declared_by_any = {name for f in function_ids() for name in declared_environment(f)}
    env = {name: value for name, value in ENV.items() if name not in declared_by_any}
    for name, value in declared_environment(logical_id).items():
        if not isinstance(value, dict):
            env[name] = value if isinstance(value, str) else json.dumps(value)
        elif name in ENV:
            env[name] = ENV[name]
        else:
            raise LookupError(
                f"{logical_id}: {name} is computed at deploy time; local/stack.py ENV has no value for it"
            )
    return env


class Stack:
    """Start with `with Stack(clock) as stack:`; everything lives in this process."""

    def __init__(self, clock: Any, kubeconfig_path: str | None = None) -> None:
        for key, value in ENV.items():
            os.environ.setdefault(key, value)
        self.clock = clock
        self.kubeconfig_path = kubeconfig_path
        self.schedules = schedules()
        self.rules = rules()
        self.mappings = queue_mappings()
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        self._hidden: list[tuple[str, str, float]] = []  # (queue url, receipt, visible again at)
        self._polling = False
        self.invocations: list[tuple[float, str]] = []
        self.on_event: list[Callable[[dict[str, Any]], None]] = []

    def __enter__(self) -> Stack:
        import boto3
        from moto import mock_aws

        from local.bus_tap import BusTap
        from local.kube_api import KubeApiStandIn
        from podslots.store import bind_table

        self._mock = mock_aws()
        self._mock.start()
        boto3.client("dynamodb").create_table(**table_definition(os.environ["TABLE_NAME"]))
        bind_table(os.environ["TABLE_NAME"])
        self.tap = BusTap(os.environ["EVENT_BUS_NAME"])
        self._create_queues()
        self.kube = KubeApiStandIn(clock=lambda: datetime.fromtimestamp(self.clock.now(), UTC)).start()
        if self.kubeconfig_path:
            with open(self.kubeconfig_path) as f:
                kubeconfig = f.read()
        else:
            kubeconfig = json.dumps(self.kube.kubeconfig(NAMESPACE))
        boto3.client("secretsmanager").create_secret(Name=os.environ["KUBECONFIG_SECRET"], SecretString=kubeconfig)
        self._wire_clocks()
        for schedule in self.schedules:
            schedule.next_at = self.clock.now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kube.stop()
        self._mock.stop()

    def _create_queues(self) -> None:
        import boto3

        sqs = boto3.client("sqs")
        for logical_id in queue_ids():
            url = sqs.create_queue(
                QueueName=queue_name(logical_id), Attributes=queue_attributes(logical_id, self.queue_arns)
            )["QueueUrl"]
            self.queue_urls[logical_id] = url
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.queue_arns[logical_id] = arn
        self.sqs = sqs

    def _wire_clocks(self) -> None:
        """Every handler's step gets the virtual clock and a bus client made inside the mock."""
        from aws_lambda_powertools.utilities import parameters

        from podslots.bus import EventBridgePublisher
        from podslots.kubeconfig import ClusterConnections
        from podslots.step_queues import SqsStepQueues

        provider = parameters.SecretsProvider()
        functions = [s.function for s in self.schedules] + [m.function for m in self.mappings]
        modules = [r.module() for r in api_routes()] + [function_module(f) for f in dict.fromkeys(functions)]
        for module in modules:
            if hasattr(module, "dispatcher"):
                module.dispatcher.clock = self.clock
                module.dispatcher.queues = SqsStepQueues()
            for attr in ("allocator", "service", "reconciler", "autoscaler", "expirer"):
                step = getattr(module, attr, None)
                if step is None:
                    continue
                step.clock = self.clock
                if hasattr(step, "bus"):
                    step.bus = EventBridgePublisher()
            if hasattr(module, "connections"):
                setattr(module, "connections", ClusterConnections(provider=provider))  # noqa: B010

    # ---- the API -------------------------------------------------------------------------------

    def call(self, method: str, resource: str, body: Any = None, **path: str) -> Answer:
        event = proxy_event(method, resource, path, body)
        raw = route_for(event).module().lambda_handler(event, Context())
        headers = dict(raw.get("headers") or {})
        for key, values in (raw.get("multiValueHeaders") or {}).items():
            headers.setdefault(key, values[-1])
        answer = Answer(raw["statusCode"], json.loads(raw["body"]) if raw.get("body") else None, headers)
        self.deliver_events()
        return answer

    # ---- schedules and the bus ---------------------------------------------------------------

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        self.invocations.append((self.clock.now(), logical_id))
        result = function_module(logical_id).lambda_handler(event, Context())
        self.deliver_events()
        self.deliver_queues()
        return result

    def deliver_queues(self) -> None:
        """Lambda's SQS pollers, until the queues have nothing visible: each mapping receives up to
        its BatchSize, invokes its function with the batch, and deletes what succeeded. A message in
        `batchItemFailures` (or the whole batch, if the function raised or does not report failures)
        stays, and is visible again once the virtual clock has passed the queue's visibility timeout."""
        if self._polling:
            return  # the outer poll picks up what this invocation sent
        self._polling = True
        try:
            while self._poll_once():
                pass
        finally:
            self._polling = False

    def _poll_once(self) -> bool:
        self._release_due()
        delivered = False
        for mapping in self.mappings:
            url = self.queue_urls[mapping.queue]
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=mapping.batch_size, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                continue
            delivered = True
            failed = self._deliver(mapping, [sqs_record(m, self.queue_arns[mapping.queue]) for m in messages])
            visibility = int(resource(mapping.queue)["Properties"].get("VisibilityTimeout", 30))
            for message in messages:
                if message["MessageId"] in failed:
                    self._hidden.append((url, message["ReceiptHandle"], self.clock.now() + visibility))
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return delivered

    def _deliver(self, mapping: QueueMapping, records: list[dict[str, Any]]) -> set[str]:
        """The ids of the records that failed."""
        every = {r["messageId"] for r in records}
        try:
            result = self.invoke(mapping.function, {"Records": records})
        except Exception:  # Lambda: a function error fails the whole batch
            return every
        if not mapping.reports_failures:
            return set()
        return {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}

    def _release_due(self) -> None:
        now = self.clock.now()
        due = [h for h in self._hidden if h[2] <= now]
        self._hidden = [h for h in self._hidden if h[2] > now]
        for url, receipt, _ in due:
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)

    def deliver_events(self) -> None:
        """Each new bus event goes to the functions whose rules match it, and to the watchers."""
        seen = len(self.tap.seen)
        self.tap.events()
        for event in self.tap.seen[seen:]:
            for watcher in self.on_event:
                watcher(event)
            for function, pattern in self.rules:
                if matches(pattern, event):
                    self.invoke(function, event)

    def run_due_schedules(self) -> None:
        now = self.clock.now()
        for schedule in self.schedules:
            while schedule.next_at <= now:
                self.invoke(schedule.function, schedule.event)
                schedule.next_at += schedule.every_s
        self.deliver_queues()  # failed runs whose visibility timeout has passed
