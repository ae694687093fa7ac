"""What reconcile and autoscale check on a stored pool before they act on it (docs/security.md).

A rule added after a pool was stored does not make the pool unreadable (settings.py reads stored
documents in their own context, where those rules are not applied): it is checked here instead, on
every run, and reported.

- A namespace no longer among the deployment's agent namespaces (`AgentNamespaces`): the pool is
  not acted on at all, nothing created, deleted or patched there (`PoolNamespaceNotAllowed`).
- A pod below the pool's `pod_security` level: the pool keeps running as stored, and is reported
  (`PoolBelowPodSecurity`, by reconcile); its next PUT must meet the level.

Each is counted on every run (the metric an alarm watches) and recorded in the pool's history once
per change (a notice keyed by what was found, so not every minute). The report is best effort: a
busy table costs the history entry of that run (the next run records it), never the run itself.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from podslots.observability import MetricUnit, logger, pool_metrics
from podslots.pod_security_reading import Violation
from podslots.podspec import security_violations
from podslots.ports import Notices
from podslots.settings import namespace_allowed
from podslots.store import RegisteredPool, is_transient

NAMESPACE_NOT_ALLOWED = "PoolNamespaceNotAllowed"
BELOW_POD_SECURITY = "PoolBelowPodSecurity"


def namespace_refused(store: Notices, pool: RegisteredPool, now: int, step: str) -> bool:
    """True when the pool's namespace is not allowed (reported): the step leaves the pool alone."""
    namespace = pool.settings.namespace
    if namespace_allowed(namespace):
        return False
    pool_metrics(pool.name, [(NAMESPACE_NOT_ALLOWED, MetricUnit.Count, 1)])
    _notice(store, pool.name, NAMESPACE_NOT_ALLOWED, {"namespace": namespace}, now)
    logger.warning("pool's namespace not allowed; pool left alone", extra={"pool": pool.name, "step": step})
    return True


def report_below_level(store: Notices, pool: RegisteredPool, now: int) -> list[Violation]:
    """The violations of the pool's level by the pods it makes (reported when there are any)."""
    violations = security_violations(pool.name, pool.settings)
    if violations:
        pool_metrics(pool.name, [(BELOW_POD_SECURITY, MetricUnit.Count, 1)])
        detail = {"pod_security": pool.settings.pod_security.value, "violations": [v.as_dict() for v in violations]}
        _notice(store, pool.name, BELOW_POD_SECURITY, detail, now)
        logger.warning("pool below its pod security level", extra={"pool": pool.name, "violations": len(violations)})
    return violations


def _notice(store: Notices, pool: str, kind: str, detail: dict[str, Any], now: int) -> None:
    """Into the history once per distinct finding: a pool raised and lowered again is new."""
    digest = hashlib.sha256(json.dumps(detail, sort_keys=True).encode()).hexdigest()[:12]
    try:
        store.notice_once(pool, kind, pod=pool, uid=digest, detail=detail, now=now)
    except Exception as exc:
        if not is_transient(exc):
            raise
        logger.warning(
            "notice not recorded; the next run records it", extra={"pool": pool, "failure": type(exc).__name__}
        )
