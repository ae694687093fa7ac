"""One lock with hashes for both layers, and builds that install from it with --require-hashes; the
dev, SAM and uv tool requirements locked the same way, and every pip install of the Makefile hash-checked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from layers import layer_build
from layers.layer_build import LOCK, canonical, read_lock, requirement_names
from local.template import ROOT

LAYER_REQUIREMENTS = (ROOT / "layers/podslots/requirements.txt", ROOT / "layers/kube/requirements.txt")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s#;]+)")


def pins(requirements: Path) -> dict[str, str]:
    found = {}
    for line in requirements.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(3)
    return found


def test_given_the_lock_then_every_entry_is_pinned_with_hashes_and_both_layers_pins_are_in_it():
    entries = read_lock(LOCK)
    assert all(re.search(r"--hash=sha256:[0-9a-f]{64}", e.text) for e in entries.values())
    for requirements in LAYER_REQUIREMENTS:
        for name, version in pins(requirements).items():
            # A bumped requirements.txt without `make lock` fails here, not at deploy.
            assert name in entries, f"{name} of {requirements.name} is not locked: run make lock"
            assert entries[name].version == version, f"{name}: lock {entries[name].version}, wanted {version}"


def test_given_a_lock_when_a_layer_installs_then_pip_gets_only_its_locked_entries_with_require_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Given a layer whose requirements resolve (within the lock) to three distributions
    calls: list[dict[str, Any]] = []
    needed = {"pydantic": "2.14.4", "pydantic-core": "x", "typing-extensions": "y"}
    monkeypatch.setattr(layer_build, "resolve", lambda requirements, lambda_platform, lock: needed)

    def pip(args: list[str]) -> None:
        files = [Path(a[2:]) for a in args if a.startswith("-r")]
        calls.append({"args": list(args), "files": {f.name: f.read_text() for f in files}})

    monkeypatch.setattr(layer_build, "_pip", pip)
    # When it installs from the lock
    layer_build.install(tmp_path / "python", [LAYER_REQUIREMENTS[0]], lock=LOCK)
    # Then pip checks hashes, and installs exactly the locked entries of those three, hashes and all
    (call,) = calls
    assert "--require-hashes" in call["args"]
    (text,) = call["files"].values()
    entries = read_lock(LOCK)
    assert text == "".join(entries[name].text for name in sorted(needed))


def test_given_a_requirement_the_lock_lacks_when_a_layer_installs_then_the_build_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(layer_build, "resolve", lambda requirements, lambda_platform, lock: {"not-locked": "1"})
    monkeypatch.setattr(layer_build, "_pip", lambda args: pytest.fail("pip must not run"))
    with pytest.raises(SystemExit, match="make lock"):
        layer_build.install(tmp_path / "python", [LAYER_REQUIREMENTS[0]], lock=LOCK)


def test_given_a_lock_entry_without_hashes_then_the_lock_is_refused(tmp_path: Path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("pydantic==2.14.4\n")
    with pytest.raises(SystemExit, match="not a pinned, hashed entry"):
        read_lock(lock)


@pytest.mark.parametrize(
    ("makefile", "target", "python_var"),
    [
        ("layers/podslots/Makefile", "build-PodSlotsLayer", "PODSLOTS_LAYER_PYTHON"),
        ("layers/kube/Makefile", "build-KubeLayer", "KUBE_LAYER_PYTHON"),
    ],
)
def test_given_each_layers_makefile_then_sam_builds_it_from_the_lock(makefile: str, target: str, python_var: str):
    dry_run = subprocess.run(
        ["make", "-n", "-f", makefile, target, "ARTIFACTS_DIR=/tmp/artifacts", f"{python_var}=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f'--lock "{LOCK}"' in dry_run


def test_given_a_requirements_file_then_its_names_are_read_without_extras_or_comments(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# c\naws-lambda-powertools[tracer]==3.37.0\nPyYAML==6.0.4  # x\n-r other.txt\n")
    assert requirement_names(requirements) == {"aws-lambda-powertools", "pyyaml"}


# ---- the tools: .venv (dev), .venv-sam (SAM), uv (the locks' own tool) ----------------------------

# Each human-edited input beside its lock (`make lock-dev`, `make lock-sam`, `make lock-uv`).
TOOL_LOCKS = {
    ROOT / "requirements-dev.in": ROOT / "requirements-dev.txt",
    ROOT / "requirements-sam.in": ROOT / "requirements-sam.txt",
    ROOT / "requirements-uv.in": ROOT / "requirements-uv.txt",
}
LOCK_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(;[^\\]*)?\\?$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}\s*\\?$")


def lock_entries(lock: Path) -> list[tuple[str, str, int]]:
    """(canonical name, version, number of hashes) of every entry; a line that is neither is refused."""
    entries: list[tuple[str, str, int]] = []
    for line in lock.read_text().splitlines():
        text = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not text:
            continue
        head = LOCK_ENTRY.match(text)
        if head:
            entries.append((canonical(head.group("name")), head.group("version"), 0))
        else:
            assert HASH.match(text), f"{lock.name}: not a pinned entry or a hash: {line!r}"
            assert entries, f"{lock.name}: a hash before any entry"
            name, version, hashes = entries[-1]
            entries[-1] = (name, version, hashes + 1)
    return entries


def pins_with_includes(requirements: Path) -> dict[str, str]:
    """The `name==version` pins of a requirements file and of the files it includes (-r)."""
    found = pins(requirements)
    for line in requirements.read_text().splitlines():
        if line.startswith("-r "):
            found |= pins_with_includes(requirements.parent / line[3:].strip())
    return found


@pytest.mark.parametrize("lock", TOOL_LOCKS.values(), ids=lambda p: p.name)
def test_given_each_tool_lock_then_every_entry_is_pinned_with_its_hashes(lock: Path):
    entries = lock_entries(lock)
    assert entries, lock.name
    for name, version, hashes in entries:
        assert hashes >= 1, f"{lock.name}: {name}=={version} has no hash"


@pytest.mark.parametrize(("source", "lock"), TOOL_LOCKS.items(), ids=lambda p: p.name)
def test_given_each_tool_input_then_its_lock_has_every_pin_at_that_version(source: Path, lock: Path):
    # A pin bumped in the .in (or in a layer's requirements.txt) without re-locking fails here.
    locked: dict[str, set[str]] = {}
    for name, version, _ in lock_entries(lock):
        locked.setdefault(name, set()).add(version)
    wanted = pins_with_includes(source)
    assert wanted, source.name
    for name, version in wanted.items():
        has = locked.get(name)
        assert has == {version}, f"{name}: {source.name} pins {version}, {lock.name} has {has}: re-lock"


def make_dry_run(*targets: str) -> list[str]:
    """The commands make would run for these targets from scratch (-B: as on a clean clone)."""
    out = subprocess.run(["make", "-n", "-B", *targets], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.replace("\\\n", " ").splitlines()


def test_given_the_makefile_then_every_pip_install_it_runs_is_hash_checked_from_a_lock():
    # Given every command that sets up a venv or re-locks (the layers' builds: the tests above)
    installs = [
        line
        for line in make_dry_run("venv", "sam-venv", "lock-dev", "lock-sam", "lock-uv", "lock")
        if re.search(r"\bpip\b.*\binstall\b", line)
    ]
    assert installs
    files: set[str] = set()
    for line in installs:
        requirements = re.findall(r"-r\s+\"?([^\s\"]+)", line)
        if "-e ./clients" in line:
            # Then the project's own editable client takes nothing from an index: no dependency
            # (they are locked), no isolated build (it would fetch setuptools unchecked)
            assert "--no-deps" in line, line
            assert "--no-build-isolation" in line, line
            assert not requirements, line
            continue
        # Then every other install is pip --require-hashes of lock files only, never a name on the line
        assert "--require-hashes" in line, line
        assert requirements, line
        files |= {Path(f).name for f in requirements}
    # And the locks installed are exactly the tool locks
    assert files == {lock.name for lock in TOOL_LOCKS.values()}
