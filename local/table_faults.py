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
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from unittest import mock

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
    after: int = 0  # calls of `operation` to let through first


class TableFaults:
    """The faults to inject; `injected` counts what was injected, per fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: list[_Next] = []
        self._rates: dict[Fault, float] = {}
        self._operations: frozenset[str] | None = None
        self._rng = random.Random(0)
        self.injected: Counter[Fault] = Counter()

    def next(self, operation: str, fault: Fault, times: int = 1, after: int = 0) -> None:
        """Inject `fault` into the next `times` calls of `operation` (after letting `after` through)."""
        with self._lock:
            self._next.append(_Next(operation, fault, times, after))

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
        fault = self.pick(operation)
        if fault is None:
            return moto(environ, start_response)
        if fault is Fault.ANSWER_LOST:
            moto(environ, lambda *_args, **_kwargs: None)  # applied; its answer never arrives
        request = _body(environ) if fault is Fault.TRANSACTION_CONFLICT else {}
        status, code, body = self.refusal(fault, request)
        return _error(start_response, status, code, body)

    def pick(self, operation: str) -> Fault | None:
        """The fault to inject into this call of `operation` (counted), or None to serve it."""
        fault = self._pick(operation)
        if fault is not None:
            self.injected[fault] += 1
        return fault

    def refusal(self, fault: Fault, request: dict[str, Any]) -> tuple[int, str, bytes]:
        """What DynamoDB answers for `fault` to this request (parsed JSON body): status, error
        code, body. An `ANSWER_LOST` is answered so only after the caller applied the request."""
        if fault is Fault.ANSWER_LOST:
            return 500, "InternalServerError", _json_error("InternalServerError", "Internal server error")
        if fault is Fault.THROTTLE:
            message = "Rate of requests exceeds the allowed rate."
            return 400, "ThrottlingException", _json_error("ThrottlingException", message)
        items = len(request.get("TransactItems", [])) or 1
        with self._lock:
            conflicted = self._rng.randrange(items)
        reasons = [
            {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            if i == conflicted
            else {"Code": "None"}
            for i in range(items)
        ]
        codes = ", ".join(r["Code"] for r in reasons)
        message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]"
        body = _json_error("TransactionCanceledException", message, CancellationReasons=reasons)
        return 400, "TransactionCanceledException", body

    def _pick(self, operation: str) -> Fault | None:
        with self._lock:
            for rule in self._next:
                if rule.operation == operation and rule.times > 0 and _applies(rule.fault, operation):
                    if rule.after > 0:
                        rule.after -= 1
                        continue
                    rule.times -= 1
                    return rule.fault
            if not self._rates or operation not in (self._operations or WRITES):
                return None
            for fault, rate in self._rates.items():
                if _applies(fault, operation) and self._rng.random() < rate:
                    return fault
            return None


WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


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


def _json_error(code: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"__type": _TYPE + code, "message": message, **extra}).encode()


def _error(start_response: Callable[..., Any], status: int, code: str, body: bytes) -> list[bytes]:
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


@contextmanager
def faults_in_process(faults: TableFaults, backoff: bool = False, transient: bool = True) -> Iterator[TableFaults]:
    """The same faults for an in-process moto (`mock_aws`), on every DynamoDB request of every
    botocore client (PynamoDB's included) while the context is open.

    Why here: in process there is no HTTP server to wrap; moto answers from botocore's
    `before-send` event through its `BotocoreStubber`, registered once for every session. Wrapping
    that stubber's call (rather than adding a handler to each client) reaches clients made before
    and after the context opens, and sees each attempt botocore makes, retries included. A
    throttle and a conflict are answered without moto seeing the request (nothing applied); a
    lost answer lets moto apply it, then answers 500, as `serve` does over HTTP.

    `transient=True` lets botocore's retry of a request that met a fault through, so no request
    fails past the client's retries only because the dice said so three times (DynamoDB throttling
    for that long is an outage, and its 5xx is the documented answer); a conflict, which the
    caller handles and sends anew, may meet the next one.

    `backoff=False` skips botocore's sleep before a retry: in process no time needs to pass (the
    code under test reads the clock it is given), and a machine of thousands of steps would
    otherwise sleep for minutes.
    """
    from botocore import endpoint
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

    served = BotocoreStubber.__call__
    faulted: list[Any] = [None]  # the body of the request the last fault hit

    def call(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b""
        target = target.decode() if isinstance(target, bytes) else str(target)
        retried = transient and faulted[0] is not None and request.body == faulted[0]
        fault = faults.pick(target.rsplit(".", 1)[-1]) if target.startswith("DynamoDB_") and not retried else None
        faulted[0] = request.body if fault is not None else None
        if fault is None:
            return served(stubber, event_name, request, **kwargs)
        if fault is Fault.ANSWER_LOST:
            served(stubber, event_name, request, **kwargs)  # applied; its answer never arrives
        status, code, body = faults.refusal(fault, _parsed(request.body))
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
        return AWSResponse(request.url, status, headers, MockRawResponse(body))

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(BotocoreStubber, "__call__", call))
        if not backoff:
            patches.enter_context(mock.patch.object(endpoint, "time", _NoSleep()))
        yield faults


class _NoSleep:
    """botocore's endpoint module's `time`, without its sleep before a retry."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def _parsed(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
