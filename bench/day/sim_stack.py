"""The embedded stack with an in-process bus and in-process step queues: events go from the
steps to the template's rules, and the fan-out's messages from the dispatcher to the step
functions, without moto's EventBridge and SQS round trips.

`local.stack.Stack` reads the bus back through an SQS queue after every call, which is about a
third of a heartbeat's cost on moto; and it polls each step's SQS queue (ReceiveMessage, then
DeleteMessage) after every invocation: profiled over a simulated busy morning, that polling was
about 30 % of podslots' cost once DynamoDB's answers were cheap (`sim_wire`). Over a simulated
week that is hours of CPU for nothing the simulation measures. Delivery is the same: each event
goes to the watchers, then to the functions whose template rules match it, in the order
published; each step's messages go to its function in the template's batch size, in the order
sent, as SQS event records; a FIFO queue's deduplication (same id within 5 minutes: dropped) is
kept, a record the function reports failed is delivered again, ahead of its group's later
messages, once the queue's visibility timeout has passed on the virtual clock, and the
template's retention (300 s) and redrive (5 receives, then the dead-letter queue) hold. The SQS path itself is tested by `tests/integration/
test_fanout.py` on the local stack; the simulation only skips its cost.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from local.routes import api_routes
from local.stack import ENV, QueueMapping, Stack, function_module, matches
from local.template import resource
from podslots import podspec
from podslots.step_queues import PoolRun, Step

FIFO_DEDUP_S = 300.0  # SQS FIFO's deduplication interval


class InProcessBus:
    """EventBridge's envelope as a rule's target receives it: with the event's id and time (the
    dispatcher's deduplication reads them: without them a CapacityShortage's or PodRegistered's
    run would be taken for the minute's scheduled one and dropped)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.pending: list[dict[str, Any]] = []
        self.ids = itertools.count()

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        when = datetime.fromtimestamp(int(self.clock.now()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.pending.append(
            {
                "id": f"sim-{next(self.ids)}",
                "time": when,
                "source": "podslots",
                "detail-type": detail_type,
                "detail": json.loads(json.dumps(detail)),
            }
        )


@dataclass
class _Message:
    id: str
    pool: str
    sent_at: float
    visible_at: float = 0.0
    receives: int = 0


@dataclass
class InProcessQueues:
    """The dispatcher's StepQueues, kept in memory: one FIFO list per step."""

    clock: Any
    queues: dict[str, list[_Message]] = field(default_factory=dict)
    dedup: dict[str, float] = field(default_factory=dict)  # deduplication id -> when sent
    ids: Any = field(default_factory=itertools.count)
    retention_s: float = 300.0  # the template's MessageRetentionPeriod
    max_receives: int = 5  # its RedrivePolicy's maxReceiveCount: then the dead-letter queue
    dead_letters: list[_Message] = field(default_factory=list)
    expired: int = 0

    def send(self, step: Step, runs: Sequence[PoolRun]) -> list[str]:
        now = self.clock.now()
        self.dedup = {d: t for d, t in self.dedup.items() if now - t < FIFO_DEDUP_S}
        for run in runs:
            if run.dedup in self.dedup:
                continue
            self.dedup[run.dedup] = now
            self.queues.setdefault(step, []).append(_Message(f"m-{next(self.ids)}", run.pool, now))
        return []

    def receive(self, step: str, most: int) -> list[_Message]:
        """Up to `most` visible messages in the order sent; as in a FIFO queue, a message waiting out
        its visibility timeout holds back the later messages of its group (its pool), a message
        past the retention period is gone, and one received `max_receives` times goes to the
        dead-letter queue instead of being received again."""
        now = self.clock.now()
        queue = self.queues.get(step, [])
        for message in list(queue):
            if now - message.sent_at >= self.retention_s:
                queue.remove(message)
                self.expired += 1
            elif message.receives >= self.max_receives and message.visible_at <= now:
                queue.remove(message)
                self.dead_letters.append(message)
        held: set[str] = set()
        batch: list[_Message] = []
        for message in queue:
            if message.visible_at > now or message.pool in held:
                held.add(message.pool)
            elif len(batch) < most:
                batch.append(message)
        for message in batch:
            queue.remove(message)
            message.receives += 1
        return batch


class SimStack(Stack):
    """`queues_in_process=False`: the fan-out's messages go through moto's SQS, as in the local stack.
    `seed`: the randomness podslots uses where any choice is as good (the spread of a first try over
    the pods tied for best, a pod name's suffix, which breaks placement's last ties) drawn from
    seeded streams, so the same run decides the same way every time."""

    def __init__(self, clock: Any, queues_in_process: bool = True, seed: int | None = None) -> None:
        super().__init__(clock)
        self.queues_in_process = queues_in_process
        self.seed = seed
        self._rngs: list[tuple[Any, Any]] = []  # (allocator, its own rng), given back on exit

    def __enter__(self) -> SimStack:
        super().__enter__()
        self.bus = InProcessBus(self.clock)
        # The step functions run from their queues (the fan-out), so their modules are the
        # mappings' as well as the schedules': every publisher goes to the in-process bus.
        functions = {s.function for s in self.schedules} | {m.function for m in self.mappings}
        modules = [r.module() for r in api_routes()] + [function_module(f) for f in sorted(functions)]
        for module in modules:
            for attr in ("allocator", "service", "reconciler", "autoscaler", "expirer"):
                step = getattr(module, attr, None)
                if step is not None and hasattr(step, "bus"):
                    step.bus = self.bus
            if hasattr(module, "dispatcher") and self.queues_in_process:
                module.dispatcher.queues = self.step_queues
            if self.seed is not None and hasattr(module, "allocator"):
                self._rngs.append((module.allocator, module.allocator.rng))
                module.allocator.rng = random.Random(f"placement-{self.seed}")
        if self.seed is not None:
            self._names = podspec.__dict__["secrets"]  # pod_name's suffix: seeded too
            setattr(podspec, "secrets", SimpleNamespace(choice=random.Random(f"pod-names-{self.seed}").choice))  # noqa: B010
        return self

    def __exit__(self, *exc: object) -> None:
        if self.seed is not None:
            setattr(podspec, "secrets", self._names)  # noqa: B010
        for allocator, rng in self._rngs:
            allocator.rng = rng
        super().__exit__(*exc)

    @property
    def step_queues(self) -> InProcessQueues:
        if not hasattr(self, "_step_queues"):
            props = resource(self.mappings[0].queue)["Properties"]  # the three step queues are alike
            self._step_queues = InProcessQueues(
                self.clock,
                retention_s=float(props["MessageRetentionPeriod"]),
                max_receives=int(props["RedrivePolicy"]["maxReceiveCount"]),
            )
        return self._step_queues

    def _poll_once(self) -> bool:
        if not self.queues_in_process:
            return super()._poll_once()
        delivered = False
        for mapping in self.mappings:
            step = _step_of(mapping)
            messages = self.step_queues.receive(step, mapping.batch_size)
            if not messages:
                continue
            delivered = True
            arn = f"arn:aws:sqs:{ENV['AWS_REGION']}:123456789012:{mapping.queue}"
            records = [_record(m, arn) for m in messages]
            failed = self._deliver(mapping, records)
            visibility = float(resource(mapping.queue)["Properties"].get("VisibilityTimeout", 30))
            for message in reversed(messages):  # a failed message keeps its place at its group's head
                if message.id in failed:
                    message.visible_at = self.clock.now() + visibility
                    self.step_queues.queues[step].insert(0, message)
        return delivered

    def deliver_events(self) -> None:
        while self.bus.pending:
            event = self.bus.pending.pop(0)
            for watcher in self.on_event:
                watcher(event)
            for function, pattern in self.rules:
                if matches(pattern, event):
                    self.invoke(function, event)


def _step_of(mapping: QueueMapping) -> str:
    """ReconcileQueue -> reconcile: the step whose messages the mapping's queue carries."""
    return mapping.queue.removesuffix("Queue").lower()


def _record(message: _Message, arn: str) -> dict[str, Any]:
    """One record of an SQS event, as Lambda's event source mapping delivers it."""
    return {
        "messageId": message.id,
        "receiptHandle": message.id,
        "body": json.dumps({"pool": message.pool}),
        "attributes": {"MessageGroupId": message.pool, "ApproximateReceiveCount": str(message.receives)},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": ENV["AWS_REGION"],
    }
