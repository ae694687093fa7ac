"""The Docker-free local stack: built from `template.yaml` itself (moto, the real handlers)."""
