"""The discovery documents `kubectl` and the dynamic client read first: this server has pods, in v1."""

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


def discovery_document(path: str, server: str) -> dict[str, Any] | None:
    """The document served at `path`, or None: /openapi/* is a 404, which kubectl and the client accept."""
    match path.rstrip("/"):
        case "/version":
            return VERSION
        case "/api":
            address = [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address}
        case "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [POD_RESOURCE]}
        case "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
    return None
