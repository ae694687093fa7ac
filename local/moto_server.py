"""moto's HTTP server with its request handling serialized, for tests that race real clients.

Why the lock: moto's threaded server checks a condition and applies the update in separate steps,
so two concurrent conditional writes can both succeed there, which DynamoDB never allows. One lock
around moto's WSGI dispatcher makes each request atomic, as each request is on DynamoDB, so a
race test tests podslots' conditions and not moto's missing isolation. Clients still run truly
concurrently: they race to be served, and interleave between requests.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedDispatcher:
    """WSGI middleware: one request at a time through moto, and a count of DynamoDB operations."""

    def __init__(self, app: Wsgi) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        with self._lock:
            if target:
                self.operations[target.rsplit(".", 1)[-1]] += 1
            # Consume the whole answer inside the lock: moto may build it lazily.
            return list(self._app(environ, start_response))


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
