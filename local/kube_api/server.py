"""`KubeApiStandIn`: a Kubernetes API server for namespaced core/v1 pods, on 127.0.0.1, real HTTP.

It serves what podslots' gateway (podslots/cluster.py) calls, paged LIST by label, create, delete
with a uid precondition, merge patch, policy/v1 PodDisruptionBudgets (create, get, list, delete)
and the pods/eviction subresource that honours them (429 while a budget allows no disruption),
and what `kubectl get pods -w` (and `-A`: a LIST or watch of every namespace) and the client's
dynamic client need on top: discovery, watches and the Table view. Tests arrange faults on the next
calls of a verb and count the requests that arrived:

    with KubeApiStandIn() as kube:
        api_client = kubernetes.config.new_client_from_config_dict(kube.kubeconfig())
        kubernetes.client.CoreV1Api(api_client).create_namespaced_pod("agents", {"metadata": {"name": "a"}})
        kube.set_phase("agents", "a", "Running")
        kube.fail_next(500, verb="list")
        kube.echo_authorization_next(401)  # an error answer that quotes the request's Authorization
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from .backend import Backend
from .budgets import Budget
from .faults import DropConnection, EchoAuthorization, ErrorStatus, SlowAnswer
from .handler import Handler
from .store import Clock, Pod, utc_now


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so stop() can cut the idle keep-alive ones."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[Handler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (timeouts, dropped connections) is expected


class KubeApiStandIn:
    """Start it with `with` or start(); `token`, if set, is the one bearer token accepted (else 401)."""

    def __init__(self, *, token: str | None = None, clock: Clock = utc_now) -> None:
        self._backend = Backend(token=token, clock=clock)
        self._store = self._backend.store
        self._budgets = self._backend.budgets
        self._faults = self._backend.faults
        self._stopping = self._backend.stopping
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopping.clear()
        self._store.open()
        handler = type("StandInHandler", (Handler,), {"backend": self._backend})
        self._server = _Server(("127.0.0.1", 0), handler)  # an ephemeral port: tests run side by side
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"kube-api-stand-in:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Watches end their streams first; then the server closes every connection."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        self._store.close()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def kubeconfig(self, namespace: str = "agents", token: str | None = None) -> dict[str, Any]:
        """A kubeconfig for the client or kubectl; the token defaults to the stand-in's (or "test-token")."""
        name = "kube-api-stand-in"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": token or self.token or "test-token"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
            "current-context": name,
            "preferences": {},
        }

    @property
    def token(self) -> str | None:
        """The one bearer token accepted (None: any); a test may change it, as a rotated credential."""
        return self._backend.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._backend.token = value

    # ---- pods, from the test's side: what a kubelet or another client would do --------------

    def add_pod(self, namespace: str, manifest: Mapping[str, Any]) -> Pod:
        """Seed a pod without the API; a uid, status or creationTimestamp in it is kept."""
        return self._store.seed(namespace, manifest)

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._store.pod(namespace, name)

    def pods(self, namespace: str | None = None) -> list[Pod]:
        """The stored pods (of one namespace, or all), by name."""
        return self._store.pods(namespace)

    def pod_metadata(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored pods' metadata alone (of one namespace, or all), by name: cheaper than `pods`
        for a caller that reads names, labels and times (the day simulation, every step)."""
        return self._store.metadata(namespace)

    def set_phase(self, namespace: str, name: str, phase: str) -> Pod:
        return self._store.edit(namespace, name, lambda pod: pod.setdefault("status", {}).update(phase=phase))

    def set_pod_ip(self, namespace: str, name: str, ip: str) -> Pod:
        return self._store.edit(namespace, name, lambda pod: pod.setdefault("status", {}).update(podIP=ip))

    def set_container_state(
        self, namespace: str, name: str, container: str, state: Mapping[str, Any], *, init: bool = False
    ) -> Pod:
        """A container's state as its kubelet reports it: `{"running": {...}}`, `{"waiting": {"reason":
        ...}}` or `{"terminated": {"exitCode": ...}}`, in `containerStatuses` (or, for an init
        container such as a native sidecar, `initContainerStatuses`), replacing that container's entry."""
        key = "initContainerStatuses" if init else "containerStatuses"

        def edit(pod: Pod) -> None:
            statuses = [s for s in pod.setdefault("status", {}).get(key) or [] if s.get("name") != container]
            spec = pod.get("spec") or {}
            declared = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            image = next((c.get("image", "") for c in declared if c.get("name") == container), "")
            entry = {
                "name": container,
                "image": image,
                "imageID": "",
                "state": dict(state),
                "ready": "running" in state,
                "restartCount": 0,
            }
            pod["status"][key] = [*statuses, entry]

        return self._store.edit(namespace, name, edit)

    def set_ready(self, namespace: str, name: str, ready: bool) -> Pod:
        """The kubelet's Ready condition (a pod without one counts as ready once Running)."""
        condition = {"type": "Ready", "status": "True" if ready else "False"}
        return self._store.edit(
            namespace, name, lambda pod: pod.setdefault("status", {}).update(conditions=[condition])
        )

    def set_controller(self, namespace: str, name: str, kind: str, owner: str) -> Pod:
        """A controller (a ReplicaSet, a Job...) owns the pod: an owner reference with `controller: true`."""
        reference = {"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": f"uid-{owner}", "controller": True}
        return self._store.edit(namespace, name, lambda pod: pod["metadata"].update(ownerReferences=[reference]))

    def orphan(self, namespace: str, name: str) -> Pod:
        """Its owner was deleted with `--cascade=orphan`: the garbage collector drops the owner references."""
        return self._store.edit(namespace, name, lambda pod: pod["metadata"].pop("ownerReferences", None))

    def remove(self, namespace: str, name: str) -> Pod:
        """The pod vanishes, as if someone else deleted it."""
        return self._store.remove(namespace, name)

    def mark_deleting(self, namespace: str, name: str) -> Pod:
        """Someone else deleted the pod and it is terminating: its deletionTimestamp is set."""
        return self._store.terminate(namespace, name, graceful=False)

    def set_graceful_deletion(self, namespace: str, name: str) -> Pod:
        """A DELETE of this pod leaves it terminating (deletionTimestamp set) until `finish_deletion`."""
        return self._store.terminate(namespace, name, graceful=True)

    def finish_deletion(self, namespace: str, name: str) -> Pod:
        """The terminating pod's grace period is over: it goes."""
        return self._store.remove(namespace, name)

    def budgets(self, namespace: str | None = None) -> list[Budget]:
        """The PodDisruptionBudgets (of one namespace, or all), each with its status as of now."""
        return self._budgets.budgets(namespace)

    # ---- requests and faults -----------------------------------------------------------------

    def peak(self, verb: str) -> int:
        """The most requests of this verb ever in the server at once (arrived, not yet answered): how
        far a client's requests overlap, seen from the server, with no clock involved."""
        return self._backend.peak(verb)

    def authorizations(self) -> list[str]:
        """The `Authorization` headers received so far, in order (a request without one adds none)."""
        return self._backend.authorizations()

    def count(self, verb: str | None = None) -> int:
        """Requests received with this verb ("list", "watch", "discovery", ...), or in all."""
        calls = self._backend.calls()
        return calls.total() if verb is None else calls[verb]

    def calls(self) -> Counter[str]:
        """A copy of the requests received so far, by verb."""
        return self._backend.calls()

    def clear_requests(self) -> None:
        self._backend.clear_requests()

    def fail_next(self, status: int = 500, *, verb: str | None = None, times: int = 1) -> None:
        """The next `times` calls with this verb (None: any) answer `status` with a Status body."""
        self._faults.add(ErrorStatus(status), verb, times)

    def echo_authorization_next(self, status: int = 401, *, verb: str | None = None, times: int = 1) -> None:
        """The next `times` calls with this verb answer `status`, their Status message quoting the
        request's own `Authorization` header (what podslots must never log or store)."""
        self._faults.add(EchoAuthorization(status), verb, times)

    def slow_next(self, seconds: float, *, verb: str | None = None, times: int = 1) -> None:
        """The next `times` calls with this verb answer `seconds` late."""
        self._faults.add(SlowAnswer(seconds), verb, times)

    def drop_next(self, *, verb: str | None = None, times: int = 1) -> None:
        """The next `times` calls with this verb get their connection closed, unanswered."""
        self._faults.add(DropConnection(), verb, times)
