"""The stand-in's state: namespaced pods and the rules the API server applies.

Everything here is plain data in, plain data out; the HTTP layer lives in
server.py. Every method takes the one lock, so tests and request threads can
call them concurrently.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import KubeError
from .patches import apply_patch
from .selectors import parse_field_selector, parse_label_selector

Pod = dict[str, Any]
Clock = Callable[[], datetime]

DEFAULT_GRACE_SECONDS = 30
# Kubernetes' generateName alphabet: no vowels, no look-alike characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Second-precision UTC timestamp with a 'Z', as in object metadata."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Snapshot:
    """A list result kept for continue tokens, so paging is consistent."""

    id: str
    resource_version: str
    items: tuple[Pod, ...]


def _string_map(value: Any, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise KubeError.bad_request(f"{field} must be a map of strings to strings")


def _check_metadata(pod: Pod) -> dict[str, Any]:
    meta = pod.get("metadata")
    if not isinstance(meta, dict):
        raise KubeError.bad_request("metadata must be an object")
    _string_map(meta.get("labels"), "metadata.labels")
    _string_map(meta.get("annotations"), "metadata.annotations")
    return meta


class PodStore:
    def __init__(self, clock: Clock = utc_now, graceful_deletion: bool = False) -> None:
        self.clock = clock
        self.graceful_deletion = graceful_deletion
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], Pod] = {}
        self._graceful: dict[tuple[str, str], bool] = {}
        self._snapshots: dict[str, _Snapshot] = {}
        self._resource_version = 0
        self._random = random.Random()

    # ---- helpers (call with the lock held) ---------------------------------

    def _next_rv(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _find(self, namespace: str, name: str) -> Pod:
        pod = self._pods.get((namespace, name))
        if pod is None:
            raise KubeError.not_found(name)
        return pod

    def _generate_name(self, namespace: str, prefix: str) -> str:
        for _ in range(100):
            suffix = "".join(self._random.choices(_NAME_ALPHABET, k=5))
            if (namespace, prefix + suffix) not in self._pods:
                return prefix + suffix
        raise KubeError(500, f"could not generate a free name from {prefix!r}")

    def _admit(self, namespace: str, manifest: Mapping[str, Any], api: bool) -> Pod:
        """Validate a new pod and fill in the fields the server owns."""
        pod: Pod = copy.deepcopy(dict(manifest))
        pod.setdefault("metadata", {})
        meta = _check_metadata(pod)
        if meta.get("namespace") not in (None, "", namespace):
            raise KubeError.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise KubeError.invalid(
                    "Pod is invalid: metadata.name: Required value: name or generateName is required"
                )
            meta["name"] = self._generate_name(namespace, meta["generateName"])
        name = meta["name"]
        if (namespace, name) in self._pods:
            raise KubeError.already_exists(name)
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        meta["namespace"] = namespace
        if api or not meta.get("uid"):
            meta["uid"] = str(uuid.uuid4())
        if api or not meta.get("creationTimestamp"):
            meta["creationTimestamp"] = self._now()
        meta["resourceVersion"] = self._next_rv()
        if api:  # The API server ignores a client's status on create.
            meta.pop("deletionTimestamp", None)
            pod["status"] = {}
        pod.setdefault("status", {}).setdefault("phase", "Pending")
        self._pods[(namespace, name)] = pod
        return copy.deepcopy(pod)

    # ---- the API ----------------------------------------------------------

    def create(self, namespace: str, body: Any) -> Pod:
        if not isinstance(body, dict):
            raise KubeError.bad_request("the request body must be a Pod object")
        if body.get("kind", "Pod") != "Pod":
            raise KubeError.bad_request(f"expected kind Pod, got {body.get('kind')!r}")
        with self._lock:
            return self._admit(namespace, body, api=True)

    def get(self, namespace: str, name: str) -> Pod:
        with self._lock:
            return copy.deepcopy(self._find(namespace, name))

    def list_pods(
        self,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if continue_token:
                snapshot, start = self._resume(continue_token)
            else:
                labels = parse_label_selector(label_selector)
                fields = parse_field_selector(field_selector)
                items = tuple(
                    copy.deepcopy(pod)
                    for (ns, _), pod in sorted(self._pods.items())
                    if ns == namespace and labels.matches(pod["metadata"].get("labels")) and fields(pod)
                )
                rv = str(self._resource_version)
                snapshot, start = _Snapshot(uuid.uuid4().hex, rv, items), 0
            end = len(snapshot.items) if not limit or limit <= 0 else start + limit
            metadata: dict[str, Any] = {"resourceVersion": snapshot.resource_version}
            if end < len(snapshot.items):
                metadata["continue"] = self._continue_token(snapshot, end)
            return {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": metadata,
                "items": copy.deepcopy(list(snapshot.items[start:end])),
            }

    def _continue_token(self, snapshot: _Snapshot, offset: int) -> str:
        self._snapshots[snapshot.id] = snapshot
        raw = json.dumps({"rv": snapshot.resource_version, "id": snapshot.id, "at": offset})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _resume(self, token: str) -> tuple[_Snapshot, int]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            snapshot_id, offset = str(decoded["id"]), int(decoded["at"])
        except (binascii.Error, ValueError, KeyError, TypeError) as error:
            raise KubeError.bad_request(f"continue key is not valid: {error}") from None
        snapshot = self._snapshots.get(snapshot_id)
        if snapshot is None:
            raise KubeError(
                410,
                "The provided continue parameter is too old to display a consistent list result.",
            )
        return snapshot, offset

    def expire_continue_tokens(self) -> None:
        """Forget every list snapshot: resuming any earlier token is a 410."""
        with self._lock:
            self._snapshots.clear()

    def delete(self, namespace: str, name: str, options: Mapping[str, Any]) -> Pod:
        with self._lock:
            pod = self._find(namespace, name)
            meta = pod["metadata"]
            preconditions = options.get("preconditions") or {}
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field)
                if wanted is not None and wanted != meta.get(field):
                    raise KubeError.conflict(
                        name,
                        f"Precondition failed: {label} in precondition: {wanted}, "
                        f"{label} in object meta: {meta.get(field)}",
                    )
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(pod)  # Already going: deleting again is a no-op.
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                spec = pod.get("spec") or {}
                grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
            graceful = self._graceful.get((namespace, name), self.graceful_deletion)
            meta["resourceVersion"] = self._next_rv()
            if graceful and int(grace) > 0:
                deadline = self.clock() + timedelta(seconds=int(grace))
                meta["deletionTimestamp"] = rfc3339(deadline)
                meta["deletionGracePeriodSeconds"] = int(grace)
                return copy.deepcopy(pod)
            self._forget(namespace, name)
            return pod

    def patch(self, namespace: str, name: str, content_type: str, patch: Any) -> Pod:
        with self._lock:
            current = self._find(namespace, name)
            result = apply_patch(current, content_type, patch)
            meta = _check_metadata(result)
            old_meta = current["metadata"]
            for field in ("name", "namespace"):
                if meta.get(field, old_meta[field]) != old_meta[field]:
                    raise KubeError.bad_request(
                        f"metadata.{field} in the patch ({meta.get(field)}) does not "
                        f"match the one on the URL ({old_meta[field]})"
                    )
            for field in ("uid", "resourceVersion"):  # These act as preconditions.
                if meta.get(field, old_meta[field]) != old_meta[field]:
                    raise KubeError.conflict(
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    )
            for field in ("name", "namespace", "uid", "creationTimestamp"):
                meta[field] = old_meta[field]
            result["apiVersion"], result["kind"] = "v1", "Pod"
            meta["resourceVersion"] = old_meta["resourceVersion"]
            if result != current:  # A no-op patch keeps the resourceVersion.
                meta["resourceVersion"] = self._next_rv()
                self._pods[(namespace, name)] = result
            return copy.deepcopy(result)

    # ---- test-side controls -----------------------------------------------

    def seed(self, namespace: str, manifest: Mapping[str, Any]) -> Pod:
        """Add a pod as-is (status, uid and timestamps are kept if given)."""
        with self._lock:
            return self._admit(namespace, manifest, api=False)

    def edit(self, namespace: str, name: str, change: Callable[[Pod], None]) -> Pod:
        """Change a stored pod in place (like a kubelet would); bumps resourceVersion."""
        with self._lock:
            pod = self._find(namespace, name)
            edited = copy.deepcopy(pod)
            change(edited)
            _check_metadata(edited)
            edited["metadata"]["resourceVersion"] = self._next_rv()
            self._pods[(namespace, name)] = edited
            return copy.deepcopy(edited)

    def set_graceful(self, namespace: str, name: str, graceful: bool) -> None:
        with self._lock:
            self._graceful[(namespace, name)] = graceful

    def remove(self, namespace: str, name: str) -> Pod:
        with self._lock:
            self._find(namespace, name)
            return self._forget(namespace, name)

    def finish_deletion(self, namespace: str, name: str) -> Pod:
        with self._lock:
            pod = self._find(namespace, name)
            if not pod["metadata"].get("deletionTimestamp"):
                raise ValueError(f"pod {namespace}/{name} is not being deleted")
            return self._forget(namespace, name)

    def _forget(self, namespace: str, name: str) -> Pod:
        self._graceful.pop((namespace, name), None)
        return self._pods.pop((namespace, name))

    def get_or_none(self, namespace: str, name: str) -> Pod | None:
        with self._lock:
            pod = self._pods.get((namespace, name))
            return copy.deepcopy(pod) if pod is not None else None

    def snapshot(self, namespace: str | None = None) -> list[Pod]:
        with self._lock:
            return [
                copy.deepcopy(pod)
                for (ns, _), pod in sorted(self._pods.items())
                if namespace is None or ns == namespace
            ]
