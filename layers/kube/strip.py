"""Build the Kubernetes-client layer (KubeLayer) and strip what podslots never loads.

One procedure for `sam build` (layers/kube/Makefile, target build-KubeLayer) and for the size
benchmark (bench/layer_size.py), so the benchmark measures exactly what is deployed:

1. Resolve layers/kube/requirements.txt TOGETHER with layers/podslots/requirements.txt and install
   the result (wheels only, for Lambda: manylinux2014_aarch64, cp313; no bytecode yet). Resolving
   them together is what keeps the two layers consistent: alone, `kubernetes` takes the newest
   python-dateutil (4.x), which the podslots layer's botocore refuses.
2. Remove every distribution that the podslots layer ships too (pydantic, urllib3, python-dateutil,
   six, ...), after checking that the podslots layer resolves it to the same version. Both layers
   unpack into /opt/python, so a second copy would only overwrite files of the first, or mix two
   versions of one package. The Lambda runtime's own boto3/botocore/urllib3 sit after /opt/python
   on sys.path (python3.11 and later): the podslots layer's copies are the ones imported. The
   podslots layer does not ship RUNTIME_PROVIDED (botocore, jmespath, ...: layers/podslots/build.py
   removes them), so the kube layer must not need them: checked here.
3. Remove the asyncio half of the client: `kubernetes/aio` (36.x and later ship a second, asyncio
   client beside the synchronous one; it is as large as the synchronous one) and what only it
   needs: aiohttp, aiohttp-retry and their dependencies (whatever is no longer reachable from the
   requested roots once those two edges are cut). podslots uses the synchronous CoreV1Api only.
4. Remove tests (`tests/` folders, kubernetes' `*_test.py`/`test_*.py` modules) and console
   scripts (`bin/`: not on PATH in a layer, with the build machine's shebang).
5. Write unchecked-hash bytecode (layers/layer_build.py says why); it needs the layer's own Python
   version (3.13) to write it.

Each kept distribution keeps its .dist-info; its RECORD lists only the files that are left.

The pieces both layer builds share are in layers/layer_build.py.

    PYTHONPATH=. python3.13 -m layers.kube.strip --target build/layers/kube/python
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from layers.layer_build import (
    LOCK,
    RUNTIME_PROVIDED,
    Dist,
    Result,
    canonical,
    compile_unchecked,
    install,
    print_report,
    prune_empty,
    read_dists,
    remove_files,
    remove_tree,
    resolve,
    rewrite_record,
    tests_of,
    tree_bytes,
)

HERE = Path(__file__).resolve().parent
# Dependencies of `kubernetes` that only `kubernetes.aio` imports.
ASYNC_ONLY = {"kubernetes": frozenset({"aiohttp", "aiohttp-retry"})}
ASYNC_PACKAGE = "kubernetes/aio"


def _bytes(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def closure(dists: Mapping[str, Dist], roots: Iterable[str], cut: Mapping[str, frozenset[str]]) -> set[str]:
    """Names reachable from `roots` over Requires-Dist, without the edges in `cut`."""
    seen: set[str] = set()
    todo = [r for r in roots if r in dists]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(d for d in dists[name].requires - cut.get(name, frozenset()) if d in dists)
    return seen


def strip(site: Path, shared: Mapping[str, str], *, bytecode: bool = True) -> Result:
    """Strip an installed layer in place (see the module docstring); `shared`: name -> version of
    the distributions the podslots layer ships."""
    site = site.resolve()
    result = Result()
    dists = read_dists(site)
    for bytecode_dir in list(site.rglob("__pycache__")):
        shutil.rmtree(bytecode_dir, ignore_errors=True)  # pip's timestamp-checked bytecode, if any

    shared = {canonical(k): v for k, v in shared.items()}
    roots = [name for name, dist in dists.items() if dist.requested and name not in shared]
    everything = closure(dists, roots, {})
    result.installed = sum(_bytes(dists[n].files) for n in everything)
    mismatched = {n: (dists[n].version, shared[n]) for n in everything & shared.keys()}
    mismatched = {n: v for n, v in mismatched.items() if v[0] != v[1]}
    if mismatched:
        raise SystemExit(
            "strip.py: the kube layer and the podslots layer resolve shared distributions differently "
            f"(kube, podslots): {mismatched}; pin them in layers/podslots/requirements.txt"
        )
    runtime_only = sorted(closure(dists, roots, ASYNC_ONLY) & RUNTIME_PROVIDED)
    if runtime_only:
        raise SystemExit(
            f"strip.py: the kube layer needs {runtime_only}, which the podslots layer leaves to the Lambda "
            "runtime (RUNTIME_PROVIDED): ship them in one of the layers"
        )
    needed = closure(dists, roots, ASYNC_ONLY) - shared.keys()
    reasons = {
        # Installed only to be resolved together with the kube requirements; not counted.
        "": sorted(n for n in dists if n in shared and n not in everything),
        "in the podslots layer": sorted(n for n in dists if n in shared and n in everything),
        "only for kubernetes.aio": sorted(n for n in dists if n not in shared and n not in needed),
    }
    for reason, names in reasons.items():
        removed = 0
        for name in names:
            removed += remove_files(site, dists[name].files) + remove_tree(dists[name].dist_info)
        if reason:
            result.dropped[reason] = [f"{n}=={dists[n].version}" for n in names]
            result.removed[reason] = removed
    result.removed["kubernetes/aio"] = remove_tree(site / ASYNC_PACKAGE)
    result.removed["tests"] = 0
    for name in sorted(needed):
        result.removed["tests"] += remove_files(site, tests_of(site, dists[name]))
    result.removed["bin/ (console scripts)"] = remove_tree(site / "bin")
    for name in sorted(needed):
        rewrite_record(dists[name], site)
        result.kept[name] = dists[name].version
    prune_empty(site)

    result.stripped = tree_bytes(site)
    if bytecode:
        compile_unchecked(site)
    result.final = tree_bytes(site)
    result.bytecode = result.final - result.stripped
    return result


def build(
    target: Path,
    requirements: Path = HERE / "requirements.txt",
    shared_requirements: Path = HERE.parent / "podslots" / "requirements.txt",
    *,
    lambda_platform: bool = True,
    bytecode: bool = True,
    lock: Path | None = None,
) -> Result:
    """Install and strip the kube layer into `target` (the layer's `python/` folder); with `lock`,
    exactly its locked, hash-checked versions (layers/layer_build.py)."""
    shared = resolve([shared_requirements], lambda_platform, lock)
    install(target, [shared_requirements, requirements], lambda_platform, lock)
    return strip(target, shared, bytecode=bytecode)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True, help="the layer's python/ folder (emptied first)")
    parser.add_argument("--requirements", type=Path, default=HERE / "requirements.txt")
    parser.add_argument(
        "--shared-requirements",
        type=Path,
        default=HERE.parent / "podslots" / "requirements.txt",
        help="requirements of the layer that is always beside this one (default: layers/podslots)",
    )
    parser.add_argument("--host", action="store_true", help="this machine's platform instead of Lambda's")
    parser.add_argument("--no-bytecode", action="store_true")
    parser.add_argument(
        "--lock", type=Path, default=LOCK, help="hashed lock of both layers (default: layers/requirements.lock)"
    )
    parser.add_argument("--no-lock", action="store_true", help="resolve afresh, without hashes (benchmarks only)")
    args = parser.parse_args(argv)
    result = build(
        args.target.resolve(),
        args.requirements.resolve(),
        args.shared_requirements.resolve(),
        lambda_platform=not args.host,
        bytecode=not args.no_bytecode,
        lock=None if args.no_lock else args.lock.resolve(),
    )
    print_report("strip.py", args.target, result)


if __name__ == "__main__":
    main()
