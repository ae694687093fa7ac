"""How long to wait before trying again, and how long a try may take: functions of the attempt, a
random draw, a header and a deadline's clock.

Randomness and time are passed in (`rand`, a draw in [0, 1); `clock`), so the math is tested
without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The least wait before a try again, whatever the server asks: a `Retry-After: 0` (or a backoff
# configured to 0) would otherwise send thousands of requests a second. Jittered up to twice
# this, so clients told "now" together do not come back in step.
RETRY_FLOOR_S = 0.25
# The least time left for a try to start: one with less would only time out. The first try of
# a call is always made, bounded by at least this much.
MIN_TRY_S = 0.5


@dataclass(frozen=True)
class Backoff:
    """Exponential and capped, with "equal jitter": a wait in [half, all] of `base_s * 2**attempt`.

    Half of it is random, so callers that failed together spread out; the other half is not, so
    waits still grow and a broken server is not hammered.
    """

    base_s: float = 0.5
    cap_s: float = 20.0

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before retry number `attempt` (0 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, 32))
        return ceiling / 2 + ceiling / 2 * rand


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """The `Retry-After` header in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def capacity_wait(
    retry_after: float | None, attempt: int, rand: float, *, max_wait_s: float, backoff: Backoff
) -> float:
    """The wait after a 503 no_capacity: what the server asked, at most `max_wait_s`, plus up to 20 %
    of it at random, so a crowd of waiting tasks does not come back in the same second. Without a
    Retry-After, the backoff's wait."""
    if retry_after is None:
        return floored(min(max_wait_s, backoff.delay(attempt, rand)), rand)
    return floored(min(retry_after, max_wait_s) * (1 + 0.2 * rand), rand)


def floored(wait: float, rand: float) -> float:
    """`wait`, but at least the floor, jittered to [1, 2) times `RETRY_FLOOR_S`."""
    return max(wait, RETRY_FLOOR_S * (1 + rand))


class Deadline:
    """One call's time limit, and what its tries met, shared by every layer that tries or waits.

    A try's socket timeouts are the configured ones cut to the time left; a wait is cut so that the
    next try starts with `MIN_TRY_S` left, and when there is not that much, there is no next try.
    Mutable, and made afresh for each call.
    """

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.tries = 0  # requests sent so far
        self.last: str | None = None  # what the last one met, in the client's words (an `outcome`)

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def elapsed(self) -> float:
        return self._clock() - self.started

    def timeout(self, configured: float) -> float:
        """The socket timeout of a try starting now: `configured`, at most the time left (at least
        `MIN_TRY_S`, which only a first try made with less left can need).

        A deadline of 0 (or less) asks for one try and no wait, not for a time: that try has the
        configured timeout, as it had before deadlines bounded tries (a cold Lambda may need it).
        """
        if self.seconds <= 0:
            return configured
        return min(configured, max(self.left(), MIN_TRY_S))

    def pause(self, wanted: float) -> float | None:
        """How long to wait before the next try: `wanted`, cut so the try starts with `MIN_TRY_S`
        left; None when no try fits any more."""
        room = self.left() - MIN_TRY_S
        if room <= 0:
            return None
        return min(wanted, room)
