"""Fixtures for the client's tests: a scripted HTTP server (unit tests), and `make local`'s real
server on a free port (integration tests), with the helpers the tests on it share.

Only the tests touch the server code (`local`, `podslots`): the client package never imports it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from podslots_client import Agent, NoCapacity, PoolsClient, QueueClient

# ---- a scripted HTTP server -----------------------------------------------------------------------

DROP = "drop"  # a scripted "answer" that closes the connection without one


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Scripted:
    """Answers each request with the next scripted (status, body, headers), or drops it."""

    url: str
    answers: list[Any] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    otherwise: Any = (500, {"message": "nothing scripted"}, {})  # the answer once the script is spent
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def script(self, *answers: Any) -> None:
        self.answers.extend(answers)

    def record(self, request: Received) -> None:
        with self.arrived:
            self.received.append(request)
            self.arrived.notify_all()

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        """True once `count` requests have arrived; False if `timeout_s` passed first (no test hangs)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    state = Scripted(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.record(
                Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
            )
            answer = state.answers.pop(0) if state.answers else state.otherwise
            if answer == DROP:
                self.close_connection = True
                return
            status, body, headers = answer
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


ALLOCATION: dict[str, Any] = {
    "task_id": "run-1",
    "pool": "tf",
    "pod": "tf-a",
    "slot": "s0",
    "pod_ip": None,
    "status": "running",
}


def no_capacity(retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = {"error": "no_capacity", "message": "no ready pod", "retry_after_s": retry_after, "pool": "tf"}
    return 503, body, {"Retry-After": str(retry_after)}


class VirtualTime:
    """An injected sleep that moves an injected clock: waits are recorded, never slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class Hanging:
    """A server that accepts each connection and never answers, nor closes it."""

    url: str
    accepted: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the thread sees the test end (a close does not wake an accept)
    state = Hanging(url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
    over = threading.Event()

    def accept() -> None:
        while not over.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            state.accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield state
    over.set()
    thread.join()
    listener.close()
    for connection in state.accepted:
        connection.close()


# ---- make local's server ----------------------------------------------------------------------------


@dataclass
class LocalApi:
    """`make local`'s HTTP server on a virtual clock that moves only when a test moves it."""

    url: str
    stack: Any  # local.stack.Stack
    clock: Any  # podslots.clock.ManualClock

    def queue(self, **options: Any) -> QueueClient:
        return QueueClient(self.url, auth=None, **options)

    def pools(self) -> PoolsClient:
        return PoolsClient(self.url, auth=None)

    def manifest_env(self, pod: str) -> dict[str, str]:
        """The agent container's environment as Kubernetes would set it from the pod's manifest."""
        from local.stack import NAMESPACE

        manifest = self.stack.kube.pod(NAMESPACE, pod)
        env = {}
        for var in manifest["spec"]["containers"][0]["env"]:
            if "value" in var:
                env[var["name"]] = var["value"]
            elif var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
                env[var["name"]] = pod
        return env

    def starting_pod(self, pool: str) -> str:
        """A new pool's first pod: a refused allocation wakes autoscale, which creates it (`starting`)."""
        # no headroom: the waker's one pod, exactly (the packing rule would start one more)
        self.pools().put(pool, {"pod_template": {"image": "tf-agent:1.9"}, "headroom_pods": 0})
        with pytest.raises(NoCapacity):
            self.queue().allocate(pool, f"{pool}-waker", "plan", deadline_s=0)
        self.queue().set_status(f"{pool}-waker", "cancelled")
        (pod,) = self.pools().get(pool).pods
        return pod.pod

    def ready_pod(self, pool: str) -> tuple[str, str]:
        """(name, heartbeat URL) of a pool's pod, registered by its agent's first beat."""
        from local.stack import NAMESPACE

        pod = self.starting_pod(pool)
        self.stack.kube.set_phase(NAMESPACE, pod, "Running")
        url = self.manifest_env(pod)["PODSLOTS_HEARTBEAT_URL"]
        Agent(url, lambda: [], auth=None).beat()
        return pod, url


@pytest.fixture(scope="module")  # its moto mock must end before other modules run
def local_api() -> Iterator[LocalApi]:
    from local.serve import serve
    from local.stack import Stack, function_module

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    from podslots.clock import ManualClock

    clock = ManualClock()
    with Stack(clock) as stack:
        # The schedules' first runs (due at the clock's start) happen here, not at the server's
        # first tick a second later, in the middle of whichever test runs then (with pytest-xdist,
        # any test of this module may be the first its worker runs). After them, nothing is due
        # until a test moves the clock.
        stack.run_due_schedules()
        server = serve(stack, "127.0.0.1", 0, "v1", agents=False)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        # The pods' PODSLOTS_HEARTBEAT_URL must name this server (Stack's API_BASE_URL says :3000).
        autoscaler = function_module("AutoscaleFunction").autoscaler
        before, autoscaler.api_base_url = autoscaler.api_base_url, url
        try:
            yield LocalApi(url, stack, clock)
        finally:
            autoscaler.api_base_url = before
            server.shutdown()


def eventually(check: Callable[[], bool], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def sidecar(local_api: LocalApi, pod: str, tasks: Path) -> subprocess.Popen[str]:
    """`python -m podslots_client.agent` with the environment the pod's manifest gives it."""
    env = {**os.environ, **local_api.manifest_env(pod), "PODSLOTS_HELD_TASKS_DIR": str(tasks)}
    command = [sys.executable, "-m", "podslots_client.agent", "--no-sign", "--interval", "0.05"]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def first_line_with(process: subprocess.Popen[str], text: str) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        if text in line:
            return line
    raise AssertionError(f"the sidecar ended without logging {text!r}")
