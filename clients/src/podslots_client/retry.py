"""How long to wait before trying again: pure functions of the attempt, a random draw and a header.

Randomness is passed in (`rand`, a draw in [0, 1)), so the math is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


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
        return min(max_wait_s, backoff.delay(attempt, rand))
    return min(retry_after, max_wait_s) * (1 + 0.2 * rand)
