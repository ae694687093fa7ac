"""`make local`: the embedded stack served on 127.0.0.1, until stopped.

Every route of `template.yaml` answers at http://127.0.0.1:3000/v1/..., each request turned into
the API Gateway proxy event the real handler gets. The template's schedules run on a clock that
goes `--speed` times faster than real time, bus events reach the functions whose rules match, and,
on the embedded cluster, simulated agents start the pods autoscale creates and beat for them.
`--kubeconfig PATH` points the stack at a real cluster instead (no simulated agents then).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.apigw import proxy_event
from local.routes import match
from local.stack import NAMESPACE, Context, Stack


class ScaledClock:
    """Real time, `speed` times faster, from the moment it starts."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin = time.time()

    def now(self) -> float:
        return self._origin + (time.time() - self._origin) * self.speed


def serve(stack: Stack, host: str, port: int, stage: str, agents: bool) -> LocalServer:
    lock = threading.Lock()  # one request at a time through the handlers, as one Lambda instance would

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def __getattr__(self, name: str) -> Any:
            # Any other method (PATCH, TRACE, ...) gets what API Gateway answers, not a 501.
            if name.startswith("do_"):
                return self._answer
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

        def _answer(self) -> None:
            try:
                self._route()
            except Exception as exc:  # what Lambda would turn into a 502: show it, never hang up
                traceback.print_exc()
                self._send(502, {"message": "Internal server error", "error": repr(exc)})

        def _route(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            prefix = f"/{stage}"
            found = match(self.command, path[len(prefix) :]) if path.startswith(prefix + "/") else None
            if found is None:
                # What API Gateway answers, through the template's DEFAULT_4XX gateway response.
                self._send(403, {"error": "MISSING_AUTHENTICATION_TOKEN", "message": "Missing Authentication Token"})
                return
            route, params = found
            raw_length = self.headers.get("Content-Length") or "0"
            if not raw_length.isascii() or not raw_length.isdigit():
                self._send(400, {"error": "BAD_REQUEST_BODY", "message": "Content-Length is not a number"})
                return
            length = int(raw_length)
            body = self.rfile.read(length).decode("utf-8", errors="replace") if length else None
            event = proxy_event(
                self.command,
                route.path,
                params,
                raw_body=body,
                query=dict(parse_qsl(url.query)) or None,
                content_type=self.headers.get("Content-Type"),
                stage=stage,
            )
            with lock:
                raw = route.module().lambda_handler(event, Context())
                stack.deliver_events()
            headers = dict(raw.get("headers") or {})
            for key, values in (raw.get("multiValueHeaders") or {}).items():
                headers.setdefault(key, values[-1])
            self._send(raw["statusCode"], raw.get("body") or "", headers)

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = LocalServer((host, port), Handler)

    def background() -> None:
        beats: dict[str, float] = {}
        while not server.stopping.wait(1):
            with lock:
                try:
                    stack.run_due_schedules()
                    if agents:
                        _agents(stack, beats)
                except Exception:  # a scheduled run failing is shown, and the next one still runs
                    traceback.print_exc()

    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.background = threading.Thread(target=background, daemon=True)
    server.background.start()
    return server


class LocalServer(ThreadingHTTPServer):
    """The HTTP server, and the schedule thread that must stop with it (before the stack goes)."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self.background: threading.Thread | None = None

    def shutdown(self) -> None:
        self.stopping.set()
        if self.background is not None:
            self.background.join()
        super().shutdown()
        self.server_close()


def _agents(stack: Stack, beats: dict[str, float], startup_s: float = 20, every_s: float = 30) -> None:
    """Simulated agents: a pod runs `startup_s` after it was created, then beats every `every_s`
    listing the tasks its slots hold (it runs them until the caller reports their status)."""
    from datetime import datetime

    now = stack.clock.now()
    for pod in stack.kube.pods(NAMESPACE):
        meta = pod["metadata"]
        name, pool = meta["name"], (meta.get("labels") or {}).get("podslots.io/pool")
        if not pool or meta.get("deletionTimestamp"):
            continue
        created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00")).timestamp()
        if (pod.get("status") or {}).get("phase") == "Pending" and now - created >= startup_s:
            stack.kube.set_phase(NAMESPACE, name, "Running")
            stack.kube.set_pod_ip(NAMESPACE, name, f"10.42.{len(beats) // 250}.{len(beats) % 250 + 2}")
        if (stack.kube.pod(NAMESPACE, name) or {}).get("status", {}).get("phase") != "Running":
            continue
        if now - beats.get(name, 0) < every_s:
            continue
        view = stack.call("GET", "/pools/{pool}", pool=pool).body or {}
        held = [s["task_id"] for p in view.get("pods", []) if p["pod"] == name for s in p["slots"] if s.get("task_id")]
        stack.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", {"held_tasks": held}, pool=pool, pod=name)
        beats[name] = now


def main() -> None:
    parser = argparse.ArgumentParser(description="podslots on 127.0.0.1, on an embedded DynamoDB and cluster")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--speed", type=float, default=1.0, help="how much faster than real time the schedules run")
    parser.add_argument(
        "--kubeconfig", help="a real cluster's kubeconfig (kind, minikube, EKS) instead of the embedded one"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "No application metrics to publish")
    stack = Stack(ScaledClock(args.speed), kubeconfig_path=args.kubeconfig)
    with stack:
        server = serve(stack, "127.0.0.1", args.port, "v1", agents=args.kubeconfig is None)
        base = f"http://127.0.0.1:{args.port}/v1"
        print(
            f"podslots serves {base} (auth: none locally, and every request is a session of the task queue's "
            "role, so every task is that role's; the deployed API uses IAM)"
        )
        if args.kubeconfig is None:  # so a person can watch the embedded cluster's pods
            kubeconfig = Path(__file__).resolve().parent.parent / ".local" / "kubeconfig"
            kubeconfig.parent.mkdir(exist_ok=True)
            kubeconfig.write_text(json.dumps(stack.kube.kubeconfig(NAMESPACE)), encoding="utf-8")
            print(f"the embedded cluster's pods: kubectl --kubeconfig {kubeconfig} get pods -n {NAMESPACE} -w")
        print(f"""try:
  curl -X PUT {base}/pools/demo -H 'Content-Type: application/json' -d '{{"pod_template": {{"image": "tf-agent:1.9"}}}}'
  curl -X POST {base}/pools/demo/allocations -H 'Content-Type: application/json' \\
       -d '{{"task_id": "run-1", "task_type": "plan"}}'
  curl {base}/pools/demo          # the 503 woke autoscale; a pod starts in 20 s, then the allocation succeeds
  curl -X PUT {base}/tasks/run-1/status -H 'Content-Type: application/json' -d '{{"status": "success"}}'
  curl -X PUT {base}/pools/demo -H 'Content-Type: application/json' \
       -d '{{"pod_template": {{"image": "tf-agent:1.10"}}}}'
  curl {base}/pools/demo          # "rollout": the pods of tf-agent:1.9 are replaced, busy-safe
  curl -X POST {base}/pools/demo/pods/POD/cordon     # one pod out of service; DELETE takes it back
Ctrl-C stops it.""")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()


if __name__ == "__main__":
    main()
