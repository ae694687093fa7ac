"""The deployment environment (`dev`, `prod`): one reading of `PODSLOTS_ENVIRONMENT` for every module.

template.yaml's Globals set it from the `Environment` parameter. Two things hang on it: the secrets a
pool may name (`podslots/<environment>/…`, the only prefix that environment's functions may read) and
the metrics' `environment` dimension. Outside Lambda (the local stack, the tests) nothing sets it: the
secrets rule takes `dev`, and the metrics carry no environment dimension rather than a made-up one.
"""

from __future__ import annotations

import os

ENVIRONMENT_VAR = "PODSLOTS_ENVIRONMENT"
DEFAULT_ENVIRONMENT = "dev"


def configured_environment() -> str | None:
    """The environment the deployment set, or None where nothing set it."""
    return os.environ.get(ENVIRONMENT_VAR, "").strip() or None


def environment() -> str:
    """The environment whose secrets this deployment reads: the configured one, `dev` by default."""
    return configured_environment() or DEFAULT_ENVIRONMENT
