"""How the scheduled steps go over the pools: every pool (or the one asked for), while the Lambda
has time left, starting at a different pool each minute so that a slow pool cannot starve the
ones listed after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from podslots.clock import Clock
from podslots.observability import logger
from podslots.store import RegisteredPool, SlotStore

TIME_MARGIN_S = 5  # stop starting new pools when less than this is left of the invocation


def pools_in_turn(
    store: SlotStore, clock: Clock, only_pool: str | None, time_left_s: Callable[[], float] | None
) -> Iterator[RegisteredPool]:
    pools = [p for p in store.pool_records() if only_pool in (None, p.name)]
    if pools:
        start = int(clock.now() // 60) % len(pools)
        pools = pools[start:] + pools[:start]
    for pool in pools:
        if time_left_s is not None and time_left_s() < TIME_MARGIN_S:
            logger.warning("out of time; the next run continues", extra={"pool": pool.name})
            return
        yield pool
