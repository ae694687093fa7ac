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
5. Write bytecode: Lambda cannot write `__pycache__` into the read-only /opt, so without it every
   cold start compiles every module it imports. The bytecode is "unchecked-hash" (PEP 552): used
   without looking at the source's timestamp, which a zip round trip does not keep exactly; the
   layer never changes once published. It needs the layer's own Python version (3.13) to write it.

Each kept distribution keeps its .dist-info; its RECORD lists only the files that are left.

    python layers/kube/strip.py --target build/layers/kube/python
"""

from __future__ import annotations

import argparse
import compileall
import csv
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON_VERSION = "3.13"
LAMBDA_PLATFORM = ("--platform", "manylinux2014_aarch64", "--implementation", "cp")
# Dependencies of `kubernetes` that only `kubernetes.aio` imports.
ASYNC_ONLY = {"kubernetes": frozenset({"aiohttp", "aiohttp-retry"})}
ASYNC_PACKAGE = "kubernetes/aio"
TEST_DIRS = frozenset({"test", "tests", "e2e_test"})
# Test modules are recognised by name only inside these packages (elsewhere a `test_*.py` can be a
# real module, e.g. annotated_types/test_cases.py).
TEST_MODULES_IN = ("kubernetes",)
TEST_MODULE = re.compile(r"(^test_.*|.*_test)\.py$")
# What the Lambda python3.13 runtime ships itself, and the podslots layer therefore leaves out (its
# requirements pull in botocore and jmespath: pynamodb, aws-xray-sdk, powertools). Not python-dateutil,
# six or urllib3: the podslots layer keeps shipping them, and this layer relies on that (step 2).
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    dist_info: Path
    files: tuple[Path, ...]  # absolute, as RECORD lists them, bytecode excluded
    requires: frozenset[str]  # canonical names; requirements behind an extra are left out
    requested: bool  # named on pip's command line (a requirements file), not pulled in


@dataclass
class Result:
    """Byte counts of one build; `removed` by reason, each a number of bytes."""

    installed: int = 0  # everything the kube requirements pull in, as the wheels unpack (no bytecode)
    removed: dict[str, int] = field(default_factory=dict)
    stripped: int = 0  # what is left, before bytecode
    bytecode: int = 0
    final: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # name -> version
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> distributions

    def as_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


# ---- reading an installed target directory -------------------------------------------------------


def _metadata(dist_info: Path) -> tuple[str, str, frozenset[str]]:
    name = version = ""
    requires: set[str] = set()
    for line in (dist_info / "METADATA").read_text(encoding="utf-8").splitlines():
        if not line:
            break  # the headers end at the first empty line
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "Name":
            name = value
        elif key == "Version":
            version = value
        elif key == "Requires-Dist":
            requirement, _, marker = value.partition(";")
            if "extra" in marker:
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
            if match:
                requires.add(canonical(match.group(0)))
    return canonical(name), version, frozenset(requires)


def read_dists(site: Path) -> dict[str, Dist]:
    dists = {}
    for dist_info in sorted(site.glob("*.dist-info")):
        name, version, requires = _metadata(dist_info)
        with (dist_info / "RECORD").open(encoding="utf-8", newline="") as record:
            rows = [row[0] for row in csv.reader(record) if row]
        paths = (Path(os.path.normpath(site / row)) for row in rows if not row.endswith(".pyc"))
        # Console scripts are listed as ../../bin/...: outside the folder, left to the bin/ step.
        files = tuple(p for p in paths if p.is_relative_to(site))
        dists[name] = Dist(name, version, dist_info, files, requires, (dist_info / "REQUESTED").exists())
    return dists


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


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


# ---- removing ---------------------------------------------------------------------------------------


def _remove_files(site: Path, paths: Iterable[Path]) -> int:
    removed = 0
    for path in paths:
        if path.is_file() or path.is_symlink():
            removed += path.lstat().st_size
            path.unlink()
    _prune_empty(site)
    return removed


def _remove_tree(path: Path) -> int:
    if not path.exists():
        return 0
    size = tree_bytes(path)
    shutil.rmtree(path)
    return size


def _prune_empty(site: Path) -> None:
    for folder, _, _ in sorted(os.walk(site), key=lambda entry: -len(entry[0])):
        path = Path(folder)
        if path != site and not any(path.iterdir()):
            path.rmdir()


def _rewrite_record(dist: Dist, site: Path) -> None:
    """Keep RECORD true to what is left: rows of removed files go, the rest stay as pip wrote them."""
    record = dist.dist_info / "RECORD"
    with record.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    kept = [row for row in rows if (site / row[0]).exists() or row[0].endswith("RECORD")]
    with record.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(kept)


def _test_files(site: Path, dist: Dist) -> list[Path]:
    found = []
    for path in dist.files:
        try:
            parts = path.relative_to(site).parts
        except ValueError:
            continue
        if any(part in TEST_DIRS for part in parts[:-1]) or (
            parts[0] in TEST_MODULES_IN and TEST_MODULE.match(parts[-1])
        ):
            found.append(path)
    return found


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
            removed += _remove_files(site, dists[name].files) + _remove_tree(dists[name].dist_info)
        if reason:
            result.dropped[reason] = [f"{n}=={dists[n].version}" for n in names]
            result.removed[reason] = removed
    result.removed["kubernetes/aio"] = _remove_tree(site / ASYNC_PACKAGE)
    result.removed["tests"] = 0
    for name in sorted(needed):
        result.removed["tests"] += _remove_files(site, _test_files(site, dists[name]))
    result.removed["bin/ (console scripts)"] = _remove_tree(site / "bin")
    for name in sorted(needed):
        _rewrite_record(dists[name], site)
        result.kept[name] = dists[name].version
    _prune_empty(site)

    result.stripped = tree_bytes(site)
    if bytecode:
        compile_unchecked(site)
    result.final = tree_bytes(site)
    result.bytecode = result.final - result.stripped
    return result


def compile_unchecked(site: Path, ddir: str | None = None) -> None:
    """Unchecked-hash bytecode for every module, with this interpreter (it must be the layer's)."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != PYTHON_VERSION:
        raise SystemExit(f"strip.py: bytecode for Python {PYTHON_VERSION} needs python{PYTHON_VERSION}, not {running}")
    ok = compileall.compile_dir(
        site,
        ddir=ddir,
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise SystemExit(f"strip.py: some modules under {site} do not compile")


# ---- installing -----------------------------------------------------------------------------------


def _pip(args: Sequence[str]) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"strip.py: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def platform_args(lambda_platform: bool) -> list[str]:
    if not lambda_platform:
        return []  # this machine's platform: for running the layer here (timings, smoke tests)
    return [*LAMBDA_PLATFORM, "--python-version", PYTHON_VERSION, "--only-binary=:all:"]


def resolve(requirements: Sequence[Path], lambda_platform: bool = True) -> dict[str, str]:
    """name -> version that pip resolves `requirements` to, installing nothing."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch, "report.json")
        args = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
        _pip([*args, *platform_args(lambda_platform), *(f"-r{r}" for r in requirements)])
        answer = json.loads(report.read_text(encoding="utf-8"))
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in answer["install"]}


def install(target: Path, requirements: Sequence[Path], lambda_platform: bool = True) -> None:
    """pip install --target, wheels as they unpack (no bytecode); `target` is emptied first."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    args = ["install", "--quiet", "--no-compile", "--target", str(target)]
    _pip([*args, *platform_args(lambda_platform), *(f"-r{r}" for r in requirements)])


def build(
    target: Path,
    requirements: Path = HERE / "requirements.txt",
    shared_requirements: Path = HERE.parent / "podslots" / "requirements.txt",
    *,
    lambda_platform: bool = True,
    bytecode: bool = True,
) -> Result:
    """Install and strip the kube layer into `target` (the layer's `python/` folder)."""
    shared = resolve([shared_requirements], lambda_platform)
    install(target, [shared_requirements, requirements], lambda_platform)
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
    args = parser.parse_args(argv)
    result = build(
        args.target.resolve(),
        args.requirements.resolve(),
        args.shared_requirements.resolve(),
        lambda_platform=not args.host,
        bytecode=not args.no_bytecode,
    )
    print_report("strip.py", args.target, result)


def print_report(tool: str, target: Path, result: Result) -> None:
    """What a layer build installed, removed (and why), and compiled."""
    mib = 1024 * 1024
    print(f"{tool}: {target}: {result.installed / mib:.1f} MiB installed -> {result.final / mib:.1f} MiB")
    for reason, size in result.removed.items():
        print(f"  removed {size / mib:6.1f} MiB  {reason}  {' '.join(result.dropped.get(reason, []))}")
    print(f"  bytecode {result.bytecode / mib:5.1f} MiB  (unchecked-hash, Python {PYTHON_VERSION})")


if __name__ == "__main__":
    main()
