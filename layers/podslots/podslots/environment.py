"""What the deployment says about where podslots runs, read from the variables template.yaml sets:
one reading of each for every module.

The environment (`dev`, `prod`; `PODSLOTS_ENVIRONMENT`, from the `Environment` parameter): two things
hang on it: the secrets a
pool may name (`podslots/<environment>/…`, the only prefix that environment's functions may read) and
the metrics' `environment` dimension. Outside Lambda (the local stack, the tests) nothing sets it: the
secrets rule takes `dev`, and the metrics carry no environment dimension rather than a made-up one.

The agents' namespaces (`PODSLOTS_AGENT_NAMESPACES`, from `AgentNamespaces`): the only namespaces a
pool may use, and the only ones reconcile and autoscale act in.
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


# The namespaces agent pods may run in (template.yaml's AgentNamespaces, comma-separated). podslots
# may create and delete pods there only: a pool in kube-system would make it a way into the cluster.
AGENT_NAMESPACES_VAR = "PODSLOTS_AGENT_NAMESPACES"
DEFAULT_AGENT_NAMESPACES = "agents"  # outside Lambda (tests), where nothing sets it; the parameter's default


def agent_namespaces() -> frozenset[str]:
    """The allow-list as deployed; set but empty allows none."""
    listed = os.environ.get(AGENT_NAMESPACES_VAR)
    return frozenset(
        n.strip() for n in (listed if listed is not None else DEFAULT_AGENT_NAMESPACES).split(",") if n.strip()
    )
