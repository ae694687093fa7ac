"""The settings' JSON schema the client ships (`podslots_client/pool_settings.schema.json`), made
from the server's own model: the client fills a pool file's defaults from it, so `pools apply`
compares a file with what the API stores. `test_pool_files.py` fails when the shipped copy is stale.

    .venv/bin/python clients/tests/pool_schema.py   # writes it again
"""

from __future__ import annotations

import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "podslots_client" / "pool_settings.schema.json"


def generated() -> str:
    """The schema of `PUT /pools/{pool}`'s body, as the server's model says today."""
    from podslots.settings import PoolSettings

    return json.dumps(PoolSettings.model_json_schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    SHIPPED.write_text(generated(), encoding="utf-8")
    print(f"wrote {SHIPPED}")
