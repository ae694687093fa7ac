"""The simulation's direct DynamoDB answers are moto's answers (`bench/day/sim_wire.py`).

A busy hour of one pool runs through the real handlers and steps with every DynamoDB answer
written both ways: moto's serializer, and the direct one where it is sure. The two must parse to
the same JSON, and the direct way must be the one most answers take (else it buys nothing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core.responses import ActionContext, ActionResult

from bench.day import common
from bench.day.podslots_policy import PodslotsModel
from bench.day.sim_wire import Unsure, direct_json
from bench.day.traffic import make_trace

pytestmark = pytest.mark.slow


def test_direct_answers_are_the_answers_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given moto's serializer, with a check of the direct one beside it on every DynamoDB answer
    moto_serializer = ActionResult.execute_result
    seen: dict[str, int] = {}
    mismatches: list[str] = []

    def both_ways(self: ActionResult, context: ActionContext) -> Any:
        status, headers, body = moto_serializer(self, context)
        operation = context.operation_model
        if context.service_model.service_name == "dynamodb" and not isinstance(self.result, Exception):
            try:
                direct = direct_json(self.result, operation.output_shape)
            except Unsure:
                seen["unsure " + operation.name] = seen.get("unsure " + operation.name, 0) + 1
            else:
                seen[operation.name] = seen.get(operation.name, 0) + 1
                if direct != json.loads(body):
                    mismatches.append(f"{operation.name}: {json.dumps(direct)[:300]} != {body[:300]!r}")
        return status, headers, body

    monkeypatch.setattr(ActionResult, "execute_result", both_ways)
    monkeypatch.setattr(common, "DRAIN_S", 600.0)

    # When a busy hour of one pool is simulated through the handlers and the steps
    trace = make_trace(seed=2, hours=1, pools=1, start_hour=10)
    model = PodslotsModel(trace, seed=2, progress_every_h=0, direct_answers=False)
    model.run()

    # Then every answer the direct way wrote is the one moto wrote, and most answers took it
    assert model.violations == []
    assert mismatches == []
    direct = sum(n for k, n in seen.items() if not k.startswith("unsure"))
    unsure = sum(n for k, n in seen.items() if k.startswith("unsure"))
    assert {"Query", "GetItem", "UpdateItem", "TransactWriteItems"} <= set(seen), seen
    assert direct > 10 * unsure, seen
