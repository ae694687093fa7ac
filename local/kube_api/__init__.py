"""A Kubernetes API stand-in for pods that the official client and kubectl talk to over HTTP."""

from .server import KubeApiStandIn

__all__ = ["KubeApiStandIn"]
