"""policy/v1 PodDisruptionBudgets, and the Eviction API that honours them, as the API server does.

A budget's status is computed when it is read or an eviction asks, as if the disruption
controller had just synced: the pods it selects now, the healthy ones among them (Running, not
being deleted, and not marked unready), and what its spec allows. Pods without a controller count
for no expected pod when the budget uses `maxUnavailable` or a percentage (as the controller
counts them), so `maxUnavailable: 0` over bare pods allows no disruption.

An eviction (POST pods/{name}/eviction) deletes the pod unless a budget refuses it:
- a pod that is Pending, finished or being deleted goes whatever the budgets;
- more than one budget selecting the pod: 500, as the eviction subresource answers;
- an unready pod goes if the budget's policy is AlwaysAllow, or its application is whole
  (currentHealthy >= desiredHealthy > 0);
- otherwise a budget allowing no disruption answers 429 TooManyRequests, naming itself.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import KubeError, status_body
from .store import Pod, PodStore, rfc3339, selected

Budget = dict[str, Any]
_FIELDS = ("minAvailable", "maxUnavailable")


class BudgetStore:
    """The namespaced budgets, beside the pods (whose store they read and evict from)."""

    def __init__(self, pods: PodStore) -> None:
        self._pods = pods
        self._lock = threading.Lock()
        self._budgets: dict[tuple[str, str], Budget] = {}
        self._versions = itertools.count(1)  # the budgets' own resource versions: no client compares them with pods'

    def create(self, namespace: str, body: Any) -> Budget:
        budget = _admitted(body)
        name = budget["metadata"]["name"]
        budget["metadata"].update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=rfc3339(self._pods.clock()),
            generation=1,
        )
        with self._lock:
            budget["metadata"]["resourceVersion"] = str(next(self._versions))
            if (namespace, name) in self._budgets:
                raise KubeError(409, f'poddisruptionbudgets.policy "{name}" already exists', "AlreadyExists", name)
            self._budgets[(namespace, name)] = budget
        return self._with_status(namespace, budget)

    def get(self, namespace: str, name: str) -> Budget:
        with self._lock:
            budget = self._budgets.get((namespace, name))
        if budget is None:
            raise KubeError(404, f'poddisruptionbudgets.policy "{name}" not found', name=name)
        return self._with_status(namespace, budget)

    def listed(self, namespace: str) -> dict[str, Any]:
        with self._lock:
            budgets = [b for (ns, _), b in sorted(self._budgets.items()) if ns == namespace]
            metadata = {"resourceVersion": str(next(self._versions))}
        items = [self._with_status(namespace, b) for b in budgets]
        return {"kind": "PodDisruptionBudgetList", "apiVersion": "policy/v1", "metadata": metadata, "items": items}

    def delete(self, namespace: str, name: str) -> Budget:
        with self._lock:
            budget = self._budgets.pop((namespace, name), None)
        if budget is None:
            raise KubeError(404, f'poddisruptionbudgets.policy "{name}" not found', name=name)
        return copy.deepcopy(budget)

    def budgets(self, namespace: str | None = None) -> list[Budget]:
        """The test's view: every budget (of one namespace), with its status as of now."""
        with self._lock:
            found = [(ns, b) for (ns, _), b in sorted(self._budgets.items()) if namespace in (None, ns)]
        return [self._with_status(ns, b) for ns, b in found]

    def evict(self, namespace: str, name: str, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, Status body) of an eviction; the pod is deleted when it is allowed."""
        if not isinstance(body, dict) or (body.get("metadata") or {}).get("name") != name:
            raise KubeError(400, "name in URL does not match name in Eviction object")
        options = body.get("deleteOptions") or {}
        with self._pods.locked():  # the pods cannot change between the budget's verdict and the delete
            pod = self._pods.get(namespace, name)
            if not _ignores_budgets(pod):
                refusal = self._refusal(namespace, pod)
                if refusal is not None:
                    return refusal
            self._pods.delete(namespace, name, options)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _refusal(self, namespace: str, pod: Pod) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            covering = [b for (ns, _), b in sorted(self._budgets.items()) if ns == namespace and _selects(b, pod)]
        if len(covering) > 1:
            message = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            return 500, status_body(500, message)
        if not covering:
            return None
        budget = self._with_status(namespace, covering[0])
        status, spec = budget["status"], budget["spec"]
        if not _healthy(pod):
            if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
                return None
            if status["currentHealthy"] >= status["desiredHealthy"] > 0:
                return None
        if status["disruptionsAllowed"] > 0:
            return None
        budget_name = budget["metadata"]["name"]
        body = status_body(429, "Cannot evict pod as it would violate the pod's disruption budget.")
        cause = (
            f"The disruption budget {budget_name} needs {status['desiredHealthy']} healthy pods "
            f"and has {status['currentHealthy']} currently"
        )
        body["details"] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
        return 429, body

    def _with_status(self, namespace: str, budget: Budget) -> Budget:
        """The budget with the status the disruption controller would give it now."""
        pods = [p for p in self._pods.pods(namespace) if _selects(budget, p)]
        spec = budget["spec"]
        expected, desired = _expected_and_desired(spec, pods)
        healthy = sum(1 for p in pods if _healthy(p))
        allowed = healthy - desired if expected > 0 else 0
        result = copy.deepcopy(budget)
        result["status"] = {
            "observedGeneration": budget["metadata"]["generation"],
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": max(allowed, 0),
        }
        return result


def _admitted(body: Any) -> Budget:
    """A copy of the budget as the server validates it: a name, a matchLabels selector, one of the two fields."""
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise KubeError(400, "the request body must be a PodDisruptionBudget object with metadata")
    budget: Budget = copy.deepcopy(body)
    meta = {k: v for k, v in budget["metadata"].items() if k not in ("uid", "creationTimestamp", "resourceVersion")}
    if not meta.get("name"):
        raise KubeError(422, "PodDisruptionBudget is invalid: metadata.name: Required value: name is required")
    spec: dict[str, Any] = budget["spec"] if isinstance(budget.get("spec"), dict) else {}
    if all(spec.get(f) is not None for f in _FIELDS):
        raise KubeError(422, "PodDisruptionBudget is invalid: spec: minAvailable and maxUnavailable cannot be both set")
    selector = spec.get("selector") or {}
    if set(selector) - {"matchLabels"}:
        raise KubeError(400, "the stand-in serves budgets with a matchLabels selector only")
    budget.update(apiVersion="policy/v1", kind="PodDisruptionBudget", metadata=meta, spec=spec)
    budget.pop("status", None)
    return budget


def _selects(budget: Budget, pod: Pod) -> bool:
    """policy/v1: an empty selector selects every pod of the namespace."""
    return selected(pod, (budget["spec"].get("selector") or {}).get("matchLabels") or {})


def _ignores_budgets(pod: Pod) -> bool:
    """A pod that is not running, or already going, is deleted whatever the budgets say."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Pending", "Succeeded", "Failed") or bool(pod["metadata"].get("deletionTimestamp"))


def _healthy(pod: Pod) -> bool:
    """Running, not being deleted, and not marked unready (the stand-in has no kubelet to set Ready)."""
    status = pod.get("status") or {}
    unready = any(c.get("type") == "Ready" and c.get("status") != "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp") and not unready


def _controlled(pods: list[Pod]) -> int:
    """Pods with a controller: each controller's scale, taken as the pods it has here."""
    return sum(1 for p in pods if any(r.get("controller") for r in p["metadata"].get("ownerReferences") or []))


def _scaled(value: Any, total: int) -> int:
    """An int, or a percentage of `total` rounded up, as the controller scales it."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _expected_and_desired(spec: Mapping[str, Any], pods: list[Pod]) -> tuple[int, int]:
    if spec.get("maxUnavailable") is not None:
        expected = _controlled(pods)
        return expected, max(expected - _scaled(spec["maxUnavailable"], expected), 0)
    minimum = spec.get("minAvailable")
    if minimum is None:
        return 0, 0  # neither field: the controller expects nothing, and allows nothing
    if isinstance(minimum, str):
        expected = _controlled(pods)
        return expected, _scaled(minimum, expected)
    return len(pods), int(minimum)
