"""How the scheduled steps go over the pools: every pool (or the one asked for), while the Lambda
has time left, starting at a different pool each minute so that a slow pool cannot starve the
ones listed after it, and each pool on its own: a failure in one pool costs that pool only."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

from podslots.clock import Clock
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.scrub import described, exception_facts
from podslots.store import RegisteredPool, SlotStore

TIME_MARGIN_S = 5  # stop starting new pools when less than this is left of the invocation
STEP_FAILED = "the step failed unexpectedly; the function's log has where (the next run tries again)"


def pools_in_turn(
    store: SlotStore, clock: Clock, only_pool: str | None, time_left_s: Callable[[], float] | None
) -> Iterator[RegisteredPool]:
    pools = [p for p in store.pool_records(unreadable=_report_unreadable) if only_pool in (None, p.name)]
    if pools:
        start = int(clock.now() // 60) % len(pools)
        pools = pools[start:] + pools[:start]
    for pool in pools:
        if time_left_s is not None and time_left_s() < TIME_MARGIN_S:
            logger.warning("out of time; the next run continues", extra={"pool": pool.name})
            return
        yield pool


def each_pool[Report](
    store: SlotStore,
    clock: Clock,
    step_name: str,
    step: Callable[[RegisteredPool], Report],
    failed: Callable[[RegisteredPool, str], Report],
    *,
    only_pool: str | None = None,
    time_left_s: Callable[[], float] | None = None,
) -> list[Report]:
    """Run `step` on each pool in turn. An exception in one pool is logged, counted
    (`PoolStepFailed`), recorded in that pool's history, answered by `failed`, and the run goes on.

    Errors are data: what is logged, recorded and answered is the exception's type and a fixed text,
    and the log adds where it was raised (`exception_facts`). Never its message nor a formatted
    traceback: an unexpected exception's text may quote a header, a kubeconfig or a server's answer
    (`ValueError: Invalid header value b'Bearer <token>'`), and the history is served by the API.
    """
    reports = []
    for pool in pools_in_turn(store, clock, only_pool, time_left_s):
        try:
            reports.append(step(pool))
        except Exception as exc:
            problem = described(exc, STEP_FAILED)
            logger.error(
                "pool step failed; the run goes on",
                extra={"pool": pool.name, "step": step_name, **exception_facts(exc)},
            )
            pool_metrics(pool.name, [("PoolStepFailed", MetricUnit.Count, 1)])
            _record_failure(store, clock, pool.name, step_name, problem)
            reports.append(failed(pool, problem))
    return reports


def _record_failure(store: SlotStore, clock: Clock, pool: str, step_name: str, problem: str) -> None:
    try:
        detail = {"step": step_name, "error": problem}
        store.add_event(pool, "PoolStepFailed", detail, int(clock.now()), uuid.uuid4().hex[:12])
    except Exception as exc:  # the table itself may be what failed: the log and the metric remain
        logger.error("pool step failure not recorded", extra={"pool": pool, **exception_facts(exc)})


def _report_unreadable(pool: str, problem: str) -> None:
    logger.error("pool settings unreadable; pool skipped", extra={"pool": pool, "problem": problem})
    pool_metrics(pool, [("PoolSettingsUnreadable", MetricUnit.Count, 1)])
