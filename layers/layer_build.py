"""What both Lambda layer builds share: layers/kube/strip.py builds KubeLayer, layers/podslots/build.py
PodSlotsLayer, and bench/layer_size.py measures both with the same code.

- install: pip for the Lambda platform (manylinux2014_aarch64, cp313, wheels only), no bytecode yet;
  resolve: what pip would install, installing nothing. With a lock (layers/requirements.lock, both
  layers' requirements resolved together, every distribution with its hashes: `make lock`), a layer
  installs exactly the locked versions of what its own requirements need, each wheel checked against
  its hash (`--require-hashes`): nothing is resolved afresh at build time.
- read_dists: the installed distributions from their .dist-info (files, Requires-Dist, REQUESTED).
- remove_files, remove_tree, test_files, rewrite_record, prune_empty: removal that keeps each kept
  distribution's RECORD true to the files that are left.
- compile_unchecked: "unchecked-hash" bytecode (PEP 552). Lambda cannot write `__pycache__` into the
  read-only /opt, so without it every cold start compiles every module it imports; unchecked, because
  a zip round trip does not keep source timestamps exactly, and a layer never changes once published.
- print_report: what a build installed, removed (and why), and compiled.
"""

from __future__ import annotations

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PYTHON_VERSION = "3.13"
LOCK = Path(__file__).resolve().parent / "requirements.lock"
LAMBDA_PLATFORM = ("--platform", "manylinux2014_aarch64", "--implementation", "cp")
TEST_DIRS = frozenset({"test", "tests", "e2e_test"})
# Test modules are recognised by name only inside these packages (elsewhere a `test_*.py` can be a
# real module, e.g. annotated_types/test_cases.py).
TEST_MODULES_IN = ("kubernetes",)
TEST_MODULE = re.compile(r"(^test_.*|.*_test)\.py$")
# What the Lambda python3.13 runtime ships itself, and the podslots layer therefore leaves out (its
# requirements pull in botocore and jmespath: pynamodb, aws-xray-sdk, powertools). Not python-dateutil,
# six or urllib3: the podslots layer keeps shipping them, and the kube layer relies on that.
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


# ---- removing ---------------------------------------------------------------------------------------


def remove_files(site: Path, paths: Iterable[Path]) -> int:
    removed = 0
    for path in paths:
        if path.is_file() or path.is_symlink():
            removed += path.lstat().st_size
            path.unlink()
    prune_empty(site)
    return removed


def remove_tree(path: Path) -> int:
    if not path.exists():
        return 0
    size = tree_bytes(path)
    shutil.rmtree(path)
    return size


def prune_empty(site: Path) -> None:
    for folder, _, _ in sorted(os.walk(site), key=lambda entry: -len(entry[0])):
        path = Path(folder)
        if path != site and not any(path.iterdir()):
            path.rmdir()


def rewrite_record(dist: Dist, site: Path) -> None:
    """Keep RECORD true to what is left: rows of removed files go, the rest stay as pip wrote them."""
    record = dist.dist_info / "RECORD"
    with record.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    kept = [row for row in rows if (site / row[0]).exists() or row[0].endswith("RECORD")]
    with record.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(kept)


def tests_of(site: Path, dist: Dist) -> list[Path]:
    """`dist`'s files in test folders (TEST_DIRS), and its test modules inside TEST_MODULES_IN."""
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


# ---- installing -----------------------------------------------------------------------------------


def _pip(args: Sequence[str]) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"layer_build.py: {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def platform_args(lambda_platform: bool) -> list[str]:
    if not lambda_platform:
        return []  # this machine's platform: for running the layer here (timings, smoke tests)
    return [*LAMBDA_PLATFORM, "--python-version", PYTHON_VERSION, "--only-binary=:all:"]


def resolve(requirements: Sequence[Path], lambda_platform: bool = True, lock: Path | None = None) -> dict[str, str]:
    """name -> version that pip resolves `requirements` to (within `lock`'s pins), installing nothing."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch, "report.json")
        args = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
        if lock is not None:
            args.append(f"-c{_write_pins(read_lock(lock), Path(scratch))}")
        _pip([*args, *platform_args(lambda_platform), *(f"-r{r}" for r in requirements)])
        answer = json.loads(report.read_text(encoding="utf-8"))
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in answer["install"]}


def install(target: Path, requirements: Sequence[Path], lambda_platform: bool = True, lock: Path | None = None) -> None:
    """pip install --target, wheels as they unpack (no bytecode); `target` is emptied first.

    With `lock`: the locked entries (with their hashes) of every distribution `requirements` need,
    installed with `--require-hashes`; a wheel whose hash is not in the lock fails the build, and so
    does a requirement the lock lacks. Only what `requirements` name is marked REQUESTED, as a plain
    `pip install -r` marks it (the builds' roots for what they keep).
    """
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    args = ["install", "--quiet", "--no-compile", "--target", str(target)]
    if lock is None:
        _pip([*args, *platform_args(lambda_platform), *(f"-r{r}" for r in requirements)])
        return
    entries = read_lock(lock)
    needed = resolve(requirements, lambda_platform, lock)
    missing = sorted(set(needed) - entries.keys())
    if missing:
        raise SystemExit(f"layer_build.py: {missing} are not in {lock}: run `make lock`")
    with tempfile.TemporaryDirectory() as scratch:
        locked = Path(scratch, "locked.txt")
        locked.write_text("".join(entries[name].text for name in sorted(needed)), encoding="utf-8")
        _pip([*args, "--require-hashes", *platform_args(lambda_platform), f"-r{locked}"])
    roots = set().union(*(requirement_names(r) for r in requirements))
    for dist in read_dists(target).values():
        if dist.name not in roots:
            (dist.dist_info / "REQUESTED").unlink(missing_ok=True)


# ---- the lock -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locked:
    name: str  # canonical
    version: str
    text: str  # the entry as pip reads it: `name==version \` and its `--hash=sha256:...` lines


_LOCK_HEAD = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
_REQUIREMENT_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")


def read_lock(lock: Path) -> dict[str, Locked]:
    """The lock's entries by canonical name; each must pin one version and carry its hashes."""
    entries: dict[str, Locked] = {}
    lines: list[str] = []

    def close() -> None:
        if not lines:
            return
        head = _LOCK_HEAD.match(lines[0])
        text = "".join(lines)
        if head is None or "--hash=sha256:" not in text:
            raise SystemExit(f"layer_build.py: {lock}: not a pinned, hashed entry: {lines[0].strip()}")
        name = canonical(head.group("name"))
        entries[name] = Locked(name, head.group("version"), text.rstrip().rstrip("\\").rstrip() + "\n")
        lines.clear()

    for line in lock.read_text(encoding="utf-8").splitlines(keepends=True):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            lines.append(line)
        else:
            close()
            lines.append(line)
    close()
    return entries


def requirement_names(requirements: Path) -> set[str]:
    """The canonical names a requirements file asks for (its own lines; no -r/-c includes)."""
    names = set()
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT_NAME.match(line.split("#", 1)[0])
        if match and not line.lstrip().startswith("-"):
            names.add(canonical(match.group("name")))
    return names


def _write_pins(entries: dict[str, Locked], folder: Path) -> Path:
    """The lock as a constraints file (name==version; pip takes no hashes in constraints)."""
    pins = folder / "lock-pins.txt"
    pins.write_text("".join(f"{e.name}=={e.version}\n" for e in entries.values()), encoding="utf-8")
    return pins


# ---- bytecode and the report -------------------------------------------------------------------


def compile_unchecked(site: Path) -> None:
    """Unchecked-hash bytecode for every module, with this interpreter (it must be the layer's)."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != PYTHON_VERSION:
        raise SystemExit(
            f"layer_build.py: bytecode for Python {PYTHON_VERSION} needs python{PYTHON_VERSION}, not {running}"
        )
    ok = compileall.compile_dir(
        site,
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise SystemExit(f"layer_build.py: some modules under {site} do not compile")


def print_report(tool: str, target: Path, result: Result) -> None:
    """What a layer build installed, removed (and why), and compiled."""
    mib = 1024 * 1024
    print(f"{tool}: {target}: {result.installed / mib:.1f} MiB installed -> {result.final / mib:.1f} MiB")
    for reason, size in result.removed.items():
        print(f"  removed {size / mib:6.1f} MiB  {reason}  {' '.join(result.dropped.get(reason, []))}")
    print(f"  bytecode {result.bytecode / mib:5.1f} MiB  (unchecked-hash, Python {PYTHON_VERSION})")
