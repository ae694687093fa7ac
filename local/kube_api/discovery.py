"""The discovery documents `kubectl` and the dynamic client read first: this server has pods (and
their eviction subresource) in v1, and PodDisruptionBudgets in policy/v1."""

from __future__ import annotations

from typing import Any

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-podslots-stand-in",
    "platform": "linux/amd64",
}
POD_RESOURCE = {
    "name": "pods",
    "singularName": "pod",
    "namespaced": True,
    "kind": "Pod",
    "verbs": ["create", "delete", "get", "list", "patch", "watch"],
    "shortNames": ["po"],
}

EVICTION_RESOURCE = {
    "name": "pods/eviction",
    "singularName": "",
    "namespaced": True,
    "group": "policy",
    "version": "v1",
    "kind": "Eviction",
    "verbs": ["create"],
}
BUDGET_RESOURCE = {
    "name": "poddisruptionbudgets",
    "singularName": "poddisruptionbudget",
    "namespaced": True,
    "kind": "PodDisruptionBudget",
    "verbs": ["create", "delete", "get", "list"],
    "shortNames": ["pdb"],
}
POLICY_VERSION = {"groupVersion": "policy/v1", "version": "v1"}
POLICY_GROUP = {"name": "policy", "versions": [POLICY_VERSION], "preferredVersion": POLICY_VERSION}


def discovery_document(path: str, server: str) -> dict[str, Any] | None:
    """The document served at `path`, or None: /openapi/* is a 404, which kubectl and the client accept."""
    address = [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
    documents: dict[str, dict[str, Any]] = {
        "/version": VERSION,
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address},
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [POD_RESOURCE, EVICTION_RESOURCE]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [POLICY_GROUP]},
        "/apis/policy": {"kind": "APIGroup", "apiVersion": "v1", **POLICY_GROUP},
        "/apis/policy/v1": {"kind": "APIResourceList", "groupVersion": "policy/v1", "resources": [BUDGET_RESOURCE]},
    }
    return documents.get(path.rstrip("/"))
