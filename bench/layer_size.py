"""Size and import time of the Kubernetes-client layer (KubeLayer), for candidate `kubernetes` versions.

Each candidate is built the way `sam build` builds KubeLayer (layers/kube/Makefile runs
layers/kube/strip.py: resolved together with the podslots layer, for manylinux2014_aarch64/cp313,
then stripped), into build/layers/bench/. Sizes are measured on that Lambda build; import times on
the same procedure run for this machine's platform (aarch64 wheels do not load on x86_64), each in
fresh interpreters that see only the two layers (`-S`, no bytecode writing, like the read-only /opt).

Baselines measured in the same run: the podslots layer as `sam build` makes it (sizes) and
`import boto3` (times). Builds are cached (keyed by strip.py, layers/layer_build.py and the
requirements); pip's cache keeps downloads; `--fresh` rebuilds.

The podslots layer itself, before and after layers/podslots/Makefile: `sam build`'s python3.13
build (the wheels unpacked plus the package: no bytecode, botocore included) against
layers/podslots/build.py (botocore and jmespath left to the runtime, unchecked-hash bytecode);
MiB unzipped and zipped, and the imports of the allocate function's cold start (powertools'
event_handler, pynamodb.models, pydantic, then functions/allocate/app.py) in fresh `-S`
interpreters whose sys.path is the function's folder, the layer, and a boto3/botocore installed for
this machine standing in for the runtime's (after the layer on sys.path, as on Lambda).

    make layer-size        # or, from the repository root:
    .venv/bin/python -m bench.layer_size [--versions 37.0.1 35.0.0] [--fresh]
    .venv/bin/python -m bench.layer_size --podslots-only    # the podslots layer alone
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layers import layer_build
from layers.kube import strip as kube_layer
from layers.podslots import build as podslots_layer
from local.kube_api import KubeApiStandIn

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "build" / "layers" / "bench"
KUBE_REQUIREMENTS = ROOT / "layers" / "kube" / "requirements.txt"
PODSLOTS_REQUIREMENTS = ROOT / "layers" / "podslots" / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.in"  # its boto3/botocore pins stand in for the runtime's
ALLOCATE = ROOT / "functions" / "allocate"
# The newest release of each line (pip index versions kubernetes); the pinned one is always added.
CANDIDATES = ("37.0.1", "36.0.3", "35.0.0", "33.1.0", "31.0.0", "29.0.0")
RUNS = 5
POD_SPEC = {"containers": [{"name": "agent", "image": "busybox"}]}
MIB = 1024 * 1024
LIMIT = 250 * MIB  # Lambda: function + all its layers, unzipped (262,144,000 bytes)

# What reconcile and autoscale do on a cold start (podslots/cluster.py's KubeGateway call shapes):
# import the client, build it from a kubeconfig, list (raw JSON), create, patch (merge), delete.
PROBE = """
import json, sys, time
layers, mode = sys.argv[1].split({sep!r}), sys.argv[3]
sys.path[:0] = layers
if mode == "import":
    t = time.perf_counter()
    import kubernetes.client
    print(json.dumps({{"s": time.perf_counter() - t}}))
    raise SystemExit
if mode == "podslots-deps":
    t = time.perf_counter()
    import pydantic, pynamodb.models, aws_lambda_powertools
    print(json.dumps({{"s": time.perf_counter() - t}}))
    raise SystemExit
kubeconfig = json.loads(sys.argv[4])  # the API stand-in runs in the benchmark's own process
t = time.perf_counter()
from kubernetes import client, config
api_client = config.new_client_from_config_dict(kubeconfig)
core = client.CoreV1Api(api_client)
raw = dict(_request_timeout=(3.0, 10.0), _preload_content=False)
listed = json.loads(core.list_namespaced_pod("agents", label_selector="pool=a", limit=500, **raw).data)
made = json.loads(core.create_namespaced_pod(
    "agents", {{"metadata": {{"name": "p4", "labels": {{"pool": "a"}}}},
               "spec": {{"containers": [{{"name": "agent", "image": "busybox"}}]}}}}, **raw).data)
patch = {{"metadata": {{"annotations": {{"podslots.io/slots": "2"}}}}}}
try:  # podslots/cluster.py asks for a merge patch by name; clients before 37 have no _content_type
    core.patch_namespaced_pod("p4", "agents", patch, _content_type="application/merge-patch+json", **raw)
    as_written = True
except client.exceptions.ApiTypeError:
    core.patch_namespaced_pod("p4", "agents", patch, **raw)
    as_written = False
core.delete_namespaced_pod("p1", "agents", body={{"preconditions": {{"uid": listed["items"][0]["metadata"]["uid"]}}}}, **raw)
elapsed = time.perf_counter() - t
# Not timed: the typed path (model deserialization) works too, and the calls did what they say.
typed = core.list_namespaced_pod("agents", label_selector="pool=a")
names = sorted(p.metadata.name for p in typed.items)
assert names == ["p2", "p3", "p4"], names
assert (typed.items[-1].metadata.annotations or {{}}).get("podslots.io/slots") == "2"
api_client.close()
loaded = sorted({{m.split(".")[0] for m, mod in list(sys.modules.items())
                 if any((getattr(mod, "__file__", None) or "").startswith(d) for d in layers)}})
kube_modules = [m for m in sys.modules if m.startswith("kubernetes")]
print(json.dumps({{"s": elapsed, "as_written": as_written, "loaded": loaded, "kube_modules": len(kube_modules),
                  "aio": [m for m in sys.modules if m.startswith(("kubernetes.aio", "aiohttp"))]}}))
"""


@dataclass
class Built:
    label: str
    path: Path | None  # the layer's python/ folder
    result: dict[str, Any]  # layer_build.Result fields, plus zip bytes; or {"error": ...}

    @property
    def ok(self) -> bool:
        return "error" not in self.result


def mb(size: float) -> str:
    return f"{size / MIB:7.1f}"


def zipped_bytes(python_dir: Path) -> int:
    """Size of the layer zip (python/ at its root, deflate as sam package writes it)."""
    target = python_dir.parent / "layer.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder, _, names in os.walk(python_dir):
            for name in sorted(names):
                path = Path(folder, name)
                archive.write(path, Path("python", path.relative_to(python_dir)))
    size = target.stat().st_size
    target.unlink()
    return size


def cache_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()


def build_kube(version: str, lambda_platform: bool, fresh: bool) -> Built:
    label = f"kubernetes=={version}"
    where = BENCH / f"kube-{version}" / ("lambda" if lambda_platform else "host")
    requirements = where.parent / "requirements.txt"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text(f"{label}\n", encoding="utf-8")
    key = cache_key(
        Path(kube_layer.__file__).read_bytes(),
        Path(layer_build.__file__).read_bytes(),
        PODSLOTS_REQUIREMENTS.read_bytes(),
        label,
        str(lambda_platform),
    )
    stamp = where / "result.json"
    if not fresh and stamp.exists():
        cached = json.loads(stamp.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return Built(label, where / "python" if "error" not in cached else None, cached)
    shutil.rmtree(where, ignore_errors=True)
    try:
        result = kube_layer.build(
            where / "python", requirements, PODSLOTS_REQUIREMENTS, lambda_platform=lambda_platform
        ).__dict__
        if lambda_platform:
            result["zip"] = zipped_bytes(where / "python")
    except SystemExit as failed:  # pip cannot resolve it with the podslots layer, or versions differ
        where.mkdir(parents=True, exist_ok=True)
        result = {"error": str(failed).splitlines()[-1][:160] if str(failed) else "failed"}
    result["key"] = key
    stamp.write_text(json.dumps(result), encoding="utf-8")
    return Built(label, where / "python" if "error" not in result else None, result)


def build_podslots(lambda_platform: bool, fresh: bool) -> Built:
    """The podslots layer's requirements: `sam build` (BuildMethod python3.13) unpacks the wheels,
    nothing more. For this machine they also get bytecode, so that the kube timings measure the kube
    layer alone (and a copy without, to show what the missing bytecode costs)."""
    where = BENCH / "podslots" / ("lambda" if lambda_platform else "host")
    key = cache_key(PODSLOTS_REQUIREMENTS.read_bytes(), str(lambda_platform), "v2")
    stamp = where / "result.json"
    if not fresh and stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")).get("key") == key:
        return Built("podslots layer", where / "python", json.loads(stamp.read_text(encoding="utf-8")))
    layer_build.install(where / "python", [PODSLOTS_REQUIREMENTS], lambda_platform)
    result: dict[str, Any] = {"final": layer_build.tree_bytes(where / "python"), "key": key}
    if lambda_platform:
        result["zip"] = zipped_bytes(where / "python")
    else:
        source_only = where / "source-only"
        shutil.rmtree(source_only, ignore_errors=True)
        shutil.copytree(where / "python", source_only)
        layer_build.compile_unchecked(where / "python")
    stamp.write_text(json.dumps(result), encoding="utf-8")
    return Built("podslots layer", where / "python", result)


def add_podslots_package(wheels: Built) -> Built:
    """The podslots layer as `sam build` makes it: the wheels plus the `podslots` package itself
    (measured on each run: it changes more often than the requirements)."""
    target = BENCH / "podslots" / "package" / "python"
    shutil.rmtree(target.parent, ignore_errors=True)
    shutil.copytree(
        ROOT / "layers" / "podslots" / "podslots",
        target / "podslots",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    result = dict(wheels.result)
    result["final"] += layer_build.tree_bytes(target)
    result["zip"] += zipped_bytes(target)
    return Built(wheels.label, wheels.path, result)


def build_podslots_layer(lambda_platform: bool) -> Built:
    """The podslots layer as layers/podslots/Makefile builds it (build.py); rebuilt on each run."""
    where = BENCH / "podslots-built" / ("lambda" if lambda_platform else "host")
    shutil.rmtree(where, ignore_errors=True)
    result: dict[str, Any] = podslots_layer.build(where / "python", lambda_platform=lambda_platform).__dict__
    if lambda_platform:
        result["zip"] = zipped_bytes(where / "python")
    return Built("podslots layer, build.py", where / "python", result)


def runtime_stand_in() -> Path:
    """boto3 and botocore (with s3transfer, jmespath, python-dateutil, six, urllib3) for this machine,
    with bytecode, as the Lambda runtime ships them; at requirements-dev.in's pins."""
    pins = "".join(
        f"{line.split('#')[0].strip()}\n"
        for line in DEV_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.startswith(("boto3==", "botocore=="))
    )
    where = BENCH / "runtime"
    requirements = where / "requirements.txt"
    stamp = where / "installed.txt"  # the pins of the finished install
    if not (stamp.exists() and stamp.read_text(encoding="utf-8") == pins):
        where.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        requirements.write_text(pins, encoding="utf-8")
        layer_build.install(where / "python", [requirements], lambda_platform=False)
        layer_build.compile_unchecked(where / "python")
        stamp.write_text(pins, encoding="utf-8")
    return where / "python"


def function_copy() -> Path:
    """functions/allocate as /var/task holds it: the source, no bytecode of the working tree."""
    target = BENCH / "function" / "allocate"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ALLOCATE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


# The allocate function's cold start: its dependencies' entry points, then its own module.
ALLOCATE_PROBE = """
import json, sys, time
sys.path[:] = sys.argv[1].split({sep!r}) + [p for p in sys.path if p not in ("", ".")]
t = time.perf_counter()
import aws_lambda_powertools.event_handler, pynamodb.models, pydantic
deps = time.perf_counter()
import app
done = time.perf_counter()
import botocore
print(json.dumps({{"s": done - t, "deps": deps - t, "app": done - deps, "botocore": botocore.__file__,
                  "kubernetes": "kubernetes" in sys.modules}}))
"""
ALLOCATE_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "podslots-allocate",
    "POWERTOOLS_METRICS_NAMESPACE": "PodSlots",
    "TABLE_NAME": "podslots-bench",
    "EVENT_BUS_NAME": "podslots-bench",
}


def run_allocate(paths: tuple[Path, ...]) -> dict[str, Any]:
    """One cold import of the allocate function; `paths`: its folder, the layer(s), the runtime's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ALLOCATE_ENV, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-S", "-c", ALLOCATE_PROBE.format(sep=os.pathsep), os.pathsep.join(map(str, paths))],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=paths[0],
    )
    if done.returncode != 0:
        raise RuntimeError(f"allocate probe failed with {paths}:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


Job = tuple[str, tuple[Path, ...], str]  # (name, layer folders, probe mode); no folders: boto3


def run_once(layers: tuple[Path, ...], mode: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # /opt is read-only on Lambda
    if mode == "allocate":
        return run_allocate(layers)
    if not layers:  # the baseline: boto3 from the project venv, with its bytecode
        code = "import json, time; t = time.perf_counter(); import boto3; print(json.dumps({'s': time.perf_counter() - t}))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        return dict(json.loads(out))
    with KubeApiStandIn() as kube:  # a fresh one each run, with three pods of pool "a"
        for name in ("p1", "p2", "p3"):
            kube.add_pod("agents", {"metadata": {"name": name, "labels": {"pool": "a"}}, "spec": POD_SPEC})
        argv = [os.pathsep.join(map(str, layers)), str(ROOT), mode, json.dumps(kube.kubeconfig("agents"))]
        done = subprocess.run(
            [sys.executable, "-S", "-c", PROBE.format(sep=os.pathsep), *argv],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=ROOT,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} probe failed with {layers}:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def timed(jobs: list[Job]) -> dict[str, tuple[float, dict[str, Any]]]:
    """Median seconds of each job over RUNS fresh interpreters, the jobs interleaved run by run (a
    busy machine then slows every candidate alike), with the last answer of each."""
    samples: dict[str, list[float]] = {name: [] for name, _, _ in jobs}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(RUNS):
        for name, layers, mode in jobs:
            last[name] = run_once(layers, mode)
            samples[name].append(last[name]["s"])
    return {name: (statistics.median(values), last[name]) for name, values in samples.items()}


def source_only_copy(python_dir: Path) -> Path:
    """The same layer without its bytecode (what Lambda compiles on every cold start)."""
    target = python_dir.parent / "source-only"
    if not target.exists():
        shutil.copytree(python_dir, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def pinned_version() -> str:
    for line in KUBE_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("kubernetes=="):
            return line.split("==", 1)[1].split()[0]
    raise SystemExit(f"{KUBE_REQUIREMENTS}: no kubernetes== pin")


@dataclass
class Builds:
    podslots: Built  # for Lambda: sizes
    podslots_host: Path  # for this machine, with bytecode: beside each kube layer in the timings
    kube: dict[str, Built]  # version -> Lambda build
    kube_host: dict[str, Built]


def build_all(versions: list[str], fresh: bool) -> Builds:
    print(f"building {len(versions)} candidates for manylinux2014_aarch64/cp313 and for {os.uname().machine} ...")
    with ThreadPoolExecutor(max_workers=3) as pool:
        podslots_lambda = pool.submit(build_podslots, True, fresh)
        podslots_host = pool.submit(build_podslots, False, fresh)
        lambda_builds = {v: pool.submit(build_kube, v, True, fresh) for v in versions}
        host_builds = {v: pool.submit(build_kube, v, False, fresh) for v in versions}
    host_dir = podslots_host.result().path
    assert host_dir is not None
    return Builds(
        add_podslots_package(podslots_lambda.result()),
        host_dir,
        {v: f.result() for v, f in lambda_builds.items()},
        {v: f.result() for v, f in host_builds.items()},
    )


def time_all(builds: Builds, pinned: str) -> dict[str, tuple[float, dict[str, Any]]]:
    base = builds.podslots_host
    jobs: list[Job] = [("boto3", (), "import")]
    for version, host in builds.kube_host.items():
        if host.ok and host.path is not None:
            jobs += [
                (f"{version} import", (host.path, base), "import"),
                (f"{version} calls", (host.path, base), "calls"),
            ]
            if version == pinned:
                no_pyc = source_only_copy(host.path)
                jobs += [(f"{version} import, no bytecode", (no_pyc, base), "import")]
                jobs += [(f"{version} calls, no bytecode", (no_pyc, base), "calls")]
    jobs += [("podslots deps", (base,), "podslots-deps")]
    jobs += [("podslots deps, no bytecode", (base.parent / "source-only",), "podslots-deps")]
    print(f"timing {len(jobs)} probes x {RUNS} runs, interleaved ...")
    return timed(jobs)


def print_table(builds: Builds, times: dict[str, tuple[float, dict[str, Any]]]) -> None:
    base = builds.podslots.result
    boto3_s = times["boto3"][0]
    print(f"\nKubeLayer candidates (MiB; zip = deflate; times: median of {RUNS} fresh python{sys.version.split()[0]})")
    print("  installed = what the kube requirements pull in, unpacked (no bytecode): a plain `sam build`")
    print("  layer     = after strip.py, with its unchecked-hash bytecode: what KubeLayer ships")
    print("  calls     = import + kubeconfig client + list/create/patch/delete against the API stand-in,")
    print("              the call shapes of podslots/cluster.py (raw JSON answers, merge patch)")
    head = f"{'':18} {'installed':>9} {'stripped':>8} {'bytecode':>8} {'layer':>7} {'zip':>7} {'x podslots':>10}"
    print(f"{head} {'import ms':>9} {'x boto3':>7} {'calls ms':>8} {'x boto3':>7}  cluster.py as written")
    print(
        f"{'podslots (base)':18} {mb(base['final']):>9} {'':8} {'':8} {mb(base['final'])} {mb(base['zip'])} "
        f"{1.0:10.2f} {boto3_s * 1000:9.0f} {1.0:7.2f}   (import boto3, from .venv)"
    )
    for version, built in builds.kube.items():
        row = built.result
        if not built.ok:
            print(f"{built.label:18} not buildable beside the podslots layer: {row['error']}")
            continue
        line = (
            f"{built.label:18} {mb(row['installed']):>9} {mb(row['stripped']):>8} {mb(row['bytecode']):>8} "
            f"{mb(row['final'])} {mb(row['zip'])} {row['final'] / base['final']:10.2f}"
        )
        if f"{version} calls" in times:
            import_s, (calls_s, seen) = times[f"{version} import"][0], times[f"{version} calls"]
            line += f" {import_s * 1000:9.0f} {import_s / boto3_s:7.2f} {calls_s * 1000:8.0f} {calls_s / boto3_s:7.2f}"
            line += "  yes" if seen["as_written"] else "  no (no _content_type)"
        print(line)


def print_pinned(builds: Builds, times: dict[str, tuple[float, dict[str, Any]]], pinned: str) -> None:
    chosen = builds.kube[pinned]
    row = chosen.result
    print(f"\n{chosen.label} (pinned in layers/kube/requirements.txt): what strip.py removed")
    for reason, size in row["removed"].items():
        print(f"  {mb(size)}  {reason:26} {' '.join(row['dropped'].get(reason, []))}")
    print(f"  kept: {' '.join(f'{n}=={v}' for n, v in sorted(row['kept'].items()))}")
    if f"{pinned} calls" in times:
        import_s, (calls_s, seen) = times[f"{pinned} import"][0], times[f"{pinned} calls"]
        src_import_s = times[f"{pinned} import, no bytecode"][0]
        src_calls_s = times[f"{pinned} calls, no bytecode"][0]
        print(f"\nbytecode or not ({chosen.label}, ms; without it Lambda compiles on every cold start):")
        print(
            f"  import kubernetes.client: {import_s * 1000:6.0f} with, {src_import_s * 1000:6.0f} without "
            f"({src_import_s / import_s:.1f}x)"
        )
        print(
            f"  import + four calls:      {calls_s * 1000:6.0f} with, {src_calls_s * 1000:6.0f} without "
            f"({src_calls_s / calls_s:.1f}x)"
        )
        print(f"  the calls loaded {seen['kube_modules']} kubernetes modules, from these packages of the layers:")
        print(f"    {' '.join(seen['loaded'])}")
        print(f"  asyncio half loaded: {seen['aio'] or 'nothing'}")
    deps_s, deps_src_s = times["podslots deps"][0], times["podslots deps, no bytecode"][0]
    print(
        f"  podslots layer (sam build ships no bytecode): import pydantic, pynamodb, powertools "
        f"{deps_s * 1000:.0f} with, {deps_src_s * 1000:.0f} without ({deps_src_s / deps_s:.1f}x)"
    )


def print_total(builds: Builds, pinned: str, podslots: Built) -> None:
    base, kube = podslots.result["final"], builds.kube[pinned].result["final"]
    code = sum(p.stat().st_size for p in (ROOT / "functions").rglob("*.py"))
    total = base + kube + code
    print(
        f"\nreconcile/autoscale unzipped: podslots layer {mb(base).strip()} (build.py) + KubeLayer {mb(kube).strip()}"
        f" + function code {code / 1024:.0f} KiB = {mb(total).strip()} MiB of {LIMIT / MIB:.0f} MiB "
        f"({total / LIMIT:.0%}; {mb(LIMIT - total).strip()} MiB left)"
    )


# ---- the podslots layer: sam build's python3.13 build against layers/podslots/Makefile -----------


@dataclass
class PodSlotsBuilds:
    before: Built  # sam build's python3.13 build for Lambda: the wheels and the package, no bytecode
    after: Built  # layers/podslots/build.py for Lambda
    before_host: tuple[Path, ...]  # the same two for this machine: the wheels (source only), the package
    after_host: Path
    runtime: Path  # boto3/botocore for this machine, standing in for the runtime's
    function: Path  # functions/allocate, source only


def build_podslots_pair(fresh: bool) -> PodSlotsBuilds:
    print(f"building the podslots layer both ways, for manylinux2014_aarch64/cp313 and {os.uname().machine} ...")
    with ThreadPoolExecutor(max_workers=3) as pool:
        before = pool.submit(build_podslots, True, fresh)
        before_host = pool.submit(build_podslots, False, fresh)
        after = pool.submit(build_podslots_layer, True)
        after_host = pool.submit(build_podslots_layer, False)
        runtime = pool.submit(runtime_stand_in)
    wheels_host, after_host_dir = before_host.result().path, after_host.result().path
    assert wheels_host is not None
    assert after_host_dir is not None
    package = add_podslots_package(before.result())
    return PodSlotsBuilds(
        package,
        after.result(),
        (wheels_host.parent / "source-only", BENCH / "podslots" / "package" / "python"),
        after_host_dir,
        runtime.result(),
        function_copy(),
    )


PodSlotsTimes = dict[str, tuple[dict[str, float], dict[str, Any]]]  # name -> (medians by part, last answer)


def time_podslots(pb: PodSlotsBuilds) -> PodSlotsTimes:
    configs = {
        "sam build python3.13": (pb.function, *pb.before_host, pb.runtime),
        "build.py, no bytecode": (pb.function, source_only_copy(pb.after_host), pb.runtime),
        "build.py": (pb.function, pb.after_host, pb.runtime),
    }
    print(f"timing the allocate function's imports: {len(configs)} layers x {RUNS} runs, interleaved ...")
    samples: dict[str, dict[str, list[float]]] = {name: {"s": [], "deps": [], "app": []} for name in configs}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(RUNS):
        for name, paths in configs.items():
            last[name] = run_allocate(paths)
            for part, values in samples[name].items():
                values.append(last[name][part])
    return {
        name: ({part: statistics.median(values) for part, values in parts.items()}, last[name])
        for name, parts in samples.items()
    }


def print_podslots(pb: PodSlotsBuilds, times: PodSlotsTimes) -> None:
    before, after = pb.before.result, pb.after.result
    print(
        f"\nPodSlotsLayer: sam build's BuildMethod python3.13 against layers/podslots/Makefile (MiB, zip = deflate;"
        f" ms: median of {RUNS} fresh python{sys.version.split()[0]} -S)"
    )
    print("  import = powertools' event_handler + pynamodb.models + pydantic, then functions/allocate/app.py;")
    print("  sys.path: the function's folder, the layer, then boto3/botocore for this machine (the runtime's)")
    print(f"{'':24} {'unzipped':>8} {'zip':>7} {'deps ms':>8} {'app ms':>7} {'import ms':>9}  botocore from")
    rows = {"sam build python3.13": (before["final"], before["zip"])}
    rows["build.py, no bytecode"] = (after["stripped"], None)
    rows["build.py"] = (after["final"], after["zip"])
    for name, (size, zipped) in rows.items():
        medians, seen = times[name]
        where = "the layer" if "/runtime/" not in seen["botocore"] else "the runtime"
        zip_text = mb(zipped) if zipped is not None else f"{'':7}"
        print(
            f"{name:24} {mb(size):>8} {zip_text} {medians['deps'] * 1000:8.0f} {medians['app'] * 1000:7.0f} "
            f"{medians['s'] * 1000:9.0f}  {where}"
        )
    old, new = times["sam build python3.13"][0], times["build.py"][0]
    print(
        f"{'before / after':24} {before['final'] / after['final']:7.2f}x {before['zip'] / after['zip']:6.2f}x "
        f"{old['deps'] / new['deps']:7.2f}x {old['app'] / new['app']:6.2f}x {old['s'] / new['s']:8.2f}x"
    )
    print("build.py removed:")
    for reason, size in after["removed"].items():
        print(f"  {mb(size)}  {reason:24} {' '.join(after['dropped'].get(reason, []))}")
    print(f"  kept: {' '.join(f'{n}=={v}' for n, v in sorted(after['kept'].items()))} + the podslots package")
    print(f"  bytecode: {mb(after['bytecode']).strip()} MiB (unchecked-hash)")
    if any(seen["kubernetes"] for _, seen in times.values()):
        print("  (the allocate function loaded kubernetes: it should not)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--fresh", action="store_true", help="rebuild instead of using build/layers/bench")
    parser.add_argument("--podslots-only", action="store_true", help="only the podslots layer, before and after")
    args = parser.parse_args()
    podslots = build_podslots_pair(args.fresh)
    print_podslots(podslots, time_podslots(podslots))
    if args.podslots_only:
        return
    pinned = pinned_version()
    versions = [pinned, *(v for v in args.versions if v != pinned)]
    builds = build_all(versions, args.fresh)
    if not builds.kube[pinned].ok:
        raise SystemExit(f"the pinned kubernetes=={pinned} does not build: {builds.kube[pinned].result['error']}")
    times = time_all(builds, pinned)
    print_table(builds, times)
    print_pinned(builds, times, pinned)
    print_total(builds, pinned, podslots.after)


if __name__ == "__main__":
    main()
