"""Powertools Logger, Tracer and Metrics, created once per process and shared by the steps.

Service name and log level come from POWERTOOLS_* environment variables set per function in the
template; the metrics namespace is `PodSlots` and every metric carries the `pool` dimension.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "PodSlots"

logger = Logger(utc=True)
tracer = Tracer()
metrics = Metrics(namespace=NAMESPACE)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def seconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)


def pool_metrics(pool: str, values: Iterable[tuple[str, MetricUnit, float]]) -> None:
    """Emit one pool's metrics at once, with that pool as their only dimension.

    A scheduled run visits many pools; each pool's figures go out in their own EMF record, so the
    handler's shared `metrics` (one dimension set per invocation) is not the place for them.
    """
    record = EphemeralMetrics(namespace=NAMESPACE)
    record.add_dimension(name="pool", value=pool)
    for name, unit, value in values:
        record.add_metric(name=name, unit=unit, value=value)
    record.flush_metrics()


__all__ = ["NAMESPACE", "MetricUnit", "count", "logger", "metrics", "pool_metrics", "seconds", "tracer"]
