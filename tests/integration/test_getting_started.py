"""docs/getting-started.md and the README's example run as written, against `make local`'s server
(the embedded stack, its schedules on a fast clock, its simulated agents), with the `podslots` CLI
of this venv, `curl` and `jq`: the guide's `bash local` blocks in order, and the README's block
that sets `API=http://127.0.0.1:3000/v1`.

That URL is the test's own server here, on a free port; the clock runs 60 times faster, so the
README's `sleep 30` sleeps one real second. Nothing else of the text is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "getting-started.md"
README = ROOT / "README.md"
SPEED = 60.0  # a schedule (every minute) each second, a pod's 20 s start-up within one
LOCAL_URL = "http://127.0.0.1:3000/v1"

pytestmark = pytest.mark.slow


def local_blocks(text: str) -> list[str]:
    """The bodies of the blocks fenced as ```bash local, in the order they appear."""
    return re.findall(r"^```bash local\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    from local.serve import ScaledClock, serve
    from local.stack import Stack

    with Stack(ScaledClock(SPEED)) as stack:
        server = serve(stack, "127.0.0.1", 0, "v1", agents=True)
        host, port = server.server_address[:2]
        try:
            yield f"http://{host!s}:{port}/v1"
        finally:
            server.shutdown()


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`script` under bash, stopping at the first command that fails, with this venv's CLI on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def json_answers(text: str) -> list[dict[str, Any]]:
    """The JSON documents curl printed one after the other (its answers end without a newline)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) != -1:
        answer, at = decoder.raw_decode(text, start)
        found.append(answer)
    return found


def test_the_guide_marks_the_commands_a_local_stack_can_run() -> None:
    # Given the guide, When its local blocks are read
    blocks = local_blocks(GUIDE.read_text(encoding="utf-8"))

    # Then they point at make local's server, make a pool and take a task through plan, approval and apply
    script = "\n".join(blocks)
    assert LOCAL_URL in blocks[0]
    for step in ("pools apply", '"status": "apply_pending"', '"expect": "resume"', '"status": "applied"'):
        assert step in script, step


def test_the_guides_local_commands_run_against_the_local_stack(local_url: str, tmp_path: Path) -> None:
    # Given the guide's local blocks, in order, aimed at this test's server
    script = "\n".join(local_blocks(GUIDE.read_text(encoding="utf-8"))).replace(LOCAL_URL, local_url)

    # When bash runs them
    done = run_bash(script, tmp_path)

    # Then every command succeeded: the resume answered on the plan's own pod (jq -e checks it),
    # and the task ended applied
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^status\s+applied$", done.stdout, flags=re.M), done.stdout
    assert not (tmp_path / "pools").exists()  # the guide cleans up after itself


def test_the_readmes_example_runs_against_the_local_stack(local_url: str, tmp_path: Path) -> None:
    # Given the README's example, aimed at this test's server, its waits scaled to the fast clock
    (block,) = [
        b
        for b in re.findall(r"^```bash\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.S | re.M)
        if LOCAL_URL in b
    ]
    script = f'sleep() {{ command sleep "$(( $1 / {int(SPEED)} + 2 ))"; }}\n' + block.replace(LOCAL_URL, local_url)
    script = script.replace("pools/terraform", "pools/readme").replace("run-42", "readme-42")

    # When bash runs it
    done = run_bash(script, tmp_path)

    # Then each call answered as the README's comments say: the cold pool's 503, the placement,
    # the reservation, the resume on the same pod, the end
    assert done.returncode == 0, done.stdout + done.stderr
    answers = json_answers(done.stdout)
    assert [a.get("error") or a.get("outcome") or a.get("status") for a in answers[1:6]] == [
        "no_capacity",
        "placed",
        "apply_pending",
        "resumed",
        "applied",
    ], done.stdout
