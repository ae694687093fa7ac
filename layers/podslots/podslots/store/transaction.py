"""Conditional writes: the one helper for "the condition failed", the labelled transaction, and
the connection that transactions share."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, PynamoDBException, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from podslots.store.items import Item, PodItem, binding

CONDITION_FAILED = "ConditionalCheckFailed"


class StoreConflict(Exception):
    """A conditional write lost: `reasons` names each item whose condition failed (or that conflicted)."""

    def __init__(self, reasons: dict[str, str], raw_items: dict[str, Any] | None = None) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in reasons.items()) or "conflict")
        self.reasons = reasons
        self.raw_items = raw_items or {}  # an item as it was, where the write asked for it (ALL_OLD)
        self.found: dict[str, Any] = {}  # the same, as domain values (the store fills it in)

    def failed(self, label: str) -> bool:
        """Did this item's own condition fail (as opposed to a TransactionConflict or a throttle)?"""
        return self.reasons.get(label) == CONDITION_FAILED


# DynamoDB's answers that say nothing about the data: it was busy or failed, and a later retry of
# the same request is the cure (throttling past the client's own retries, a 5xx).
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Is this a store failure that says nothing about the data, so the caller should retry later?

    Throttling or a 5xx past the client's retries, a connection that failed (no answer code), or a
    transaction cancelled with no failed condition (TransactionConflict, throttling). A failed
    condition is an answer, not a fault: the steps act on it, and it is never transient here.
    """
    if isinstance(exc, StoreConflict):
        return bool(exc.reasons) and CONDITION_FAILED not in exc.reasons.values()
    if isinstance(exc, PynamoDBException):
        code = exc.cause_response_code
        return code in TRANSIENT_CODES or (code is None and exc.cause is not None)
    return False


def conditional(write: Callable[[], Any]) -> bool:
    """Run one conditional write: True if it was applied, False if its condition failed.

    Any other failure (throttling past the retries, a bad request) raises: only a failed
    condition is an answer the steps act on.
    """
    try:
        write()
    except (PutError, UpdateError, DeleteError) as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def condition_failed(label: str, write: Callable[[], Any]) -> None:
    """Run one conditional write; a failed condition becomes a StoreConflict naming `label`."""
    if not conditional(write):
        raise StoreConflict({label: CONDITION_FAILED})


class LabelledTransaction:
    """A TransactWrite that remembers which item is which.

    DynamoDB answers a cancelled transaction with one reason per item, in request order; PynamoDB
    sends its items grouped by kind (condition checks, deletes, puts, updates), not in call order.
    So each item is labelled, and the labels are put in PynamoDB's order to read the reasons.
    """

    _ORDER = ("condition_check", "delete", "put", "update")

    def __init__(self, connection: Connection, token: str | None = None) -> None:
        self._tx = TransactWrite(connection=connection, client_request_token=token)
        self._labels: dict[str, list[str]] = {kind: [] for kind in self._ORDER}

    def condition_check(self, label: str, kind: type[Item], pk: str, sk: str, condition: Condition) -> None:
        self._tx.condition_check(kind, pk, sk, condition=condition)
        self._labels["condition_check"].append(label)

    def put(self, label: str, item: Item, condition: Condition | None = None, return_old: bool = False) -> None:
        """`return_old`: if the condition fails, the cancellation carries the item as it is."""
        self._tx.save(item, condition=condition, return_values="ALL_OLD" if return_old else None)
        self._labels["put"].append(label)

    def update(self, label: str, item: Item, actions: list[Action], condition: Condition | None) -> None:
        self._tx.update(item, actions=actions, condition=condition)
        self._labels["update"].append(label)

    def delete(self, label: str, item: Item, condition: Condition | None = None) -> None:
        self._tx.delete(item, condition=condition)
        self._labels["delete"].append(label)

    def commit(self) -> None:
        try:
            self._tx._commit()
        except TransactWriteError as exc:
            if exc.cause_response_code not in ("TransactionCanceledException",):
                raise
            order = [label for kind in self._ORDER for label in self._labels[kind]]
            found = [(label, r) for label, r in zip(order, exc.cancellation_reasons, strict=False) if r is not None]
            reasons = {label: reason.code for label, reason in found}
            raw = {label: reason.raw_item for label, reason in found if reason.raw_item}
            raise StoreConflict(reasons, raw) from exc


class SharedConnection:
    """One PynamoDB connection for transactions, built once (botocore clients are thread-safe),
    and built again when the items are bound to another table or endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._generation = -1

    def get(self) -> Connection:
        with self._lock:
            if self._conn is None or self._generation != binding["generation"]:
                self._conn = Connection(
                    region=PodItem.Meta.region,
                    host=PodItem.Meta.host,
                    max_retry_attempts=PodItem.Meta.max_retry_attempts,
                    connect_timeout_seconds=PodItem.Meta.connect_timeout_seconds,
                    read_timeout_seconds=PodItem.Meta.read_timeout_seconds,
                )
                self._conn.client  # noqa: B018 (build the botocore client now, under the lock)
                self._generation = binding["generation"]
            return self._conn
