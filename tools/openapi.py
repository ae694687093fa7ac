"""Print the OpenAPI document the API handlers derive (Powertools), merged over the functions.

make openapi          # writes openapi.json
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("allocate", "task_status", "heartbeat", "pools")


def document() -> str:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import Server

    merged = OpenAPIMerge(
        title="podslots",
        version="1",
        description=(
            "Task slots on Kubernetes agent pods: a slot per task at dispatch, a reserved slot while a "
            "plan waits for approval, and scale-down that never deletes a busy pod."
        ),
        servers=[Server(url="/v1")],
        on_conflict="error",
    )
    for name in FUNCTIONS:
        merged.add_file(ROOT / "functions" / name / "app.py", resolver_name="app")
    return merged.get_openapi_json_schema()


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "layers/podslots"), str(ROOT)]
    print(document())
