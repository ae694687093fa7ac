"""The table's keys: one partition per pool (settings, pods, history, lease), one per task, and
one registry partition listing every pool, so no step ever needs a Scan."""

from __future__ import annotations

POOL_PREFIX = "POOL#"
POD_PREFIX = "POD#"
TASK_PREFIX = "TASK#"
EVENT_PREFIX = "EVENT#"
NOTICE_PREFIX = "NOTICE#"
CONFIG_SK = "#CONFIG"
TASK_SK = "#TASK"
REGISTRY_PK = "POOLS"
LEASE_SK = "#LEASE#autoscale"
ARRIVALS_SK = "#ARRIVALS"  # the pool's learned arrivals by hour of the week (prewarm)


SECOND_CHOICE = "#outdated"  # the `open_slots` partition of open pods from an older template


def open_partition(pool: str, second_choice: bool = False) -> str:
    """The `open_pool` value of an open pod: the pool, or its second-choice partition (outdated pods,
    which allocation reads only when no current pod has an idle slot)."""
    return f"{pool}{SECOND_CHOICE}" if second_choice else pool


def pool_pk(pool: str) -> str:
    return f"{POOL_PREFIX}{pool}"


def pod_sk(pod: str) -> str:
    return f"{POD_PREFIX}{pod}"


def task_pk(task_id: str) -> str:
    return f"{TASK_PREFIX}{task_id}"


def notice_sk(kind: str, pod: str, uid: str) -> str:
    """A refusal already recorded in the history for this pod (by uid: a new pod of the name is new)."""
    return f"{NOTICE_PREFIX}{kind}#{pod}#{uid}"


def event_sk(at: int, event_id: str) -> str:
    """Newest last in the partition: a Query read backwards gives the history newest first."""
    return f"{EVENT_PREFIX}{at:012d}#{event_id}"
