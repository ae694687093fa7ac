"""podslots: task slots on Kubernetes agent pods, so scale-down never kills a running apply."""

__version__ = "0.1.0"
