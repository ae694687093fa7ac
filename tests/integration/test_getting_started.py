"""docs/getting-started.md runs as written: its `bash local` blocks, in order, against `make local`'s
server (the embedded stack, its schedules on a fast clock, its simulated agents), with the
`podslots` CLI of this venv, `curl` and `jq`.

The guide's first local block points everything at http://127.0.0.1:3000/v1; here that is the
test's own server, on a free port. Nothing else of the text is changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "getting-started.md"
LOCAL_URL = "http://127.0.0.1:3000/v1"

pytestmark = pytest.mark.slow


def local_blocks(text: str) -> list[str]:
    """The bodies of the blocks fenced as ```bash local, in the order they appear."""
    return re.findall(r"^```bash local\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    from local.serve import ScaledClock, serve
    from local.stack import Stack

    # 60 times real time: a schedule (every minute) each second, a pod's 20 s start-up within one.
    with Stack(ScaledClock(60.0)) as stack:
        server = serve(stack, "127.0.0.1", 0, "v1", agents=True)
        host, port = server.server_address[:2]
        try:
            yield f"http://{host!s}:{port}/v1"
        finally:
            server.shutdown()


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
    bin_dir = str(Path(sys.executable).parent)  # the podslots CLI of this venv
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    # When bash runs them, stopping at the first command that fails
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then every command succeeded: the resume answered on the plan's own pod (jq -e checks it),
    # and the task ended applied
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^status\s+applied$", done.stdout, flags=re.M), done.stdout
    assert not (tmp_path / "pools").exists()  # the guide cleans up after itself
