"""The functions that never talk to the cluster never import `kubernetes`: their cold start stays small."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from local.template import ROOT

PROBE = (
    "import json, sys; import {m}; "
    "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in ('kubernetes', 'boto3'))))"
)


@pytest.mark.parametrize("function", ["allocate", "task_status", "heartbeat", "pools", "expire"])
def test_an_api_function_does_not_import_kubernetes(function: str):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/podslots'}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(m=f"functions.{function}.app")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert not [m for m in loaded if m.startswith("kubernetes")]
    # boto3 (the EventBridge client) is imported on first publish, not at cold start
    assert "boto3" not in loaded
