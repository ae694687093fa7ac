"""Cold start of each API function: import and initialisation of functions/<name>/app.py in a fresh
Python 3.13 process, as Lambda lays it out, next to a boto3-only handler that makes the same clients.

The layout: the function's folder (source only, nothing written: /var/task is read-only), then
PodSlotsLayer built by its own build module (layers/podslots/build.py) for this machine's platform
instead of manylinux aarch64, with its bytecode, then boto3/botocore (with s3transfer, jmespath)
from the venv standing in for the runtime's, after the layer as on Lambda. Nothing else: `-S -E -s`.
The environment is Lambda's, tracing on as the template's `Tracing: Active` has it (`--tracing off`
sets POWERTOOLS_TRACE_DISABLED).

Figures, medians of `--runs` interleaved rounds: `init` (the module's import: what Lambda's Init
phase runs), `+clients` (init, then the DynamoDB and EventBridge clients podslots builds on first
use; the baseline builds both at import), and peak memory (ru_maxrss). The baseline is measured in
the same rounds; ratios are against it.

    make bench          # or: .venv/bin/python -m bench.cold_start [--runs 20] [--tracing off]
    .venv/bin/python -m bench.cold_start --importtime allocate    # where allocate's import time goes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from layers.podslots import build as podslots_layer

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "layers" / "floor"
LAYER = WORK / "podslots" / "python"
RUNTIME = WORK / "runtime"
FUNCTIONS = ("allocate", "task_status", "heartbeat", "pools")
BASELINE = "boto3_only"
# What the Lambda python3.13 runtime ships and the layer leaves to it (build.py's step 2).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath")
BASELINE_APP = '''"""A boto3-only handler: the clients podslots uses, made at import."""
import boto3

dynamodb = boto3.client("dynamodb")
events = boto3.client("events")


def lambda_handler(event, context):
    return {"statusCode": 200, "body": "{}"}
'''
PROBE = """
import json, resource, sys, time
sys.path[:0] = sys.argv[1].split({sep!r})
began = time.perf_counter()
import app
init = time.perf_counter() - began
if sys.argv[2] != "baseline":
    from podslots.bus import EventBridgePublisher
    from podslots.store.transaction import SharedConnection
    SharedConnection().get()
    EventBridgePublisher().client
clients = time.perf_counter() - began
print(json.dumps({{"init": init, "clients": clients, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "xray": "aws_xray_sdk.core" in sys.modules, "kubernetes": any(m.startswith("kubernetes") for m in sys.modules)}}))
"""


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for base in paths:
        files = (
            sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if base.is_dir()
            else [base]
        )
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def build_layer(fresh: bool) -> Path:
    """PodSlotsLayer for this machine, rebuilt when its requirements, package or build code change."""
    sources = [
        ROOT / "layers" / "podslots",
        *(p for p in (ROOT / "layers" / "layer_build.py", ROOT / "layers" / "kube" / "strip.py") if p.exists()),
    ]
    key = _digest(sources)
    stamp = LAYER.parent / "key"
    if fresh or not stamp.exists() or stamp.read_text() != key:
        shutil.rmtree(LAYER.parent, ignore_errors=True)
        podslots_layer.build(LAYER, lambda_platform=False)
        stamp.write_text(key)
    return LAYER


def runtime_stand_in() -> Path:
    """boto3/botocore/s3transfer/jmespath of the venv, linked into a folder of their own."""
    import botocore

    site = Path(botocore.__file__).resolve().parents[1]
    shutil.rmtree(RUNTIME, ignore_errors=True)
    RUNTIME.mkdir(parents=True)
    for name in RUNTIME_PACKAGES:
        (RUNTIME / name).symlink_to(site / name, target_is_directory=True)
    return RUNTIME


def function_dirs() -> dict[str, Path]:
    """Each function's folder as /var/task holds it (source only), and the baseline's."""
    dirs = {}
    for name in FUNCTIONS:
        target = WORK / "functions" / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "functions" / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        dirs[name] = target
    baseline = WORK / "functions" / BASELINE
    shutil.rmtree(baseline, ignore_errors=True)
    baseline.mkdir(parents=True)
    (baseline / "app.py").write_text(BASELINE_APP)
    dirs[BASELINE] = baseline
    return dirs


def lambda_env(function: str, folder: Path, tracing: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": f"podslots-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "LAMBDA_TASK_ROOT": str(folder),
        "LAMBDA_RUNTIME_DIR": str(RUNTIME),
        "TABLE_NAME": "podslots-bench",
        "EVENT_BUS_NAME": "podslots-bench",
        "POWERTOOLS_SERVICE_NAME": f"podslots-{function}",
        "POWERTOOLS_METRICS_NAMESPACE": "PodSlots",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    if not tracing:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def probe(name: str, folder: Path, tracing: bool, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    paths = os.pathsep.join(str(p) for p in (folder, LAYER, RUNTIME))
    kind = "baseline" if name == BASELINE else "podslots"
    return subprocess.run(
        [sys.executable, "-S", "-E", "-s", "-B", *(extra or []), "-c", PROBE.format(sep=os.pathsep), paths, kind],
        capture_output=True,
        text=True,
        check=True,
        env=lambda_env(name, folder, tracing),
        cwd=folder,
    )


def measure(dirs: dict[str, Path], runs: int, tracing: bool) -> dict[str, list[dict[str, Any]]]:
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in dirs}
    for _ in range(runs):  # interleaved: a slow moment of the machine hits every variant alike
        for name, folder in dirs.items():
            samples[name].append(json.loads(probe(name, folder, tracing).stdout.strip().splitlines()[-1]))
    return samples


def show(samples: dict[str, list[dict[str, Any]]], runs: int, tracing: bool) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    base_init, base_clients, base_rss = med(BASELINE, "init"), med(BASELINE, "clients"), med(BASELINE, "rss_kib")
    print(
        f"cold start, median of {runs} fresh processes ({sys.version.split()[0]}), tracing {'on' if tracing else 'off'}"
    )
    print(
        f"{'handler':22} {'init ms':>8} {'x base':>7} {'+clients ms':>12} {'x base':>7} {'peak MiB':>9} {'x base':>7}  loads"
    )
    for name in samples:
        init, clients, rss = med(name, "init"), med(name, "clients"), med(name, "rss_kib")
        loads = [m for m in ("xray", "kubernetes") if samples[name][-1][m]]
        label = f"{name} (baseline)" if name == BASELINE else name
        print(
            f"{label:22} {init * 1000:8.1f} {init / base_init:7.2f} {clients * 1000:12.1f} {clients / base_clients:7.2f}"
            f" {rss / 1024:9.1f} {rss / base_rss:7.2f}  {' '.join(loads) or '-'}"
        )


def importtime(dirs: dict[str, Path], name: str, tracing: bool, top: int = 12) -> None:
    """`-X importtime` of one function's init: self time summed per top-level package."""
    err = probe(name, dirs[name], tracing, ["-X", "importtime"]).stderr
    by_package: Counter[str] = Counter()
    for line in err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            by_package[match.group(4).split(".")[0]] += int(match.group(1))
    total = sum(by_package.values())
    print(f"\n{name}: import self time by top-level package (-X importtime, one run), {total / 1000:.0f} ms in all")
    for package, micros in by_package.most_common(top):
        print(f"  {package:28} {micros / 1000:7.1f} ms  {micros / total:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tracing", choices=("on", "off"), default="on")
    parser.add_argument(
        "--importtime", metavar="FUNCTION", choices=FUNCTIONS, help="where that function's import time goes"
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the layer")
    args = parser.parse_args()
    tracing = args.tracing == "on"
    build_layer(args.fresh)
    runtime_stand_in()
    dirs = function_dirs()
    if args.importtime:
        importtime(dirs, args.importtime, tracing)
        return
    show(measure(dirs, args.runs, tracing), args.runs, tracing)


if __name__ == "__main__":
    main()
