"""Powertools Logger, Tracer and Metrics, created once per process and shared by the steps.

Service name and log level come from POWERTOOLS_* environment variables set per function in the
template; the metrics namespace is `PodSlots` and every metric carries the `pool` dimension.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "PodSlots"

logger = Logger(utc=True)
tracer = Tracer()
metrics = Metrics(namespace=NAMESPACE)


def count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def seconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)


__all__ = ["NAMESPACE", "count", "logger", "metrics", "seconds", "tracer"]
