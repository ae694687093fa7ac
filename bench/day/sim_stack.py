"""The embedded stack with an in-process bus: events go from the steps to the template's rules
without moto's EventBridge and SQS round trip.

`local.stack.Stack` reads the bus back through an SQS queue after every call, which is about a
third of a heartbeat's cost on moto; over a simulated day that is hours of CPU for nothing the
simulation measures. Delivery is the same: each event goes to the watchers, then to the
functions whose template rules match it, in the order published.
"""

from __future__ import annotations

import json
from typing import Any

from local.routes import api_routes
from local.stack import Stack, function_module, matches


class InProcessBus:
    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.pending.append(
            {"source": "podslots", "detail-type": detail_type, "detail": json.loads(json.dumps(detail))}
        )


class SimStack(Stack):
    def __enter__(self) -> SimStack:
        super().__enter__()
        self.bus = InProcessBus()
        # The step functions run from their queues (the fan-out), so their modules are the
        # mappings' as well as the schedules': every publisher goes to the in-process bus.
        functions = {s.function for s in self.schedules} | {m.function for m in self.mappings}
        modules = [r.module() for r in api_routes()] + [function_module(f) for f in sorted(functions)]
        for module in modules:
            for attr in ("allocator", "service", "reconciler", "autoscaler", "expirer"):
                step = getattr(module, attr, None)
                if step is not None and hasattr(step, "bus"):
                    step.bus = self.bus
        return self

    def deliver_events(self) -> None:
        while self.bus.pending:
            event = self.bus.pending.pop(0)
            for watcher in self.on_event:
                watcher(event)
            for function, pattern in self.rules:
                if matches(pattern, event):
                    self.invoke(function, event)
