"""The Kubernetes gateway: the only module that calls the Kubernetes API (`KubeGateway`).

Each call has a timeout: list a pool's pods by label selector (all pages), create a pod, delete a
pod with a uid precondition (404 counts as done), patch annotations (and labels with them), claim
a pod for a pool (a merge patch conditional on the resource version that was listed), and
create or delete a pool's PodDisruptionBudget (409 and 404 count as done). Answers are read as
raw JSON into `ClusterPod` (no model deserialization: a 1,000-pod LIST stays cheap), and every API
failure becomes a `ClusterError` that says which call failed and why (both in `cluster_pods.py`,
with the `Cluster` port the steps are typed against).

Only `cluster_gateways.py` imports this module (a gateway per pool, for the reconcile and autoscale
handlers); the steps import `cluster_pods` and the API functions never load `kubernetes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

from kubernetes.client import ApiClient, CoreV1Api, PolicyV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from podslots.cluster_pods import (
    ClusterError,
    ClusterPod,
    disruption_budget,
    disruption_budget_name,
    label_selector,
    pool_selector,
)
from podslots.names import CLAIM_ANNOTATION

BUDGET_RECHECK_S = 600  # a remembered budget is created again (409: still there) after this long
PAGE_SIZE = 500
TIMEOUT_S = (3.0, 10.0)  # (connect, read) for every call

# The budgets this process has seen exist, per connection (a new kubeconfig forgets them), by
# (namespace, pool), with when: reconcile ensures a budget at most once per BUDGET_RECHECK_S.
_BUDGETS_SEEN: WeakKeyDictionary[ApiClient, dict[tuple[str, str], float]] = WeakKeyDictionary()


class KubeGateway:
    def __init__(self, api_client: ApiClient, timeout_s: tuple[float, float] = TIMEOUT_S) -> None:
        self._api = CoreV1Api(api_client)
        self._policy = PolicyV1Api(api_client)
        self._budgets_seen = _BUDGETS_SEEN.setdefault(api_client, {})
        self._timeout = timeout_s

    def list_pool_pods(
        self, namespace: str, pool: str, adopt_selector: Mapping[str, str] | None = None
    ) -> list[ClusterPod]:
        """Every pod labelled as this pool's: one label-selected LIST, followed over its pages.

        With `adopt_selector` (the pool adopts pods it did not create, e.g. a Deployment's), a
        second LIST by those labels; a pod both select is listed once.
        """
        pods = {p.name: p for p in self._list(namespace, pool_selector(pool))}
        if adopt_selector:
            for pod in self._list(namespace, label_selector(adopt_selector)):
                pods.setdefault(pod.name, pod)
        return list(pods.values())

    def _list(self, namespace: str, selector: str) -> list[ClusterPod]:
        pods: list[ClusterPod] = []
        token: str | None = None
        while True:
            page = self._json(
                "list pods",
                lambda token=token: self._api.list_namespaced_pod(
                    namespace,
                    label_selector=selector,
                    limit=PAGE_SIZE,
                    _continue=token,
                    _request_timeout=self._timeout,
                    _preload_content=False,
                ),
            )
            pods.extend(ClusterPod.from_json(item) for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return pods

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> ClusterPod:
        created = self._json(
            "create pod",
            lambda: self._api.create_namespaced_pod(
                namespace,
                manifest,  # type: ignore[arg-type]  # a plain manifest; the client sends it as JSON
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
        )
        return ClusterPod.from_json(created)

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete this pod and no other (uid precondition). False when it was already gone."""
        return self._sent(
            "delete pod",
            lambda: self._api.delete_namespaced_pod(
                name,
                namespace,
                body={"preconditions": {"uid": uid}},  # type: ignore[arg-type]
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
        )

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """A merge patch of metadata.annotations; None removes a key."""
        self._json(
            "patch pod",
            lambda: self._api.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"annotations": annotations}},
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
        )

    def patch_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> None:
        """One merge patch of labels and annotations (None removes a key): both change, or neither."""
        self._json(
            "patch pod",
            lambda: self._api.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"labels": labels, "annotations": annotations}},
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
        )

    def ensure_disruption_budget(self, namespace: str, pool: str, now: float) -> bool:
        """Create the pool's PodDisruptionBudget unless this connection saw it within BUDGET_RECHECK_S.

        A create, never a read first: 409 AlreadyExists counts as done, so a pool with busy pods
        costs one request per BUDGET_RECHECK_S, and a budget someone deleted comes back within it.
        True when a request was sent.
        """
        key = (namespace, pool)
        seen = self._budgets_seen.get(key)
        if seen is not None and 0 <= now - seen < BUDGET_RECHECK_S:
            return False
        try:
            self._json(
                "create poddisruptionbudget",
                lambda: self._policy.create_namespaced_pod_disruption_budget(
                    namespace,
                    disruption_budget(pool),  # type: ignore[arg-type]  # a plain manifest, sent as JSON
                    _request_timeout=self._timeout,
                    _preload_content=False,
                ),
            )
        except ClusterError as exc:
            if exc.status != 409:
                raise
        self._budgets_seen[key] = now
        return True

    def delete_disruption_budget(self, namespace: str, pool: str) -> bool:
        """Delete the pool's PodDisruptionBudget. False when it was already gone (404 counts as done)."""
        self._budgets_seen.pop((namespace, pool), None)
        return self._sent(
            "delete poddisruptionbudget",
            lambda: self._policy.delete_namespaced_pod_disruption_budget(
                disruption_budget_name(pool),
                namespace,
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
        )

    def claim_pod(self, namespace: str, pod: ClusterPod, pool: str) -> bool:
        """Annotate the pod as `pool`'s, only if it is still as listed: False when it changed since.

        A merge patch that carries `metadata.resourceVersion` is refused by the API server (409
        Conflict) unless the pod is still at that version, so of two pools claiming one pod from the
        same LIST exactly one wins; the other sees the winner's claim on its next LIST.
        """
        if not pod.resource_version:  # never an unconditional claim
            raise ClusterError("claim pod", "the LIST gave no resource version")
        patch = {"metadata": {"resourceVersion": pod.resource_version, "annotations": {CLAIM_ANNOTATION: pool}}}
        return self._sent(
            "claim pod",
            lambda: self._api.patch_namespaced_pod(
                pod.name,
                namespace,
                patch,
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
                _preload_content=False,
            ),
            refused=(404, 409),  # gone, or changed since the LIST: the next run sees it as it is
        )

    def _sent(self, call: str, request: Any, *, refused: tuple[int, ...] = (404,)) -> bool:
        """Send a call whose refusal with one of `refused` is an answer (already gone, changed since
        read), not a failure: True when it was applied, False when refused so."""
        try:
            self._json(call, request)
            return True
        except ClusterError as exc:
            if exc.status in refused:
                return False
            raise

    def _sent_secrets(self) -> tuple[str, ...]:
        """The bearer token this client sends (as the refresh hook last set it), to redact wherever
        an answer quotes it."""
        header = str(self._api.api_client.configuration.api_key.get("BearerToken") or "")
        return (header, header.removeprefix("Bearer ").strip())

    def _json(self, call: str, request: Any) -> dict[str, Any]:
        try:
            response = request()
        except ApiException as exc:
            # Not chained: the ApiException's text carries the answer's headers and body as sent.
            raise ClusterError(call, _reason(exc), exc.status, self._sent_secrets()) from None
        except (HTTPError, OSError) as exc:  # timeouts, refused or dropped connections
            raise ClusterError(call, type(exc).__name__) from exc
        try:
            answer: dict[str, Any] = json.loads(response.data)
        except ValueError as exc:
            raise ClusterError(call, "the answer is not JSON") from exc
        return answer


def _reason(exc: ApiException) -> str:
    """The API's own words (a Status object's reason and message), never the request; ClusterError
    scrubs them (a server, or a proxy in front of it, may echo what it was sent)."""
    try:
        status = json.loads(exc.body or "{}")
        return f"{exc.status} {status.get('reason', exc.reason)}: {status.get('message', '')}".strip(": ")
    except ValueError:
        return f"{exc.status} {exc.reason}"
