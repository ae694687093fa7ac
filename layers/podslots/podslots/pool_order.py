"""How a scheduled step goes over the pools.

A fan-out message names one pool: its run reads that pool's registry entry alone. A direct `{}`
run (an operator's, `make invoke`'s) walks every pool while the Lambda has time left and resumes,
on its next run in this container, at the first pool it did not reach, so with more pools than
one run can reach every pool is visited within ceil(N/K) runs. Each pool runs on its own: a
failure in one pool costs that pool only."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from podslots.clock import Clock
from podslots.ids import new_event_id
from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.ports import PoolRounds
from podslots.scrub import described, exception_facts
from podslots.store import RegisteredPool

TIME_MARGIN_S = 5  # stop starting new pools when less than this is left of the invocation
STEP_FAILED = "the step failed unexpectedly; the function's log has where (the next run tries again)"


# step name -> the first pool the last `{}` run of this container did not reach (sorted by name, so
# a pool added or removed meanwhile does not move the others' turn)
_RESUME_AT: dict[str, str] = {}


def pools_in_turn(
    store: PoolRounds,
    clock: Clock,
    only_pool: str | None,
    time_left_s: Callable[[], float] | None,
    step_name: str = "",
) -> Iterator[RegisteredPool]:
    if only_pool is not None:
        pool = store.pool_record(only_pool, unreadable=_report_unreadable)
        if pool is not None and _has_time(time_left_s, pool.name):
            yield pool
        return
    pools = sorted(store.pool_records(unreadable=_report_unreadable), key=lambda p: p.name)
    for pool in _from_turn(pools, _RESUME_AT.pop(step_name, None), clock):
        if not _has_time(time_left_s, pool.name):
            _RESUME_AT[step_name] = pool.name
            return
        yield pool


def _from_turn(pools: list[RegisteredPool], resume_at: str | None, clock: Clock) -> list[RegisteredPool]:
    """The pools from the one whose turn it is: where the last run stopped, else (a new container)
    a different one each minute."""
    if not pools:
        return pools
    if resume_at is None:
        start = int(clock.now() // 60) % len(pools)
    else:
        start = next((i for i, p in enumerate(pools) if p.name >= resume_at), 0)
    return pools[start:] + pools[:start]


def _has_time(time_left_s: Callable[[], float] | None, pool: str) -> bool:
    if time_left_s is not None and time_left_s() < TIME_MARGIN_S:
        logger.warning("out of time; the next run continues", extra={"pool": pool})
        return False
    return True


def each_pool[Report](
    store: PoolRounds,
    clock: Clock,
    step_name: str,
    step: Callable[[RegisteredPool], Report],
    failed: Callable[[RegisteredPool, str], Report],
    *,
    only_pool: str | None = None,
    time_left_s: Callable[[], float] | None = None,
    strict: bool = False,
) -> list[Report]:
    """Run `step` on each pool in turn. An exception in one pool is logged, counted
    (`PoolStepFailed`), recorded in that pool's history, answered by `failed`, and the run goes on.

    Errors are data: what is logged, recorded and answered is the exception's type and a fixed text,
    and the log adds where it was raised (`exception_facts`). Never its message nor a formatted
    traceback: an unexpected exception's text may quote a header, a kubeconfig or a server's answer
    (`ValueError: Invalid header value b'Bearer <token>'`), and the history is served by the API.

    `strict` (a fan-out message's run) raises `PoolRunFailed` after all that instead, so the
    message fails alone and SQS delivers it again.
    """
    reports = []
    for pool in pools_in_turn(store, clock, only_pool, time_left_s, step_name):
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
            if strict:
                raise PoolRunFailed(pool.name, step_name) from exc
            reports.append(failed(pool, problem))
    return reports


class PoolRunFailed(Exception):
    """A pool's run failed unexpectedly (already logged, counted and recorded by its type only)."""

    def __init__(self, pool: str, step: str) -> None:
        super().__init__(f"{step} of pool {pool} failed; its message is delivered again")
        self.pool = pool


def _record_failure(store: PoolRounds, clock: Clock, pool: str, step_name: str, problem: str) -> None:
    try:
        detail = {"step": step_name, "error": problem}
        store.add_event(pool, "PoolStepFailed", detail, int(clock.now()), new_event_id())
    except Exception as exc:  # the table itself may be what failed: the log and the metric remain
        logger.error("pool step failure not recorded", extra={"pool": pool, **exception_facts(exc)})


def _report_unreadable(pool: str, problem: str) -> None:
    logger.error("pool settings unreadable; pool skipped", extra={"pool": pool, "problem": problem})
    pool_metrics(pool, [("PoolSettingsUnreadable", MetricUnit.Count, 1)])
