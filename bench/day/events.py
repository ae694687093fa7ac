"""The event loop under the plain-Python models: a heap of (time, order, handler, argument).

Each handler runs at its time, after the ledger has integrated the counts up to it, so a model
only ever says what changes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from bench.day.ledger import Ledger


class EventLoop:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._order = itertools.count()

    def at(self, t: float, handler: Callable[[Any], None], arg: Any = None) -> None:
        heapq.heappush(self._heap, (max(t, self.now), next(self._order), handler, arg))

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            t, _, handler, arg = heapq.heappop(self._heap)
            self.ledger.advance(t)
            self.now = t
            handler(arg)
        self.ledger.advance(until)
        self.now = until
