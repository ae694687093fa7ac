"""HTTP for the stand-in: routes a request to a verb, applies faults, answers JSON or streams a watch."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .budgets import BudgetStore
from .discovery import discovery_document
from .errors import KubeError, status_body
from .faults import DropConnection, EchoAuthorization, ErrorStatus, SlowAnswer
from .store import Event
from .table import table, wants_table

if TYPE_CHECKING:
    from .backend import Backend

# A namespace's pods, or (no namespace: `kubectl get pods -A`) every namespace's, for LIST and watch.
_COLLECTION = re.compile(r"/api/v1(?:/namespaces/(?P<ns>[^/]+))?/pods/?")
_ITEM = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)")
_ITEM_VERBS = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}
_EVICTION = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/eviction")
_BUDGETS = re.compile(r"/apis/policy/v1/namespaces/(?P<ns>[^/]+)/poddisruptionbudgets(?:/(?P<name>[^/]+))?/?")
_BUDGET_VERBS = {("GET", False): "list", ("POST", False): "create", ("GET", True): "get", ("DELETE", True): "delete"}


def policy_route(method: str, path: str) -> tuple[str, str | None, str | None] | None:
    """Budgets (`budget-<verb>`) and evictions (`evict`), or None for a path of neither."""
    if m := _EVICTION.fullmatch(path):
        return ("evict" if method == "POST" else "unknown"), unquote(m["ns"]), unquote(m["name"])
    if m := _BUDGETS.fullmatch(path):
        name = unquote(m["name"]) if m["name"] else None
        verb = _BUDGET_VERBS.get((method, name is not None))
        return (f"budget-{verb}" if verb else "unknown"), unquote(m["ns"]), name
    return None


def route(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(verb, namespace, name) of a request; "unknown" for what is not served. A LIST or watch of
    every namespace has no namespace."""
    if policy := policy_route(method, path):
        return policy
    if m := _ITEM.fullmatch(path):
        return _ITEM_VERBS.get(method, "unknown"), unquote(m["ns"]), unquote(m["name"])
    if m := _COLLECTION.fullmatch(path):
        namespace = unquote(m["ns"]) if m["ns"] else None
        if method == "GET":
            return ("watch" if query.get("watch") in ("1", "true") else "list"), namespace, None
        return ("create" if method == "POST" and namespace else "unknown"), namespace, None
    if method == "GET" and discovery_document(path, "") is not None:
        return "discovery", None, None
    return "unknown", None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms stalls
    backend: Backend  # set on the subclass each server makes

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests count requests with KubeApiStandIn.count instead

    def _handle(self) -> None:
        backend, url = self.backend, urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        verb, namespace, name = route(self.command, url.path, query)
        backend.record(verb, self.headers.get("Authorization"))
        with backend.serving(verb):
            fault = backend.faults.take(verb)
            if isinstance(fault, DropConnection) or (
                isinstance(fault, SlowAnswer) and backend.stopping.wait(fault.seconds)  # stopping: no answer
            ):
                self.close_connection = True
                return
            if isinstance(fault, ErrorStatus):
                self._send(fault.status, status_body(fault.status, f"injected fault: HTTP {fault.status}"))
                return
            if isinstance(fault, EchoAuthorization):
                sent = self.headers.get("Authorization")
                self._send(
                    fault.status, status_body(fault.status, f"request refused; it carried Authorization: {sent}")
                )
                return

            try:
                backend.check_token(self.headers.get("Authorization"))
                if verb == "watch":
                    self._watch(namespace, query)
                    return
                if verb == "evict" or verb.startswith("budget-"):
                    assert namespace is not None
                    code, body = _policy(backend.budgets, verb, namespace, name, raw_body)
                else:
                    code, body = self._answer(verb, namespace, name, query, raw_body)
            except KubeError as error:
                code, body = error.code, error.body
            except Exception as error:  # a bug in the stand-in: say so, loudly
                code, body = 500, status_body(500, f"stand-in error: {error!r}")
            self._send(code, body)

    def _answer(
        self, verb: str, namespace: str | None, name: str | None, query: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        store = self.backend.store
        if verb == "discovery":
            document = discovery_document(urlsplit(self.path).path, self.headers.get("Host", ""))
            assert document is not None
            return 200, document
        if verb == "list":  # of one namespace, or (None) of every one
            listed = store.list_pods(
                namespace, query.get("labelSelector"), _int(query, "limit") or 0, query.get("continue")
            )
            return 200, self._as_table(listed["items"], listed["metadata"]) or listed
        if namespace is None:
            raise KubeError(404, "the server could not find the requested resource")
        if verb == "unknown":
            raise KubeError(405, f"the server does not allow this method: {self.command}")
        if verb == "create":
            return 201, store.create(namespace, _json(raw_body))
        assert name is not None
        if verb == "get":
            pod = store.get(namespace, name)
            return 200, self._as_table([pod], {"resourceVersion": pod["metadata"]["resourceVersion"]}) or pod
        if verb == "patch":
            if "merge-patch+json" not in (self.headers.get("Content-Type") or ""):
                raise KubeError(415, "the stand-in serves merge patches (and strategic ones, as merge patches)")
            return 200, store.patch(namespace, name, _json(raw_body))
        return 200, store.delete(namespace, name, _json(raw_body) or {})

    def _as_table(self, pods: list[Any], metadata: dict[str, Any]) -> dict[str, Any] | None:
        if not wants_table(self.headers.get("Accept")):
            return None
        return table(pods, metadata, self.backend.store.clock())

    def _watch(self, namespace: str | None, query: Mapping[str, str]) -> None:
        """A chunked stream of one JSON event a line, until timeoutSeconds or the server stops (of
        every namespace when `namespace` is None)."""
        store, selector = self.backend.store, query.get("labelSelector")
        after, events = store.watch_start(namespace, selector, _int(query, "resourceVersion"))
        timeout = _int(query, "timeoutSeconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        # The connection closes after the stream, and says so: without the header a client would
        # keep it for its next request, and lose that request when the close arrives first.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with store.watching():
            try:
                while True:
                    for event in events:
                        self._chunk(json.dumps(self._event(event)).encode() + b"\n")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    got = store.events_after(namespace, selector, after, remaining)
                    if got is None:
                        break
                    after, events = got
                self._chunk(b"")  # the last chunk: the stream ends cleanly
            except OSError:
                pass  # the client went away

    def _event(self, event: Event) -> dict[str, Any]:
        metadata = {"resourceVersion": str(event.resource_version)}
        return {"type": event.type, "object": self._as_table([event.pod], metadata) or event.pod}

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, code: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up waiting


def _policy(
    budgets: BudgetStore, verb: str, namespace: str, name: str | None, raw_body: bytes
) -> tuple[int, dict[str, Any]]:
    """An eviction, or a verb on budgets; `name` is set for every verb but list and create."""
    if verb == "budget-create":
        return 201, budgets.create(namespace, _json(raw_body))
    if verb == "budget-list":
        return 200, budgets.listed(namespace)
    assert name is not None
    if verb == "evict":
        return budgets.evict(namespace, name, _json(raw_body))
    if verb == "budget-get":
        return 200, budgets.get(namespace, name)
    return 200, budgets.delete(namespace, name)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError as error:
        raise KubeError(400, f"the request body is not JSON: {error}") from None


def _int(query: Mapping[str, str], name: str) -> int | None:
    try:
        return int(query[name]) if query.get(name) else None
    except ValueError:
        raise KubeError(400, f"{name} must be an integer") from None
