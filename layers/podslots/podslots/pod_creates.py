"""Autoscale's creates: up to `CREATE_CONCURRENCY` pods at a time, each recorded before it is created.

Every item is put (and every result recorded) on the step's thread, one after another: only the
Kubernetes creates, the slow part, run side by side. A new create is sent only after its item is
in the table, so the table still knows every pod first (invariant 12).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from podslots.cluster_pods import Cluster, ClusterError, ClusterPod
from podslots.model import Pod, new_pod
from podslots.observability import logger
from podslots.podspec import pod_manifest
from podslots.ports import AutoscaleStore
from podslots.store import RegisteredPool, StoreConflict

CREATE_CONCURRENCY = 8  # pod creates of one step in flight at once (the API server's and the quota's sake)


@dataclass
class PodCreates:
    """One step's creates, and what became of them (`created`, `errors`)."""

    store: AutoscaleStore
    cluster: Cluster
    pool: RegisteredPool
    api_base_url: str
    now: int
    errors: list[str]
    name_for: Callable[[str], str]  # podspec.new_pod_name, passed by the step
    created: list[str] = field(default_factory=list)
    _unexpected: BaseException | None = None  # a create that failed other than as a ClusterError

    def run(self, count: int, revision: str) -> None:
        """Create `count` pods (the module's docstring says how). A failed create ends the step: its
        item is removed and `PodCreateFailed` recorded, no new create is sent, and the creates
        already sent are waited for and recorded. A put the table refuses (the pool is being
        deleted, or moved namespace) ends the step the same way, after the creates in flight are
        recorded.
        """
        with ThreadPoolExecutor(max_workers=min(count, CREATE_CONCURRENCY), thread_name_prefix="create") as workers:
            flying: dict[Future[ClusterPod], Pod] = {}
            left, stop = count, False
            refused: StoreConflict | None = None
            while flying or (left and not stop):
                while left and not stop and len(flying) < CREATE_CONCURRENCY:
                    left -= 1
                    try:
                        item = self._record_new_pod(revision)
                    except StoreConflict as exc:
                        refused, stop = exc, True
                        break
                    if item is not None:
                        manifest = pod_manifest(self.pool.name, item.name, self.pool.settings, self.api_base_url)
                        flying[workers.submit(self.cluster.create_pod, self.pool.settings.namespace, manifest)] = item
                if not flying:
                    continue
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: flying[f].name):
                    stop |= not self._settle(flying.pop(future), future)
        if refused is not None:
            raise refused
        if self._unexpected is not None:
            raise self._unexpected

    def _record_new_pod(self, revision: str) -> Pod | None:
        """The item first, so the table always knows every pod; only while the pool is not being
        deleted and still in the namespace read (a StoreConflict ends the step), so neither a DELETE
        nor a namespace change can miss this pod. None when the name was taken."""
        settings = self.pool.settings
        name = self.name_for(self.pool.name)
        item = new_pod(self.pool.name, name, settings.slots_per_pod, self.now, revision=revision)
        return item if self.store.put_pod(item, namespace=settings.namespace) else None

    def _settle(self, item: Pod, future: Future[ClusterPod]) -> bool:
        """Record one create's result; False when it failed (the step sends no new create)."""
        failure = future.exception()
        if failure is None:
            created = future.result()
            self.store.observe_pod(item, created.uid, created.pod_ip)
            self.created.append(item.name)
            return True
        if not isinstance(failure, ClusterError):
            self._unexpected = self._unexpected or failure  # raised once the creates in flight are recorded
            return False
        self.store.remove_idle_pod(item)
        self.errors.append(failure.message)
        detail = {"pod": item.name, "error": failure.message}
        self.store.add_event(self.pool.name, "PodCreateFailed", detail, self.now, item.name)
        logger.error("pod create failed; item removed", extra={"pool": self.pool.name, "pod": item.name})
        return False
