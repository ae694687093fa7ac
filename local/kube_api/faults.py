"""Faults a test arranges for the next calls of a verb: the failures podslots must survive."""

from __future__ import annotations

import threading
from dataclasses import dataclass

# What a request does, as Kubernetes names it, plus "discovery" and "unknown" (a route not served);
# on pods, unprefixed; `evict` (POST pods/{name}/eviction); `budget-<verb>` on PodDisruptionBudgets.
VERBS = frozenset({"create", "get", "list", "watch", "delete", "patch", "discovery", "unknown", "evict"}) | {
    f"budget-{verb}" for verb in ("create", "get", "list", "delete")
}


@dataclass(frozen=True)
class ErrorStatus:
    """Answer with this HTTP status and a Status body."""

    status: int


@dataclass(frozen=True)
class EchoAuthorization:
    """Answer with this HTTP status and a Status body whose message quotes the request's `Authorization`
    header as it arrived: an API server, or a proxy in front of it, that repeats what it was sent."""

    status: int


@dataclass(frozen=True)
class SlowAnswer:
    """Wait this many seconds, then answer normally: trips a client's read timeout."""

    seconds: float


@dataclass(frozen=True)
class DropConnection:
    """Read the request, then close the socket without an answer."""


Fault = ErrorStatus | EchoAuthorization | SlowAnswer | DropConnection


@dataclass
class _Rule:
    fault: Fault
    verb: str | None
    remaining: int


class FaultBook:
    """Rules in the order they were added; the first one matching a call fires, for `times` calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def add(self, fault: Fault, verb: str | None, times: int) -> None:
        if verb is not None and verb not in VERBS:
            raise ValueError(f"verb must be one of {sorted(VERBS)}, not {verb!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._rules.append(_Rule(fault, verb, times))

    def take(self, verb: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining and rule.verb in (None, verb):
                    rule.remaining -= 1
                    return rule.fault
        return None
