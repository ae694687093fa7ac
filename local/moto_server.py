"""moto's HTTP server with its request handling serialized, for tests that race real clients.

Why the lock: moto's threaded server checks a condition and applies the update in separate steps,
so two concurrent conditional writes can both succeed there, which DynamoDB never allows. One lock
around moto's WSGI dispatcher makes each request atomic, as each request is on DynamoDB, so a
race test tests podslots' conditions and not moto's missing isolation. Clients still run truly
concurrently: they race to be served, and interleave between requests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from local.table_faults import TableFaults

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


class SerializedDispatcher:
    """WSGI middleware: one request at a time through moto, a count of DynamoDB operations and of
    the items and bytes they read, and the table faults a test injects (`faults`)."""

    def __init__(self, app: Wsgi) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()
        self.items_read: Counter[str] = Counter()
        self.bytes_read: Counter[str] = Counter()
        self.faults = TableFaults()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rsplit(".", 1)[-1]
        with self._lock:
            if not target:
                return list(self._app(environ, start_response))
            self.operations[operation] += 1
            return self.faults.serve(operation, environ, start_response, self._moto)

    def _moto(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        # Consume the whole answer inside the lock: moto may build it lazily.
        answer = list(self._app(environ, start_response))
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        if operation in READS:
            body = b"".join(answer)
            self.bytes_read[operation] += len(body)
            try:
                parsed = json.loads(body or b"{}")
            except ValueError:
                parsed = {}
            self.items_read[operation] += int(parsed.get("Count", 1 if "Item" in parsed else 0))
        return answer


class MotoServer:
    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.dispatcher = SerializedDispatcher(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self.dispatcher, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.table: str | None = None  # the table a caller made on it, if any

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MotoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()
