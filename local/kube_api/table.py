"""Pods as the `Table` that `kubectl get` asks for, so it prints the columns a person expects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .store import Pod

TABLE_MEDIA = "as=Table"  # in kubectl's Accept: application/json;as=Table;v=v1;g=meta.k8s.io
COLUMNS = [
    {"name": "Name", "type": "string", "format": "name", "description": "the pod's name"},
    {"name": "Ready", "type": "string", "description": "containers ready: all of them while Running"},
    {"name": "Status", "type": "string", "description": "the phase, or Terminating"},
    {"name": "Restarts", "type": "integer", "description": "always 0 here"},
    {"name": "Age", "type": "string", "description": "since creationTimestamp"},
    {"name": "IP", "type": "string", "priority": 1, "description": "status.podIP"},
]


def wants_table(accept: str | None) -> bool:
    return TABLE_MEDIA in (accept or "").replace(" ", "")


def table(pods: list[Pod], metadata: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table, one row per pod; each row carries the pod for `kubectl -w`'s bookkeeping."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": COLUMNS,
        "rows": [{"cells": _cells(pod, now), "object": pod} for pod in pods],
    }


def _cells(pod: Pod, now: datetime) -> list[Any]:
    meta, status = pod["metadata"], pod.get("status") or {}
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
    containers = len((pod.get("spec") or {}).get("containers") or [])
    ready = containers if phase == "Running" else 0
    created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
    return [
        meta["name"],
        f"{ready}/{containers}",
        phase,
        0,
        _age((now - created).total_seconds()),
        status.get("podIP") or "<none>",
    ]


def _age(seconds: float) -> str:
    """kubectl's short durations: 45s, 12m, 5h, 3d."""
    seconds = max(0, int(seconds))
    for unit, size, below in (("s", 1, 120), ("m", 60, 3 * 3600), ("h", 3600, 48 * 3600)):
        if seconds < below:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"
