"""`KubeApiStandIn`: a small Kubernetes API server for namespaced core/v1 pods.

It speaks real HTTP/1.1 and JSON on 127.0.0.1, so the official `kubernetes`
client talks to it unchanged:

    with KubeApiStandIn() as kube:
        api_client = kubernetes.config.new_client_from_config_dict(kube.kubeconfig())
        core = kubernetes.client.CoreV1Api(api_client)
        core.create_namespaced_pod("agents", {"metadata": {"name": "a"}})
        kube.set_phase("agents", "a", "Running")

Routes: POST/GET .../namespaces/{ns}/pods (create, list) and GET/PATCH/DELETE
.../namespaces/{ns}/pods/{name}. Another method on those paths is a 405, any
other path a 404, each with a Kubernetes `Status` body.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import KubeError, status_body
from .faults import (
    ApiCall,
    DropConnection,
    ErrorStatus,
    Fault,
    FaultBook,
    FaultRule,
    SlowAnswer,
)
from .store import Clock, Pod, PodStore, rfc3339, utc_now

_COLLECTION = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/?")
_ITEM = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)")
_VERBS = {
    "collection": {"GET": "list", "POST": "create"},
    "item": {"GET": "get", "PATCH": "patch", "DELETE": "delete"},
}


def _route(method: str, path: str) -> tuple[str, str | None, str | None]:
    """(verb, namespace, name) of a request; verb "unknown" when not served."""
    if m := _ITEM.fullmatch(path):
        verb = _VERBS["item"].get(method, "unknown")
        return verb, unquote(m["ns"]), unquote(m["name"])
    if m := _COLLECTION.fullmatch(path):
        return _VERBS["collection"].get(method, "unknown"), unquote(m["ns"]), None
    return "unknown", None, None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, stand_in: KubeApiStandIn, host: str, port: int) -> None:
        self.stand_in = stand_in
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

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
            with contextlib.suppress(OSError):  # Already closed by the client.
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeouts, dropped connections) is expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # Headers and body go out at once: no 40 ms stalls.
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Quiet: tests read `KubeApiStandIn.requests` instead.

    def _handle(self) -> None:
        stand_in = self.server.stand_in
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        verb, namespace, name = _route(self.command, url.path)
        content_type = self.headers.get("Content-Type")
        call = ApiCall(self.command, url.path, query, verb, content_type)
        stand_in._record(call)

        fault = stand_in._faults.take(call)
        if isinstance(fault, DropConnection):
            self.close_connection = True
            return
        if isinstance(fault, SlowAnswer) and stand_in._stopping.wait(fault.seconds):
            self.close_connection = True  # Shutting down: do not answer at all.
            return
        if isinstance(fault, ErrorStatus):
            self._fault_answer(fault)
            return

        try:
            stand_in._check_token(self.headers.get("Authorization"))
            code, body = self._dispatch(call, namespace, name, raw_body)
        except KubeError as error:
            code, body = error.code, error.body()
        except Exception as error:  # A bug in the stand-in: say so, loudly.
            code, body = 500, status_body(500, f"stand-in error: {error!r}")
        self._send(code, body)

    def _dispatch(
        self, call: ApiCall, namespace: str | None, name: str | None, raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        store, query = self.server.stand_in._store, call.query
        if namespace is None:
            raise KubeError(404, "the server could not find the requested resource")
        if call.verb == "unknown":
            raise KubeError(405, f"the server does not allow this method: {call.method}")
        body = _json(raw_body)
        if call.verb == "create":
            return 201, store.create(namespace, body)
        if call.verb == "list":
            if query.get("watch") in ("true", "1"):
                raise KubeError.bad_request("the stand-in does not serve watches")
            return 200, store.list_pods(
                namespace,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                limit=_int(query.get("limit"), "limit"),
                continue_token=query.get("continue"),
            )
        assert name is not None
        if call.verb == "get":
            return 200, store.get(namespace, name)
        if call.verb == "patch":
            return 200, store.patch(namespace, name, call.content_type or "", body)
        options = dict(body) if isinstance(body, dict) else {}
        if "gracePeriodSeconds" in query:
            grace = _int(query["gracePeriodSeconds"], "gracePeriodSeconds")
            options["gracePeriodSeconds"] = grace
        return 200, store.delete(namespace, name, options)

    def _fault_answer(self, fault: ErrorStatus) -> None:
        message = fault.message or f"injected fault: HTTP {fault.status}"
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        self._send(fault.status, status_body(fault.status, message), headers)

    def _send(
        self,
        code: int,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # The client gave up waiting.


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise KubeError.bad_request(f"the request body is not JSON: {error}") from None


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise KubeError.bad_request(f"{name} must be an integer") from None


class KubeApiStandIn:
    """A Kubernetes API server stand-in for pods; start it with `with` or start()."""

    def __init__(
        self,
        *,
        token: str | None = None,
        clock: Clock = utc_now,
        graceful_deletion: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`token`: if set, requests need `Authorization: Bearer <token>` (else 401).
        `clock`: source of creation/deletion timestamps.
        `graceful_deletion`: if True, DELETE only marks pods (see finish_deletion).
        """
        self.token = token
        self._host, self._port = host, port
        self._store = PodStore(clock=clock, graceful_deletion=graceful_deletion)
        self._faults = FaultBook()
        self._calls: list[ApiCall] = []
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopping.clear()
        self._server = _Server(self, self._host, self._port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"kube-api-stand-in:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def kubeconfig(self, namespace: str = "agents", token: str | None = None) -> dict[str, Any]:
        """A kubeconfig dict for `kubernetes.config.new_client_from_config_dict`.

        The token defaults to the stand-in's own (or "test-token" if it has none).
        """
        name = "kube-api-stand-in"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": token or self.token or "test-token"}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": name, "user": name, "namespace": namespace},
                }
            ],
            "current-context": name,
            "preferences": {},
        }

    def _check_token(self, authorization: str | None) -> None:
        if self.token is not None and authorization != f"Bearer {self.token}":
            raise KubeError(401, "Unauthorized")

    # ---- pods, from the test's side ---------------------------------------

    @property
    def graceful_deletion(self) -> bool:
        """Default for every pod: DELETE marks it and waits for finish_deletion."""
        return self._store.graceful_deletion

    @graceful_deletion.setter
    def graceful_deletion(self, graceful: bool) -> None:
        self._store.graceful_deletion = graceful

    def set_graceful_deletion(self, namespace: str, name: str, graceful: bool = True) -> None:
        """Override graceful_deletion for one pod name (until that pod is gone)."""
        self._store.set_graceful(namespace, name, graceful)

    def add_pod(self, namespace: str, manifest: Mapping[str, Any]) -> Pod:
        """Seed a pod without the API; a given uid, status or timestamp is kept."""
        return self._store.seed(namespace, manifest)

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._store.get_or_none(namespace, name)

    def pods(self, namespace: str | None = None) -> list[Pod]:
        """A snapshot of the stored pods (one namespace, or all), by name."""
        return self._store.snapshot(namespace)

    def edit_pod(self, namespace: str, name: str, change: Callable[[Pod], None]) -> Pod:
        """Mutate a stored pod as a kubelet or controller would; bumps resourceVersion."""
        return self._store.edit(namespace, name, change)

    def set_phase(self, namespace: str, name: str, phase: str) -> Pod:
        def change(pod: Pod) -> None:
            pod.setdefault("status", {})["phase"] = phase

        return self.edit_pod(namespace, name, change)

    def set_pod_ip(self, namespace: str, name: str, ip: str | None) -> Pod:
        def change(pod: Pod) -> None:
            status = pod.setdefault("status", {})
            if ip is None:
                status.pop("podIP", None)
                status.pop("podIPs", None)
            else:
                status["podIP"], status["podIPs"] = ip, [{"ip": ip}]

        return self.edit_pod(namespace, name, change)

    def mark_deleting(self, namespace: str, name: str) -> Pod:
        """Set deletionTimestamp (now) as if someone else had deleted the pod."""
        now = rfc3339(self._store.clock())

        def change(pod: Pod) -> None:
            pod["metadata"]["deletionTimestamp"] = now

        return self.edit_pod(namespace, name, change)

    def finish_deletion(self, namespace: str, name: str) -> Pod:
        """Remove a pod that is being deleted (has a deletionTimestamp)."""
        return self._store.finish_deletion(namespace, name)

    def remove(self, namespace: str, name: str) -> Pod:
        """Make a pod vanish without going through the API."""
        return self._store.remove(namespace, name)

    def expire_continue_tokens(self) -> None:
        """Make every outstanding list `continue` token answer 410 Expired."""
        self._store.expire_continue_tokens()

    # ---- request accounting -----------------------------------------------

    def _record(self, call: ApiCall) -> None:
        with self._calls_lock:
            self._calls.append(call)

    @property
    def requests(self) -> list[ApiCall]:
        """Every request received so far, in order, faulted ones included."""
        with self._calls_lock:
            return list(self._calls)

    def count(self, verb: str | None = None, method: str | None = None, path: str | None = None) -> int:
        """How many requests had this verb ("list", ...), method and exact path."""
        return sum(
            1
            for call in self.requests
            if (verb is None or call.verb == verb)
            and (method is None or call.method == method.upper())
            and (path is None or call.path == path)
        )

    def clear_requests(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    # ---- faults -----------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        verb: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        """Apply `fault` to the next `times` calls matching verb, method and path
        glob (None for each: any; times=None: every call until clear_faults)."""
        return self._faults.add(FaultRule(fault, verb, method, path, times))

    def fail_next(
        self,
        status: int = 500,
        *,
        retry_after: int | None = None,
        verb: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        fault = ErrorStatus(status, retry_after)
        return self.inject(fault, verb=verb, method=method, path=path, times=times)

    def slow_next(
        self,
        seconds: float,
        *,
        verb: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        fault = SlowAnswer(seconds)
        return self.inject(fault, verb=verb, method=method, path=path, times=times)

    def drop_next(
        self,
        *,
        verb: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        fault = DropConnection()
        return self.inject(fault, verb=verb, method=method, path=path, times=times)

    def clear_faults(self) -> None:
        self._faults.clear()
