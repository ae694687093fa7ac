"""What the stand-in's HTTP handler serves from: the pods, the budgets, the faults, the request log.

The stand-in (server.py) owns one and gives the handler nothing else, so the handler reaches no
private member of the server: tests arrange state and faults through the stand-in, the handler
reads and records through this.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

from .budgets import BudgetStore
from .errors import KubeError
from .faults import FaultBook
from .store import Clock, PodStore


class Backend:
    def __init__(self, *, token: str | None, clock: Clock) -> None:
        self.token = token  # the one bearer token accepted, or None for any
        self.store = PodStore(clock)
        self.budgets = BudgetStore(self.store)
        self.faults = FaultBook()
        self.stopping = threading.Event()  # set while the server stops: slow answers give up
        self._calls: Counter[str] = Counter()
        self._authorizations: list[str] = []  # each request's Authorization header, in arrival order
        self._in_flight: Counter[str] = Counter()  # requests of each verb being served now
        self._peaks: Counter[str] = Counter()  # the most of each verb ever served at once
        self._lock = threading.Lock()

    def check_token(self, authorization: str | None) -> None:
        if self.token is not None and authorization != f"Bearer {self.token}":
            raise KubeError(401, "Unauthorized")

    def record(self, verb: str, authorization: str | None = None) -> None:
        with self._lock:
            self._calls[verb] += 1
            if authorization is not None:
                self._authorizations.append(authorization)

    @contextlib.contextmanager
    def serving(self, verb: str) -> Iterator[None]:
        """Counts the request as in the server while it is served (for `peak`)."""
        with self._lock:
            self._in_flight[verb] += 1
            self._peaks[verb] = max(self._peaks[verb], self._in_flight[verb])
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[verb] -= 1

    def peak(self, verb: str) -> int:
        with self._lock:
            return self._peaks[verb]

    def authorizations(self) -> list[str]:
        with self._lock:
            return list(self._authorizations)

    def calls(self) -> Counter[str]:
        with self._lock:
            return self._calls.copy()

    def clear_requests(self) -> None:
        with self._lock:
            self._calls.clear()
            self._peaks.clear()
            self._authorizations.clear()
