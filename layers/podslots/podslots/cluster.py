"""The Kubernetes gateway: the only module that talks to the Kubernetes API.

Each call has a timeout: list a pool's pods by label selector (all pages), create a pod, delete a
pod with a uid precondition (404 counts as done), patch annotations (and labels with them), claim
a pod for a pool (a merge patch conditional on the resource version that was listed), and
create or delete a pool's PodDisruptionBudget (409 and 404 count as done). Answers are read as
raw JSON into `ClusterPod` (no model deserialization: a 1,000-pod LIST stays cheap), and every API
failure becomes a `ClusterError` that says which call failed and why.

Only reconcile and autoscale import this module; the API functions never load `kubernetes`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from kubernetes.client import ApiClient, CoreV1Api, PolicyV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from podslots import names
from podslots.errors import PodSlotsError
from podslots.model import ADOPTED
from podslots.names import DNS_SUBDOMAIN, DNS_SUBDOMAIN_MAX, SLOTS_MAX, SLOTS_MIN, is_pool_name, is_revision
from podslots.scrub import scrub

# Defined in names.py, so that podspec (the manifest the pools function checks) needs no kubernetes.
POOL_LABEL = names.POOL_LABEL
MANAGED_BY_LABEL = names.MANAGED_BY_LABEL
MANAGED_BY = names.MANAGED_BY
SLOTS_ANNOTATION = names.SLOTS_ANNOTATION
REVISION_LABEL = names.REVISION_LABEL
# The pool that adopted a pod podslots did not make (reconcile's claim; docs/architecture.md, "Adoption").
CLAIM_ANNOTATION = "podslots.io/claimed-by"
# Node consolidation (Karpenter, cluster-autoscaler) may only take pods without these.
DO_NOT_DISRUPT: dict[str, str] = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
}
# While a pod holds a running or reserved slot it carries this label, valued with its pool's name (an
# adopted pod lacks the pool label, so the label names the pool itself); the pool's
# PodDisruptionBudget selects it, so the Eviction API (kubectl drain, node upgrades) waits for it.
BUSY_LABEL = "podslots.io/busy"
BUDGET_RECHECK_S = 600  # a remembered budget is created again (409: still there) after this long
UNREADABLE = "(unreadable)"  # an owner's name that is not one podslots could have written: never logged as sent
PAGE_SIZE = 500
TIMEOUT_S = (3.0, 10.0)  # (connect, read) for every call


class ClusterError(PodSlotsError):
    """A Kubernetes API call failed; `call` names it, `status` is the HTTP status if there was one.

    `reason` is partly the server's own words, so it is scrubbed here (cut, credential-like text and
    the exact `secrets` the call sent redacted): the message is safe to log, report and store.
    """

    code = "cluster_error"

    def __init__(self, call: str, reason: str, status: int | None = None, secrets: Iterable[str] = ()) -> None:
        reason = scrub(reason, secrets=secrets)
        super().__init__(f"kubernetes {call} failed: {reason}", call=call, status=status)
        self.call = call
        self.status = status


@dataclass(frozen=True)
class ClusterPod:
    name: str
    uid: str
    phase: str
    pod_ip: str | None
    deleting: bool
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""  # as listed: the claim's precondition
    controller: str | None = None  # `Kind/name` of the owner reference with `controller: true`

    @property
    def owner_pool(self) -> str | None:
        """The pool this pod belongs to, if any: the pool it was made for (its `podslots.io/pool`
        label), else the pool that claimed it on adoption. A pod belongs to at most one pool."""
        raw = self.labels.get(POOL_LABEL) or self.annotations.get(CLAIM_ANNOTATION) or None
        if raw is None:
            return None
        return raw if is_pool_name(raw) else UNREADABLE  # claimed all the same, by a name we do not repeat

    @property
    def finished(self) -> bool:
        """The agent process ended (restartPolicy Never): the pod will not run tasks again."""
        return self.phase in ("Failed", "Succeeded")

    @property
    def slots(self) -> int | None:
        """The slot count the pod was made with, if its annotation is one podslots could have written.

        ASCII digits only (`str.isdigit` accepts "²", which `int` refuses), within the settings'
        bounds: anything else is ignored and the pool's own slot count applies.
        """
        raw = self.annotations.get(SLOTS_ANNOTATION) or ""
        if not re.fullmatch(r"[0-9]{1,2}", raw):
            return None
        count = int(raw)
        return count if SLOTS_MIN <= count <= SLOTS_MAX else None

    @property
    def managed(self) -> bool:
        """Made by podslots (not a pod adopted from another controller)."""
        return self.labels.get(MANAGED_BY_LABEL) == MANAGED_BY

    @property
    def revision(self) -> str | None:
        """The template revision the pod was made from: its label, `adopted` for a pod podslots did
        not make (a roll-out replaces it), None for one made before revisions existed."""
        if not self.managed:
            return ADOPTED
        raw = self.labels.get(REVISION_LABEL) or ""
        return raw if is_revision(raw) else None

    @property
    def protected(self) -> bool:
        return all(self.annotations.get(k) == v for k, v in DO_NOT_DISRUPT.items())

    @property
    def unprotected(self) -> bool:
        return not any(k in self.annotations for k in DO_NOT_DISRUPT)

    @property
    def busy_label(self) -> str | None:
        """The pool whose disruption budget holds this pod (the busy label's value), if any."""
        return self.labels.get(BUSY_LABEL)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ClusterPod:
        meta = raw.get("metadata") or {}
        status = raw.get("status") or {}
        stamp = meta.get("creationTimestamp")
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            phase=status.get("phase", "Pending"),
            pod_ip=status.get("podIP") or None,
            deleting=meta.get("deletionTimestamp") is not None,
            created_at=created,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            resource_version=str(meta.get("resourceVersion") or ""),
            controller=_controller(meta.get("ownerReferences")),
        )


def _controller(references: Any) -> str | None:
    """The managing controller among a pod's owner references (`controller: true`; at most one)."""
    for ref in references if isinstance(references, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
            readable = re.fullmatch(r"[A-Z][A-Za-z0-9]{0,62}", kind) and re.fullmatch(DNS_SUBDOMAIN, name)
            return f"{kind}/{name}" if readable and len(name) <= DNS_SUBDOMAIN_MAX else UNREADABLE
    return None


class Cluster(Protocol):
    """What the steps need of a cluster (the gateway below, or a fake in a simulation)."""

    def list_pool_pods(
        self, namespace: str, pool: str, adopt_selector: Mapping[str, str] | None = None
    ) -> list[ClusterPod]: ...

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> ClusterPod: ...

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool: ...

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None: ...

    def patch_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> None: ...

    def ensure_disruption_budget(self, namespace: str, pool: str, now: float) -> bool: ...

    def delete_disruption_budget(self, namespace: str, pool: str) -> bool: ...

    def claim_pod(self, namespace: str, pod: ClusterPod, pool: str) -> bool: ...


def disruption_budget_name(pool: str) -> str:
    """`podslots-<pool>`: a pool name is a DNS label of at most 40 characters, so this is a valid name."""
    return f"podslots-{pool}"


def disruption_budget(pool: str) -> dict[str, Any]:
    """The pool's PodDisruptionBudget: no voluntary eviction of a pod while it carries the busy label.

    `maxUnavailable: 0` allows no disruption whatever the pods' controllers (a bare pod counts for
    none, so the budget expects none and allows none); `IfHealthyBudget` keeps an unready busy pod
    covered too (the API server's default, said here so nobody has to know it).
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": disruption_budget_name(pool),
            "labels": {POOL_LABEL: pool, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "maxUnavailable": 0,
            "selector": {"matchLabels": {BUSY_LABEL: pool}},
            "unhealthyPodEvictionPolicy": "IfHealthyBudget",
        },
    }


# The budgets this process has seen exist, per connection (a new kubeconfig forgets them), by
# (namespace, pool), with when: reconcile ensures a budget at most once per BUDGET_RECHECK_S.
_BUDGETS_SEEN: WeakKeyDictionary[ApiClient, dict[tuple[str, str], float]] = WeakKeyDictionary()


def pool_selector(pool: str) -> str:
    return f"{POOL_LABEL}={pool},{MANAGED_BY_LABEL}={MANAGED_BY}"


def label_selector(labels: Mapping[str, str]) -> str:
    """An equality selector; the settings' syntax rules keep `,` and `=` out of keys and values."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


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
