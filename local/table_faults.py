"""Faults of the table, injected at moto's HTTP server the way DynamoDB itself answers them.

moto never cancels a transaction for a conflict, never throttles and never loses an answer; real
DynamoDB does all three. So the serialized dispatcher (`local/moto_server.py`) can answer, per
operation, on the next calls or at random rates:

- `TRANSACTION_CONFLICT`: a TransactWriteItems cancelled with `TransactionConflict` on one item
  (another transaction held it), nothing applied;
- `THROTTLE`: a `ThrottlingException`, nothing applied (botocore retries it);
- `ANSWER_LOST`: the request is applied, then answered with a 500, as if the answer were lost on
  the way back (botocore retries it, and the retry meets the write it already made).
"""

from __future__ import annotations

import io
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Moto = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]
_TYPE = "com.amazonaws.dynamodb.v20120810#"


class Fault(StrEnum):
    TRANSACTION_CONFLICT = "TransactionConflict"
    THROTTLE = "Throttle"
    ANSWER_LOST = "AnswerLost"


@dataclass
class _Next:
    operation: str
    fault: Fault
    times: int


class TableFaults:
    """The faults to inject; `injected` counts what was injected, per fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: list[_Next] = []
        self._rates: dict[Fault, float] = {}
        self._operations: frozenset[str] | None = None
        self._rng = random.Random(0)
        self.injected: Counter[Fault] = Counter()

    def next(self, operation: str, fault: Fault, times: int = 1) -> None:
        """Inject `fault` into the next `times` calls of `operation`."""
        with self._lock:
            self._next.append(_Next(operation, fault, times))

    def chaos(self, rates: dict[Fault, float], seed: int = 0, operations: frozenset[str] | None = None) -> None:
        """Inject each fault at its rate into every write (or into `operations`), seeded."""
        with self._lock:
            self._rates, self._operations, self._rng = dict(rates), operations, random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._next.clear()
            self._rates = {}

    def serve(
        self, operation: str, environ: dict[str, Any], start_response: Callable[..., Any], moto: Moto
    ) -> list[bytes]:
        fault = self._pick(operation)
        if fault is None:
            return moto(environ, start_response)
        self.injected[fault] += 1
        if fault is Fault.ANSWER_LOST:
            moto(environ, lambda *_args, **_kwargs: None)  # applied; its answer never arrives
            return _error(start_response, 500, "InternalServerError", "Internal server error")
        if fault is Fault.THROTTLE:
            return _error(start_response, 400, "ThrottlingException", "Rate of requests exceeds the allowed rate.")
        items = len(_body(environ).get("TransactItems", [])) or 1
        conflicted = self._rng.randrange(items)
        reasons = [
            {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            if i == conflicted
            else {"Code": "None"}
            for i in range(items)
        ]
        codes = ", ".join(r["Code"] for r in reasons)
        return _error(
            start_response,
            400,
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            CancellationReasons=reasons,
        )

    def _pick(self, operation: str) -> Fault | None:
        with self._lock:
            for rule in self._next:
                if rule.operation == operation and rule.times > 0 and _applies(rule.fault, operation):
                    rule.times -= 1
                    return rule.fault
            if not self._rates or operation not in (self._operations or WRITES):
                return None
            for fault, rate in self._rates.items():
                if _applies(fault, operation) and self._rng.random() < rate:
                    return fault
            return None


WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})


def _applies(fault: Fault, operation: str) -> bool:
    return fault is not Fault.TRANSACTION_CONFLICT or operation == "TransactWriteItems"


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    """Read the request body and put it back, so moto could still read it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error(start_response: Callable[..., Any], status: int, code: str, message: str, **extra: Any) -> list[bytes]:
    body = json.dumps({"__type": _TYPE + code, "message": message, **extra}).encode()
    reason = {400: "Bad Request", 500: "Internal Server Error"}[status]
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Content-Length", str(len(body))),
            ("x-amzn-ErrorType", code),
        ],
    )
    return [body]
