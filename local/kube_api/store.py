"""The stand-in's pods, their resource versions and the log of changes that watches read.

Plain data in and out; HTTP lives in handler.py. One condition guards everything, so tests,
request threads and watches can call in concurrently, and a change wakes every watch.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import KubeError

Pod = dict[str, Any]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Second-precision UTC with a 'Z', as in object metadata."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One change, as a watch sends it: ADDED, MODIFIED or DELETED, and the pod after it."""

    resource_version: int
    type: str
    namespace: str
    pod: Pod


def parse_selector(text: str | None) -> dict[str, str]:
    """An equality-based label selector (`a=b,c==d`), the only kind podslots sends."""
    wanted: dict[str, str] = {}
    for term in filter(None, (text or "").split(",")):
        key, equals, value = term.replace("==", "=").partition("=")
        if not equals or not key.strip() or "!" in key:
            raise KubeError(400, f"unable to parse requirement: {term!r} (the stand-in serves only key=value)")
        wanted[key.strip()] = value.strip()
    return wanted


def selected(pod: Pod, wanted: Mapping[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())


class PodStore:
    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self._changed = threading.Condition()
        self._pods: dict[tuple[str, str], Pod] = {}
        self._events: list[Event] = []  # every change, oldest first: a watch may start at any version
        self._resource_version = 0
        self._watches = 0
        self._closed = False
        self._graceful: set[tuple[str, str]] = set()  # pods a DELETE leaves terminating

    def _change(self, kind: str, namespace: str, pod: Pod) -> Pod:
        """Give the pod the next resource version, store or drop it, and wake the watches."""
        self._resource_version += 1
        pod["metadata"]["resourceVersion"] = str(self._resource_version)
        key = (namespace, pod["metadata"]["name"])
        if kind == "DELETED":
            del self._pods[key]
        else:
            self._pods[key] = pod
        self._events.append(Event(self._resource_version, kind, namespace, copy.deepcopy(pod)))
        self._changed.notify_all()
        return copy.deepcopy(pod)

    def _find(self, namespace: str, name: str) -> Pod:
        pod = self._pods.get((namespace, name))
        if pod is None:
            raise KubeError.not_found(name)
        return pod

    def _admit(self, namespace: str, manifest: Mapping[str, Any]) -> Pod:
        pod: Pod = copy.deepcopy(dict(manifest))
        meta = pod.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise KubeError(422, "Pod is invalid: metadata.name: Required value: name is required")
        if (namespace, name) in self._pods:
            raise KubeError(409, f'pods "{name}" already exists', "AlreadyExists", name)
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(self.clock()))
        pod.setdefault("status", {}).setdefault("phase", "Pending")
        return self._change("ADDED", namespace, pod)

    # ---- what the API serves -----------------------------------------------------------------

    def create(self, namespace: str, body: Any) -> Pod:
        """The server sets uid, timestamp and status itself, whatever the client sent."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise KubeError(400, "the request body must be a Pod object with metadata")
        meta = {k: v for k, v in body["metadata"].items() if k not in ("uid", "creationTimestamp")}
        with self._changed:
            return self._admit(namespace, {**body, "metadata": meta, "status": {}})

    def get(self, namespace: str, name: str) -> Pod:
        with self._changed:
            return copy.deepcopy(self._find(namespace, name))

    def list_pods(self, namespace: str | None, selector: str | None, limit: int, token: str | None) -> dict[str, Any]:
        """One page, by namespace and name (`namespace` None: every namespace); the continue token
        is the last pod sent, so paging never expires."""
        wanted = parse_selector(selector)
        after = _decode(token) if token else ""
        with self._changed:
            items = [
                copy.deepcopy(pod)
                for (ns, name), pod in sorted(self._pods.items())
                if namespace in (None, ns) and _place(ns, name, namespace) > after and selected(pod, wanted)
            ]
            metadata: dict[str, Any] = {"resourceVersion": str(self._resource_version)}
        if 0 < limit < len(items):
            items = items[:limit]
            last = items[-1]["metadata"]
            metadata["continue"] = base64.urlsafe_b64encode(
                _place(last["namespace"], last["name"], namespace).encode()
            ).decode()
        return {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items}

    def delete(self, namespace: str, name: str, options: Mapping[str, Any]) -> Pod:
        """Deletes at once, or, for a pod set to terminate gracefully, sets its deletionTimestamp
        (it goes when a test finishes the deletion); a `preconditions.uid` not the pod's is a 409."""
        with self._changed:
            pod = self._find(namespace, name)
            wanted = (options.get("preconditions") or {}).get("uid")
            if wanted is not None and wanted != pod["metadata"]["uid"]:
                message = (
                    f'Operation cannot be fulfilled on pods "{name}": Precondition failed: '
                    f"UID in precondition: {wanted}, UID in object meta: {pod['metadata']['uid']}"
                )
                raise KubeError(409, message, name=name)
            if (namespace, name) in self._graceful:
                return self._terminating(namespace, pod)
            return self._change("DELETED", namespace, pod)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold every pod still (the lock is re-entrant): an eviction judges and deletes as one step."""
        with self._changed:
            yield

    def _terminating(self, namespace: str, pod: Pod) -> Pod:
        if pod["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(pod)
        pod = copy.deepcopy(pod)
        pod["metadata"]["deletionTimestamp"] = rfc3339(self.clock())
        return self._change("MODIFIED", namespace, pod)

    def terminate(self, namespace: str, name: str, graceful: bool) -> Pod:
        """Mark the pod as being deleted now (graceful) or from its next DELETE on."""
        with self._changed:
            pod = self._find(namespace, name)
            self._graceful.add((namespace, name))
            return self._terminating(namespace, pod) if not graceful else copy.deepcopy(pod)

    def patch(self, namespace: str, name: str, patch: Any) -> Pod:
        """A merge patch; a patch that changes nothing keeps the resource version, as the server does.

        A patch that carries `metadata.resourceVersion` is an optimistic lock, as on the real API
        server: refused with 409 Conflict unless the pod is still at that version.
        """
        if not isinstance(patch, dict):
            raise KubeError(400, "a merge patch must be a JSON object")
        with self._changed:
            current = self._find(namespace, name)
            meta = patch.get("metadata")
            wanted = meta.get("resourceVersion") if isinstance(meta, dict) else None
            if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                )
                raise KubeError(409, message, name=name)
            result = merge_patch(current, patch)
            result["metadata"] = {**result.get("metadata", {}), **_identity(current)}
            if result == current:
                return copy.deepcopy(current)
            return self._change("MODIFIED", namespace, result)

    # ---- watches ---------------------------------------------------------------------------------

    def watch_start(self, namespace: str | None, selector: str | None, since: int | None) -> tuple[int, list[Event]]:
        """Where a watch starts: after `since`, or (none given, or 0) after ADDED for every pod now."""
        wanted = parse_selector(selector)
        with self._changed:
            if since:
                return since, []
            current = [
                Event(self._resource_version, "ADDED", ns, copy.deepcopy(pod))
                for (ns, _), pod in sorted(self._pods.items())
                if namespace in (None, ns) and selected(pod, wanted)
            ]
            return self._resource_version, current

    def events_after(
        self, namespace: str | None, selector: str | None, after: int, timeout: float | None
    ) -> tuple[int, list[Event]] | None:
        """Changes after `after`, waiting up to `timeout` for one; None when none came or the store closed."""
        wanted = parse_selector(selector)
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._resource_version > after, timeout)
            if self._closed or self._resource_version <= after:
                return None
            start = bisect.bisect_right(self._events, after, key=lambda event: event.resource_version)
            return self._resource_version, [
                event
                for event in self._events[start:]
                if namespace in (None, event.namespace) and selected(event.pod, wanted)
            ]

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Counts a running watch, so close() can wait for each to end its stream."""
        with self._changed:
            self._watches += 1
        try:
            yield
        finally:
            with self._changed:
                self._watches -= 1
                self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._closed = False

    def close(self, wait_s: float = 2.0) -> None:
        """End every watch (each sends its last chunk), waiting up to `wait_s` for them."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._watches == 0, wait_s)

    # ---- the test's side: what a kubelet or another client would do -------------------------

    def seed(self, namespace: str, manifest: Mapping[str, Any]) -> Pod:
        """Add a pod as given: a uid, status or creationTimestamp in it is kept."""
        with self._changed:
            return self._admit(namespace, manifest)

    def edit(self, namespace: str, name: str, change: Callable[[Pod], None]) -> Pod:
        with self._changed:
            pod = copy.deepcopy(self._find(namespace, name))
            change(pod)
            return self._change("MODIFIED", namespace, pod)

    def remove(self, namespace: str, name: str) -> Pod:
        with self._changed:
            return self._change("DELETED", namespace, self._find(namespace, name))

    def pod(self, namespace: str, name: str) -> Pod | None:
        with self._changed:
            pod = self._pods.get((namespace, name))
            return copy.deepcopy(pod) if pod is not None else None

    def pods(self, namespace: str | None) -> list[Pod]:
        with self._changed:
            return [copy.deepcopy(pod) for (ns, _), pod in sorted(self._pods.items()) if namespace in (None, ns)]

    def metadata(self, namespace: str | None) -> list[dict[str, Any]]:
        """Each stored pod's `metadata` alone (a copy), by name: what a watcher that counts pods reads,
        without copying their specs."""
        with self._changed:
            return [
                copy.deepcopy(pod["metadata"]) for (ns, _), pod in sorted(self._pods.items()) if namespace in (None, ns)
            ]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _identity(pod: Pod) -> dict[str, Any]:
    """The metadata a patch cannot change."""
    meta = pod["metadata"]
    return {k: meta[k] for k in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion") if k in meta}


def _place(namespace: str, name: str, listed: str | None) -> str:
    """Where a pod sorts in a LIST: by name in one namespace; by namespace, then name, in every one
    (joined by a NUL, below every character a name may hold, so strings sort as the pairs do)."""
    return name if listed is not None else f"{namespace}\0{name}"


def _decode(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise KubeError(400, "continue key is not valid") from None
