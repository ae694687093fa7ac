"""The pod's address at once: the time from a pod's registering beat to a non-null `pod_ip`, in the
local stack (the real handlers, the template's PodRegistered rule, the dispatcher, reconcile's FIFO
queue and its poller, the Kubernetes API stand-in), against what it was before the event: the next
minute's reconcile.

    .venv/bin/python -m bench.pod_address            # 20 pods
    .venv/bin/python -m bench.pod_address --pods 50

The local stack runs the event's chain in the beat's own request (EventBridge and SQS are emulated
in process), so the figure is the work of that chain on this machine: the beat, the PutEvents, the
dispatch, the SQS send and receive, and reconcile's LIST and write. Deployed, EventBridge's delivery,
SQS and two Lambda invocations add their own latency (typically under a second each when warm).
"""

from __future__ import annotations

import argparse
import statistics
import time

from local.stack import NAMESPACE, Stack
from podslots.clock import ManualClock


def registration_to_ip_ms(stack: Stack, pool: str) -> float:
    """Milliseconds from the agent's first beat to the pool's answer showing the pod's IP."""
    settings = {"pod_template": {"image": "tf-agent:1.9"}, "headroom_pods": 0}
    stack.call("PUT", "/pools/{pool}", settings, pool=pool)
    stack.call("POST", "/pools/{pool}/allocations", {"task_id": f"{pool}-waker", "task_type": "plan"}, pool=pool)
    stack.call("PUT", "/tasks/{task_id}/status", {"status": "cancelled"}, task_id=f"{pool}-waker")
    (pod,) = [p["pod"] for p in stack.call("GET", "/pools/{pool}", pool=pool).body["pods"]]
    stack.kube.set_phase(NAMESPACE, pod, "Running")
    stack.kube.set_pod_ip(NAMESPACE, pod, "10.42.0.9")
    started = time.perf_counter()
    stack.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", {"held_tasks": []}, pool=pool, pod=pod)
    if stack.call("GET", "/pools/{pool}", pool=pool).body["pods"][0]["pod_ip"] is None:
        raise SystemExit(f"{pool}: no pod_ip after the registering beat (the PodRegistered chain did not run)")
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    with Stack(ManualClock(1_800_000_000)) as stack:
        stack.run_due_schedules()  # the minute's runs happen first; the clock then stands still
        figures = [registration_to_ip_ms(stack, f"addr-{i}") for i in range(args.pods)]
    print(f"registration to pod_ip, {args.pods} pods, local stack (clock standing still, no schedule ran):")
    print(
        f"  median {statistics.median(figures):.0f} ms, p90 {sorted(figures)[int(0.9 * len(figures)) - 1]:.0f} ms,"
        f" max {max(figures):.0f} ms (before PodRegistered: up to the next minute's reconcile, 60 s)"
    )


if __name__ == "__main__":
    main()
