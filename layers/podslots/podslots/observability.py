"""Powertools Logger, Tracer and Metrics, created once per process and shared by the steps.

Service name and log level come from POWERTOOLS_* environment variables set per function in the
template; the metrics namespace is `PodSlots`.

Every metric goes out with two dimension sets (one EMF record, two entries in its `Dimensions`):
- `pool` and `service` (Powertools adds `service` from POWERTOOLS_SERVICE_NAME): per pool, what the
  dashboard shows with SEARCH expressions, so a pool created at run time appears by itself;
- `environment` alone (PODSLOTS_ENVIRONMENT): the environment's total over all its pools, what the
  template's alarms watch. A CloudWatch alarm needs one exact dimension set, and pools are not
  known when the template is deployed; metric math cannot stand in (alarms take no SEARCH, and
  Metrics Insights has no percentile for the dispatch wait's p95).
The total adds one time series per metric name, whatever the number of pools.

The X-Ray SDK is the largest single import of a cold start, and Powertools' Tracer imports it even
when tracing is off. So when tracing is off (POWERTOOLS_TRACE_DISABLED, or outside Lambda, as
Powertools decides) the Tracer gets a provider that does nothing and the SDK is never loaded; when
it is on, only what podslots calls is patched (botocore: DynamoDB and EventBridge; httplib: the
Kubernetes API), not every library the SDK knows, each of which it would import to patch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Iterable, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from podslots.environment import configured_environment

NAMESPACE = "PodSlots"
ENVIRONMENT_DIMENSION = "environment"
TRACED_MODULES = ("botocore", "httplib")


class _NoSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None: ...
    def add_subsegment(self, subsegment: Any) -> None: ...
    def remove_subsegment(self, subsegment: Any) -> None: ...
    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class NoTracing(BaseProvider):
    """A tracing provider that records nothing: the Tracer's decorators stay, the SDK stays unloaded."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment]:
        yield _NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncGenerator[BaseSegment]:
        yield _NoSegment()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Sequence[str]) -> None: ...
    def patch_all(self) -> None: ...


def tracing_on() -> bool:
    """Powertools' own rule: on in Lambda (not SAM local, not Chalice) unless POWERTOOLS_TRACE_DISABLED."""
    disabled = os.getenv("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on", "y", "t")
    in_lambda = bool(os.getenv("LAMBDA_TASK_ROOT")) and not (
        os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE")
    )
    return in_lambda and not disabled


def make_tracer() -> Tracer:
    if tracing_on():
        return Tracer(patch_modules=TRACED_MODULES)
    return Tracer(disabled=True, auto_patch=False, provider=NoTracing())


logger = Logger(utc=True)
tracer = make_tracer()
metrics = Metrics(namespace=NAMESPACE)


def _environment_total(record: AmazonCloudWatchEMFProvider) -> None:
    """Add the `environment` dimension set to the record, once: its metrics also count towards the
    environment's total, without the pool (see the module's docstring)."""
    environment = configured_environment()
    if environment and {ENVIRONMENT_DIMENSION: environment} not in record.dimension_sets:
        record.add_dimensions(**{ENVIRONMENT_DIMENSION: environment})


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    _environment_total(metrics.provider)


def seconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)
    _environment_total(metrics.provider)


def pool_metrics(pool: str, values: Iterable[tuple[str, MetricUnit, float]]) -> None:
    """Emit one pool's metrics at once, per pool (`pool`, `service`) and in the environment's total.

    A scheduled run visits many pools; each pool's figures go out in their own EMF record, so the
    handler's shared `metrics` (one pool per invocation) is not the place for them.
    """
    record = EphemeralMetrics(namespace=NAMESPACE)
    record.add_dimension(name="pool", value=pool)
    _environment_total(record)
    for name, unit, value in values:
        record.add_metric(name=name, unit=unit, value=value)
    record.flush_metrics()


__all__ = [
    "ENVIRONMENT_DIMENSION",
    "NAMESPACE",
    "MetricUnit",
    "NoTracing",
    "count",
    "logger",
    "metrics",
    "pool_metrics",
    "seconds",
    "tracer",
    "tracing_on",
]
