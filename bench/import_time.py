"""Import time of each function's module, next to baselines measured in the same run.

Each import runs in a fresh interpreter (a cold start imports everything once), five times; the
median is printed. Baselines: `import boto3` (what any Python Lambda that calls AWS pays) and
`import kubernetes` (what the API functions avoid by never importing it).

    make bench            # or, from the repository root: .venv/bin/python -m bench.import_time
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5
PROBE = """
import json, sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
print(json.dumps({{"s": elapsed, "kubernetes": "kubernetes" in sys.modules}}))
"""


def measure(module: str) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/podslots'}{os.pathsep}{ROOT}"}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["POWERTOOLS_TRACE_DISABLED"] = "true"
    samples, loads_kube = [], False
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=ROOT,
        ).stdout
        answer = json.loads(out.strip().splitlines()[-1])
        samples.append(answer["s"])
        loads_kube = answer["kubernetes"]
    return statistics.median(samples), loads_kube


def main() -> None:
    baseline, _ = measure("boto3")
    kube, _ = measure("kubernetes")
    print(f"import time, median of {RUNS} fresh interpreters ({sys.version.split()[0]})")
    print(f"{'module':32} {'ms':>8} {'x boto3':>8}  imports kubernetes")
    print(f"{'boto3 (baseline)':32} {baseline * 1000:8.1f} {1.0:8.2f}")
    print(f"{'kubernetes (avoided)':32} {kube * 1000:8.1f} {kube / baseline:8.2f}")
    for name in ("allocate", "task_status", "heartbeat", "pools", "expire", "reconcile", "autoscale"):
        seconds, loads_kube = measure(f"functions.{name}.app")
        print(f"{'functions.' + name + '.app':32} {seconds * 1000:8.1f} {seconds / baseline:8.2f}  {loads_kube}")


if __name__ == "__main__":
    main()
