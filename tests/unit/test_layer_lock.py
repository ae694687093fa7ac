"""One lock with hashes for both layers, and builds that install from it with --require-hashes."""

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
