"""Recorded API calls and the faults a test can arrange for chosen calls."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

# What a request does, as Kubernetes names it ("unknown" for unrouted requests).
VERBS = frozenset({"create", "get", "list", "delete", "patch", "unknown"})


@dataclass(frozen=True)
class ApiCall:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: Mapping[str, str]
    verb: str
    content_type: str | None = None

    def as_tuple(self) -> tuple[str, str, dict[str, str]]:
        return self.method, self.path, dict(self.query)


@dataclass(frozen=True)
class ErrorStatus:
    """Answer with this HTTP status and a Status body (and Retry-After if set)."""

    status: int
    retry_after: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class SlowAnswer:
    """Wait this many seconds, then answer the request normally."""

    seconds: float


@dataclass(frozen=True)
class DropConnection:
    """Read the request, then close the socket without any response."""


Fault = ErrorStatus | SlowAnswer | DropConnection


@dataclass
class FaultRule:
    """A fault for the next `remaining` matching calls (None: every one)."""

    fault: Fault
    verb: str | None = None
    method: str | None = None
    path: str | None = None  # A glob, e.g. "/api/v1/namespaces/*/pods/web-*".
    remaining: int | None = 1
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.verb is not None and self.verb not in VERBS:
            raise ValueError(f"verb must be one of {sorted(VERBS)}, not {self.verb!r}")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("times must be at least 1 (or None for every call)")

    def matches(self, call: ApiCall) -> bool:
        return (
            (self.verb is None or self.verb == call.verb)
            and (self.method is None or self.method.upper() == call.method)
            and (self.path is None or fnmatch.fnmatchcase(call.path, self.path))
        )


class FaultBook:
    """Rules in the order they were added; the first live match fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, call: ApiCall) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining != 0 and rule.matches(call):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
