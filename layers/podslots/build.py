"""Build the podslots layer (PodSlotsLayer): its requirements and the `podslots` package, with bytecode.

One procedure for `sam build` (layers/podslots/Makefile, target build-PodSlotsLayer) and for the size
benchmark (bench/layer_size.py); the pieces are layers/layer_build.py's, which KubeLayer's build shares:

1. Install requirements.txt (wheels only, for Lambda: manylinux2014_aarch64, cp313; no bytecode yet).
2. Remove what the Lambda python3.13 runtime ships itself (layer_build.RUNTIME_PROVIDED: botocore and
   jmespath, pulled in by pynamodb, aws-xray-sdk and powertools; boto3 and s3transfer if ever). The
   runtime's copies are found after /opt/python on sys.path, and they satisfy what the layer asks
   for (pynamodb: botocore>=1.12.54, aws-xray-sdk: botocore>=1.11.3, powertools: jmespath>=1.0.1,<2;
   the runtime ships boto3 1.3x/1.4x). python-dateutil, six and urllib3 stay: the kube layer leaves
   them to this one (layers/kube/strip.py removes from it what this layer's requirements resolve
   to), and the runtime's botocore imports them from here, as it did before.
3. Remove tests (`tests/` folders) and console scripts (`bin/`: not on PATH in a layer).
4. Copy the `podslots` package in, without any `__pycache__` of the working tree.
5. Write unchecked-hash bytecode for everything (layer_build.compile_unchecked: Lambda cannot write
   `__pycache__` into the read-only /opt; without it every cold start compiles what it imports).

Each kept distribution keeps its .dist-info; its RECORD lists only the files that are left.

    PYTHONPATH=. python3.13 -m layers.podslots.build --target build/layers/podslots/python
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from layers import layer_build

HERE = Path(__file__).resolve().parent
PACKAGE = "podslots"


def strip(site: Path) -> layer_build.Result:
    """Strip an installed podslots layer in place (steps 2 and 3 of the module docstring)."""
    site = site.resolve()
    result = layer_build.Result()
    for bytecode_dir in list(site.rglob("__pycache__")):
        shutil.rmtree(bytecode_dir, ignore_errors=True)  # pip's timestamp-checked bytecode, if any
    dists = layer_build.read_dists(site)
    result.installed = layer_build.tree_bytes(site)
    to_runtime = sorted(n for n in dists if n in layer_build.RUNTIME_PROVIDED)
    kept = sorted(n for n in dists if n not in layer_build.RUNTIME_PROVIDED)
    result.dropped["in the Lambda runtime"] = [f"{n}=={dists[n].version}" for n in to_runtime]
    result.removed["in the Lambda runtime"] = sum(
        layer_build.remove_files(site, dists[n].files) + layer_build.remove_tree(dists[n].dist_info) for n in to_runtime
    )
    result.removed["tests"] = sum(layer_build.remove_files(site, layer_build.tests_of(site, dists[n])) for n in kept)
    result.removed["bin/ (console scripts)"] = layer_build.remove_tree(site / "bin")
    for name in kept:
        layer_build.rewrite_record(dists[name], site)
        result.kept[name] = dists[name].version
    layer_build.prune_empty(site)
    return result


def add_package(site: Path, package: Path) -> None:
    """Copy the `podslots` package (source only) into the layer's python/ folder."""
    target = site / package.name
    if target.exists():
        raise SystemExit(f"build.py: {target} exists: a requirement ships a `{package.name}` too")
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build(
    target: Path,
    requirements: Path = HERE / "requirements.txt",
    package: Path = HERE / PACKAGE,
    *,
    lambda_platform: bool = True,
    bytecode: bool = True,
    lock: Path | None = None,
) -> layer_build.Result:
    """Install, strip and complete the podslots layer in `target` (the layer's `python/` folder,
    emptied first); `installed` counts the wheels as they unpack, the package not included."""
    layer_build.install(target, [requirements], lambda_platform, lock)
    result = strip(target)
    add_package(target, package)
    result.stripped = layer_build.tree_bytes(target)
    if bytecode:
        layer_build.compile_unchecked(target)
    result.final = layer_build.tree_bytes(target)
    result.bytecode = result.final - result.stripped
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True, help="the layer's python/ folder (emptied first)")
    parser.add_argument("--requirements", type=Path, default=HERE / "requirements.txt")
    parser.add_argument("--package", type=Path, default=HERE / PACKAGE, help="the `podslots` package folder")
    parser.add_argument("--host", action="store_true", help="this machine's platform instead of Lambda's")
    parser.add_argument("--no-bytecode", action="store_true")
    parser.add_argument(
        "--lock",
        type=Path,
        default=layer_build.LOCK,
        help="hashed lock of both layers (default: layers/requirements.lock)",
    )
    parser.add_argument("--no-lock", action="store_true", help="resolve afresh, without hashes (benchmarks only)")
    args = parser.parse_args(argv)
    result = build(
        args.target.resolve(),
        args.requirements.resolve(),
        args.package.resolve(),
        lambda_platform=not args.host,
        bytecode=not args.no_bytecode,
        lock=None if args.no_lock else args.lock.resolve(),
    )
    layer_build.print_report("build.py", args.target, result)


if __name__ == "__main__":
    main()
